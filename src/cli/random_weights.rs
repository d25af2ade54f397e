//! `treevis random-weights`: deterministic random weights of a spec's published widths, as
//! safetensors.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::model::{weights, LoadedSpec};

#[derive(Args, Debug)]
pub struct RandomWeightsArgs {
    /// Built-in model name or spec file.
    #[arg(long, default_value = "alexnet")]
    pub model: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: RandomWeightsArgs) -> Result<()> {
    let spec = LoadedSpec::resolve(&args.model)?;
    let map = weights::random_weights(&spec.spec, args.seed)?;
    weights::write_safetensors(&map, &args.out)?;
    crate::outln!("wrote {} tensors to {}", map.len(), args.out.display())?;
    Ok(())
}
