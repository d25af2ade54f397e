//! `treevis parents`: the units of the blob above whose reconstructions reach a path's
//! last node most (drilling up the hierarchy).

use anyhow::Result;
use clap::Args;

use super::args::{positive, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::print_json;
use crate::recon::{self, Path};

#[derive(Args, Debug)]
pub struct ParentsArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// The path whose last node's parents are listed, e.g. `conv3:7`.
    #[arg(long)]
    pub path: Path,
    /// How many parents.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub k: usize,
    /// Print JSON: [{blob, channel, weight, share, path}].
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ParentsArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let ps = recon::parents(
        &l.model,
        &l.state,
        0,
        &args.method.options(),
        &args.path,
        args.k,
    )?;
    if ps.is_empty() {
        eprintln!(
            "treevis: no unit of the blob above reaches {} (every weight is 0)",
            args.path
        );
    }
    if args.json {
        return print_json(&ps);
    }
    for p in &ps {
        crate::outln!("{:6.1}%  {:13.6}  {}", p.share * 100.0, p.weight, p.path)?;
    }
    Ok(())
}
