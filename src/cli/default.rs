//! `treevis` with no command and no terminal: the demo network on a demo image, headless;
//! and the demo gallery (generated images) that run and the terminal app open on.

use std::path::{Path as FsPath, PathBuf};

use anyhow::{Context, Result};

use super::args::{EngineArgs, InputArgs, Loaded, Method, MethodArgs, Mult};
use super::output::{create_dir, save_png, units_line};
use crate::data;
use crate::recon::display::{self, Display};
use crate::recon::{self, Path};

/// Seed of the demo gallery `treevis` opens on.
pub const DEMO_GALLERY_SEED: u64 = 2026;

/// The demo gallery in the cache folder, generated on first use.
pub fn demo_gallery() -> Result<Vec<PathBuf>> {
    let dir = crate::fetch::cache_dir().join("demo-gallery");
    let done = dir.join(".complete");
    if done.exists() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let files = write_demo_gallery(
        &dir,
        2 * data::synth::CLASSES.len() as u64,
        DEMO_GALLERY_SEED,
    )?;
    std::fs::write(&done, b"").with_context(|| format!("cannot write {}", done.display()))?;
    Ok(files)
}

/// Writes `n` demo images as `NNNN_class.png`; returns their paths.
pub fn write_demo_gallery(dir: &FsPath, n: u64, seed: u64) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    (0..n)
        .map(|i| {
            let (img, class) = data::synth::generate(seed, i);
            let p = dir.join(format!("{i:04}_{}.png", data::synth::CLASSES[class]));
            save_png(&img, &p)?;
            Ok(p)
        })
        .collect()
}

/// The demo network (guided backprop) on the gallery's star: labels, the most active
/// neurons, and a conv5 neuron's children with their reconstructions.
pub fn run() -> Result<()> {
    let gallery = demo_gallery()?;
    let image = gallery
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_star.png"))
        .unwrap_or(&gallery[0])
        .clone();
    let l = Loaded::new(&EngineArgs::demo(), &InputArgs::image(image.clone()))?;
    let opts = MethodArgs {
        method: Method::Guided,
        mult: Mult::Auto,
    }
    .options();
    crate::outln!(
        "treevis {}: the demo network ({}) on {}",
        env!("CARGO_PKG_VERSION"),
        l.model.weights_origin,
        image.display()
    )?;
    crate::outln!("top labels:")?;
    for lab in recon::labels(&l.model, &l.state, 0, 5)? {
        crate::outln!("  {:6.2}%  {}", lab.prob * 100.0, lab.name)?;
    }
    let rows = recon::overview(&l.model, &l.state, 0, 3)?;
    crate::outln!("most active neurons:")?;
    for r in &rows {
        crate::outln!("  {:>6}  {}", r.blob, units_line(r, 2))?;
    }
    let conv5 = rows.iter().find(|r| r.blob == "conv5").unwrap_or(&rows[0]);
    let path = Path::root(&conv5.blob, conv5.units[0].channel);
    let out = crate::fetch::cache_dir().join("default");
    create_dir(&out)?;
    save_png(
        &display::render(
            &l.model,
            &recon::reconstruct(&l.model, &l.state, 0, &opts, std::slice::from_ref(&path))?[0].grad,
            Display::Norm,
        )?,
        &out.join(format!("{}.png", path.file_stem())),
    )?;
    crate::outln!(
        "children of {path} (guided backprop), reconstructions in {}:",
        out.display()
    )?;
    for (c, r) in recon::expand(&l.model, &l.state, 0, &opts, &path, 5)? {
        save_png(
            &display::render(&l.model, &r.grad, Display::Norm)?,
            &out.join(format!("{}.png", c.path.file_stem())),
        )?;
        crate::outln!("  {:10.5}  {}", c.weight, c.path)?;
    }
    crate::outln!("\nThe gallery is in {}; try `treevis tree IMAGE --model demo --root {path} --out DIR`, or `treevis --help`.", gallery[0].parent().unwrap_or(&gallery[0]).display())?;
    Ok(())
}
