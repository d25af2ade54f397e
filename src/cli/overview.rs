//! `treevis overview`: the most active neurons of every blob, with their reconstructions.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{positive, DisplayArg, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::{create_dir, print_json, save_png, units_line};
use crate::recon::{self, display};

#[derive(Args, Debug)]
pub struct OverviewArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// Neurons per blob.
    #[arg(long, default_value_t = 5, value_parser = positive)]
    pub top: usize,
    /// Print JSON: [{blob, units: [{channel, activation, rank?}]}].
    #[arg(long)]
    pub json: bool,
    /// Write the input and one PNG per neuron (`conv5_12.png`) into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub display: DisplayArg,
    /// A feature cache of this model: each neuron's activation is ranked against the
    /// dataset's (`p97`: above 97% of the images).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub fn run(args: OverviewArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let mut rows = recon::overview(&l.model, &l.state, 0, args.top)?;
    if let Some(dir) = &args.cache {
        let c = crate::featcache::FeatureCache::open_for(dir, &l.model)?;
        crate::featcache::rank_overview(&c, &mut rows);
    }
    if let Some(dir) = &args.out {
        create_dir(dir)?;
        save_png(
            &display::render_input(&l.model, &l.input)?,
            &dir.join("input.png"),
        )?;
        let paths = recon::overview_paths(&rows);
        let opts = args.method.options();
        for r in recon::reconstruct(&l.model, &l.state, 0, &opts, &paths)? {
            save_png(
                &display::render(&l.model, &r.grad, args.display.into())?,
                &dir.join(format!("{}.png", r.path.file_stem())),
            )?;
        }
    }
    if args.json {
        return print_json(&rows);
    }
    for r in &rows {
        crate::outln!("{:>8}  {}", r.blob, units_line(r, 3))?;
    }
    if let Some(dir) = &args.out {
        crate::outln!(
            "wrote {} tiles to {}",
            rows.iter().map(|r| r.units.len()).sum::<usize>(),
            dir.display()
        )?;
    }
    Ok(())
}
