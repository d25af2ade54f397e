//! `treevis render`: the reconstruction of one path, as PNG and/or the raw gradient.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{DisplayArg, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::save_png;
use crate::data;
use crate::recon::{self, display, Path};

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// The path, top node first: `conv4:285/conv3:303`.
    #[arg(long)]
    pub path: Path,
    #[arg(long, value_enum, default_value_t)]
    pub display: DisplayArg,
    /// PNG to write (default: the path's name in the current folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the raw gradient at the input, float32 [3, H, W] `.npy`.
    #[arg(long)]
    pub raw: Option<PathBuf>,
}

pub fn run(args: RenderArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let opts = args.method.options();
    let path = args.path;
    let r =
        recon::reconstruct(&l.model, &l.state, 0, &opts, std::slice::from_ref(&path))?.remove(0);
    if let Some(note) = &r.note {
        eprintln!("treevis: note: {note}");
    }
    let out = args
        .out
        .unwrap_or_else(|| PathBuf::from(format!("{}.png", path.file_stem())));
    save_png(
        &display::render(&l.model, &r.grad, args.display.into())?,
        &out,
    )?;
    if let Some(raw) = args.raw {
        data::npy::write_f32(&raw, r.grad.dims(), &crate::model::net::host_vec(&r.grad)?)?;
    }
    crate::outln!("{}", out.display())?;
    Ok(())
}
