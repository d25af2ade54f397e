//! `treevis labels`: the top-5 classes of an image.

use anyhow::Result;
use clap::Args;

use super::args::{EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::print_json;
use crate::recon;

#[derive(Args, Debug)]
pub struct LabelsArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    // not used by labels, but accepted (and listed) like every image command's
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Print JSON: [{index, name, prob}].
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: LabelsArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let labels = recon::labels(&l.model, &l.state, 0, 5)?;
    if args.json {
        return print_json(&labels);
    }
    for (i, lab) in labels.iter().enumerate() {
        crate::outln!(
            "{}. {:6.2}%  {} ({})",
            i + 1,
            lab.prob * 100.0,
            lab.name,
            lab.index
        )?;
    }
    Ok(())
}
