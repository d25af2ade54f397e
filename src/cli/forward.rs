//! `treevis forward`: every blob of the forward pass as `.npy` (plus the input as
//! `data.npy`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::create_dir;
use crate::data;
use crate::model::net::host_vec;

#[derive(Args, Debug)]
pub struct ForwardArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    // not used by a forward pass, but accepted (and listed) like every image command's
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: ForwardArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let out = &args.out;
    create_dir(out)?;
    data::npy::write_f32(&out.join("data.npy"), l.input.dims(), &host_vec(&l.input)?)?;
    for b in &l.model.net.blobs {
        let t = l.state.output(b.layer, &b.name)?.get(0)?;
        let name = format!("{}.npy", b.name.replace(['/', '\\'], "_"));
        data::npy::write_f32(&out.join(&name), t.dims(), &host_vec(&t)?)?;
    }
    crate::outln!(
        "wrote {} blobs to {}",
        l.model.net.blobs.len() + 1,
        out.display()
    )?;
    Ok(())
}
