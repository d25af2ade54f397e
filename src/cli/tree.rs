//! `treevis tree`: a tree from one root, `depth` levels of `k` children, with a PNG per
//! node, `tree.json` and `index.html` (one self-contained page to hand to a colleague).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::args::{positive, DisplayArg, EngineArgs, InputArgs, Loaded, MethodArgs, SignArg};
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
    /// Which children: the strongest, the excitatory or the inhibitory ones.
    #[arg(long, value_enum, default_value_t)]
    pub sign: SignArg,
    #[arg(long, value_enum, default_value_t)]
    pub display: DisplayArg,
    /// Folder for tree.json, index.html and the PNGs.
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
        &recon::Ranking {
            k: args.k,
            sign: args.sign.into(),
            via: true,
        },
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
    let run = crate::report::tree::Run {
        model: &l.model,
        image: args
            .input
            .image
            .as_ref()
            .and_then(|p| p.file_name())
            .or_else(|| args.input.input_npy.as_ref().and_then(|p| p.file_name()))
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        input: &l.input,
        state: &l.state,
        opts,
        display: mode,
    };
    let page = crate::report::write_html(&crate::report::tree::page(&run, &tree)?, out)?;
    crate::outln!(
        "wrote {} and {} ({count} nodes)",
        f.display(),
        page.display()
    )?;
    Ok(())
}
