//! `treevis tree`: a tree from one root, `depth` levels of `k` children, with a PNG per
//! node and `tree.json`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{positive, DisplayArg, EngineArgs, InputArgs, Loaded, MethodArgs};
use super::output::{create_dir, save_png};
use crate::recon::{self, display, Path};

#[derive(Args, Debug)]
pub struct TreeArgs {
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub method: MethodArgs,
    #[command(flatten)]
    pub input: InputArgs,
    /// The root path (usually one node, e.g. `conv5:12`).
    #[arg(long)]
    pub root: Path,
    /// Levels below the root.
    #[arg(long, default_value_t = 2)]
    pub depth: usize,
    #[arg(long, default_value_t = 3, value_parser = positive)]
    pub k: usize,
    #[arg(long, value_enum, default_value_t)]
    pub display: DisplayArg,
    /// Folder for tree.json and the PNGs.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: TreeArgs) -> Result<()> {
    let l = Loaded::new(&args.engine, &args.input)?;
    let out = &args.out;
    create_dir(out)?;
    let opts = args.method.options();
    let tree = recon::tree::build(
        &l.model,
        &l.state,
        0,
        &opts,
        &args.root,
        args.depth,
        &recon::Ranking::abs(args.k),
    )?;
    save_png(
        &display::render_input(&l.model, &l.input)?,
        &out.join("input.png"),
    )?;
    let mode = args.display.into();
    let mut count = 0;
    let json = tree.to_json(&mut |node| {
        let file = format!("{}.png", node.path.file_stem());
        count += 1;
        save_png(
            &display::render(&l.model, &node.grad, mode)?,
            &out.join(&file),
        )?;
        Ok(file)
    })?;
    let f = out.join("tree.json");
    std::fs::write(&f, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("cannot write {}", f.display()))?;
    crate::outln!("wrote {} ({count} nodes)", f.display())?;
    Ok(())
}
