//! `treevis [IMAGE...]` on a terminal: the options of the terminal app, and launching it.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{EngineArgs, MethodArgs};
use super::default::demo_gallery;
use crate::data;
use crate::tui::keymap::{user_keymap_path, Keymap};

/// Options of the terminal app.
#[derive(Args, Debug, Clone)]
pub struct TuiArgs {
    /// Images to study: files, folders (searched recursively), Caffe Datum LMDBs, or list
    /// files (`path [label]` per line).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
    // listed like every image command's; the app's own keys switch rule and multiplier
    #[command(flatten)]
    pub method: MethodArgs,
    /// How images are drawn: ask the terminal, force one protocol, or text only.
    #[arg(long, value_enum, default_value_t)]
    pub protocol: crate::tui::Protocol,
    /// How long (milliseconds) the terminal may take to say what graphics it has; raise it
    /// over very slow links. A terminal that does not answer gets half-blocks.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub query_timeout: u64,
    /// A keymap file overriding entries of the built-in one (default: the XDG config
    /// folder's treevis/keymap.toml).
    #[arg(long)]
    pub keymap: Option<PathBuf>,
    /// Save the exploration to this file on every change, and restore it on start.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// A feature cache (`treevis cache build`): `f` shows a neuron's top dataset patches,
    /// and overview tiles show where the activation ranks over the dataset (`p97`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

/// Image files under `paths` (folders recursively and sorted, LMDBs, list files).
pub fn collect_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(data::source::collect(paths)?)
}

/// Opens the terminal app on the images (the demo gallery when none are given).
pub fn run(args: TuiArgs) -> Result<()> {
    let images = if args.paths.is_empty() {
        demo_gallery()?
    } else {
        collect_images(&args.paths)?
    };
    let model = args.engine.load()?;
    let keymap_path = args.keymap.clone().or_else(user_keymap_path);
    let keymap = Keymap::load(keymap_path.as_deref())?;
    let info = format!("{} | {}", model.spec().name, args.engine.device);
    crate::tui::run(
        model,
        crate::tui::TuiOptions {
            images,
            protocol: args.protocol,
            query_timeout: std::time::Duration::from_millis(args.query_timeout),
            keymap,
            info,
            session: args.session,
            feature_cache: args.cache,
        },
    )
}
