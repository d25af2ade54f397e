//! What the commands write: JSON and text rows on stdout, PNGs and folders on disk.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::recon;

/// Pretty JSON on stdout, one value.
pub fn print_json<T: Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

pub fn save_png(img: &image::RgbImage, path: &Path) -> Result<()> {
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

pub fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))
}

/// An overview row as text: `conv5:12 (2.941)  conv5:3 (1.200) ...`.
pub fn units_line(r: &recon::BlobUnits, decimals: usize) -> String {
    r.units
        .iter()
        .map(|u| {
            let rank = u.percentile_label();
            format!(
                "{}:{} ({:.*}{rank})",
                r.blob, u.channel, decimals, u.activation
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}
