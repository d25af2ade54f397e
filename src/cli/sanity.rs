//! `treevis sanity`: the cascading randomization check of one path's reconstruction
//! (Adebayo et al. 2018): per step, the layer randomized down to and the similarity of
//! the reconstruction with the trained net's.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{DisplayArg, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::{print_json, save_png};
use crate::recon::{sanity, Path};

#[derive(Args, Debug)]
pub struct SanityArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// The path to check, e.g. `conv5:12` or `conv5:12/conv4:3`.
    #[arg(long)]
    pub path: Path,
    /// The display the SSIM compares.
    #[arg(long, value_enum, default_value_t)]
    pub display: DisplayArg,
    /// Seed of the re-drawn weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the strip of reconstructions (trained, then each step) as PNG.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print JSON: {path, rule, mult, display, seed, steps: [{down_to, layers, spearman,
    /// ssim, note?}]}.
    #[arg(long)]
    pub json: bool,
}

/// The progress bar of the cascade.
pub const SANITY_BAR: &str = "randomizing [{bar:30}] {pos}/{len} layers ETA {eta}";

pub fn run(args: SanityArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let total = sanity::cascade_layers(&l.model, &args.path)?.len();
    let bar = crate::progress::bar(total as u64, SANITY_BAR);
    let s = sanity::sanity(
        &l.model,
        &l.input.unsqueeze(0)?,
        &args.method.options(),
        &args.path,
        args.display.into(),
        args.seed,
        &mut |done, _| {
            bar.set_position(done as u64);
            true
        },
    )?;
    bar.finish_and_clear();
    if let Some(out) = &args.out {
        save_png(&s.strip(&l.model)?, out)?;
    }
    if args.json {
        return print_json(&s.clone().numbers());
    }
    crate::outln!(
        "{} under {} {}: similarity to the trained net's reconstruction",
        s.path,
        s.rule.name(),
        s.mult.name()
    )?;
    crate::outln!(
        "{:>3}  {:<24}  {:>8}  {:>6}",
        "#",
        "randomized down to",
        "spearman",
        "ssim"
    )?;
    for st in &s.steps {
        crate::outln!(
            "{:>3}  {:<24}  {:>8.3}  {:>6.3}{}",
            st.layers,
            st.down_to,
            st.spearman,
            st.ssim,
            st.note
                .as_deref()
                .map(|n| format!("  ({n})"))
                .unwrap_or_default()
        )?;
    }
    if let Some(out) = &args.out {
        crate::outln!("wrote {}", out.display())?;
    }
    Ok(())
}
