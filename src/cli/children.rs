//! `treevis children`: the neurons of the blob below that contribute most to a path's last
//! node.

use anyhow::Result;
use clap::Args;

use super::args::{positive, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::print_json;
use crate::recon::{self, Path};

#[derive(Args, Debug)]
pub struct ChildrenArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    #[arg(long)]
    pub path: Path,
    /// How many children.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub k: usize,
    /// Print JSON: [{blob, channel, weight, path}].
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ChildrenArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let kids = recon::children(
        &l.model,
        &l.state,
        0,
        &args.method.options(),
        std::slice::from_ref(&args.path),
        args.k,
    )?
    .remove(0);
    if args.json {
        return print_json(&kids);
    }
    for c in &kids {
        crate::outln!("{:12.6}  {}", c.weight, c.path)?;
    }
    Ok(())
}
