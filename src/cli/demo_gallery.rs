//! `treevis demo-gallery`: generated demo images, named after their class, in a folder.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::default::{write_demo_gallery, DEMO_GALLERY_SEED};

#[derive(Args, Debug)]
pub struct DemoGalleryArgs {
    #[arg(long)]
    pub out: PathBuf,
    /// How many images (classes in turn).
    #[arg(long, default_value_t = 22)]
    pub n: u64,
    /// Dataset seed (the held-out images of training use other seeds).
    #[arg(long, default_value_t = DEMO_GALLERY_SEED)]
    pub seed: u64,
}

pub fn run(args: DemoGalleryArgs) -> Result<()> {
    let files = write_demo_gallery(&args.out, args.n, args.seed)?;
    crate::outln!("wrote {} images to {}", files.len(), args.out.display())?;
    Ok(())
}
