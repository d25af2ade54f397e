//! `treevis keys`: the effective key bindings of the terminal app.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::tui::keymap::{user_keymap_path, Keymap};

#[derive(Args, Debug)]
pub struct KeysArgs {
    /// A keymap file overriding entries of the built-in one.
    #[arg(long)]
    pub keymap: Option<PathBuf>,
}

pub fn run(args: KeysArgs) -> Result<()> {
    let path = args.keymap.or_else(user_keymap_path);
    crate::out!("{}", Keymap::load(path.as_deref())?.describe())?;
    Ok(())
}
