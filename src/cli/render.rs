//! `treevis render`: the reconstruction of one path, as PNG and/or the raw gradient.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{DisplayArg, EngineArgs, InputArgs, Loaded, Method, Mult};
use super::output::save_png;
use crate::data;
use crate::recon::{self, display, Path};

#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    /// ReLU backward rule; `all`: every rule under both multiplier modes, side by side
    /// in one captioned PNG strip.
    #[arg(long, value_enum, default_value_t)]
    pub method: RenderMethod,
    /// Rescaling of filtered gradients along a path.
    #[arg(long, value_enum, default_value_t)]
    pub mult: Mult,
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

/// `render --method`: one rule, or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum RenderMethod {
    /// Plain gradient: `g * [x > 0]`.
    Gradient,
    /// Zeiler & Fergus deconvnet: `g * [g > 0]`.
    Deconv,
    /// Guided backpropagation: `g * [x > 0] * [g > 0]`.
    #[default]
    Guided,
    /// cnn_treevis's GUIDED_NEG: `g * [x > 0] * [g < 0]`.
    GuidedNeg,
    /// Every rule under both multiplier modes (one strip).
    All,
}

impl RenderMethod {
    fn rule(self) -> Option<Method> {
        Some(match self {
            RenderMethod::Gradient => Method::Gradient,
            RenderMethod::Deconv => Method::Deconv,
            RenderMethod::Guided => Method::Guided,
            RenderMethod::GuidedNeg => Method::GuidedNeg,
            RenderMethod::All => return None,
        })
    }
}

/// Every rule and mode of `path` as one captioned strip.
fn compare(args: &RenderArgs, l: &Loaded) -> Result<()> {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}_all.png", args.path.file_stem())));
    let tiles = recon::compare(&l.model, &l.state, 0, &recon::all_options(), &args.path)?
        .into_iter()
        .map(|(o, r)| {
            let caption = o.caption();
            if let Some(note) = &r.note {
                eprintln!("treevis: note: {caption}: {note}");
            }
            Ok((
                display::render(&l.model, &r.grad, args.display.into())?,
                caption,
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    save_png(&display::strip(&tiles), &out)?;
    crate::outln!("{}", out.display())?;
    Ok(())
}

pub fn run(args: RenderArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let Some(rule) = args.method.rule() else {
        if args.raw.is_some() {
            anyhow::bail!("--raw writes one gradient: give one --method, not `all`");
        }
        return compare(&args, &l);
    };
    let opts = recon::Options {
        rule: rule.into(),
        mult: args.mult.into(),
    };
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
