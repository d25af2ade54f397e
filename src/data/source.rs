//! Where images come from: files, folders (recursive, sorted), Caffe-style LMDBs, and text
//! files listing images (`path [label]` per line, as `convert_imageset` reads them; relative
//! paths are taken from the list's folder).

use std::path::{Path, PathBuf};

use super::imagedb;
use crate::error::{Error, Result};

/// File name extensions read as images.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "png", "jpg", "jpeg", "bmp", "gif", "webp", "tif", "tiff", "ppm",
];
/// File name extensions read as lists of images.
pub const LIST_EXTENSIONS: [&str; 2] = ["txt", "list"];

fn has_ext(p: &Path, exts: &[&str]) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| exts.contains(&x.to_lowercase().as_str()))
}

/// Every image under `paths`, in a deterministic order: each argument in turn; a folder's
/// files sorted by name, recursively; an LMDB's records in key order; a list in its order.
pub fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if imagedb::is_lmdb(p) {
            let db = imagedb::open(p)?;
            db.check_holds_images()?;
            out.extend(db.paths()?);
        } else if p.is_dir() {
            // a folder given by name must be readable (its subfolders are skipped if not)
            std::fs::read_dir(p).map_err(|e| Error::io(p, e))?;
            walk(p, &mut out, &mut Default::default())?;
        } else if p.is_file() && has_ext(p, &LIST_EXTENSIONS) {
            out.extend(read_list(p)?);
        } else if p.is_file() || imagedb::split_virtual(p).is_some() {
            out.push(p.clone());
        } else {
            return Err(Error::path(p.display(), "no such file or folder"));
        }
    }
    if out.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Input(format!(
            "no images ({}, or an LMDB) under {}",
            IMAGE_EXTENSIONS.join(", "),
            names.join(", ")
        )));
    }
    Ok(out)
}

/// Walks `dir` recursively. A folder reached twice (a symlink loop, or two links to one
/// folder) is read once; a subfolder that cannot be read, or an LMDB inside that holds no
/// images (a feature cache written into its own dataset), is skipped with a warning.
fn walk(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<()> {
    let real = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    if !seen.insert(real.clone()) {
        tracing::warn!(
            "{}: skipped, it is {} again (a symlink loop?)",
            dir.display(),
            real.display()
        );
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => {
            tracing::warn!(
                "{}: skipped, cannot read the folder: {}",
                dir.display(),
                Error::io(dir, e)
            );
            return Ok(());
        }
    };
    entries.sort();
    for e in entries {
        if imagedb::is_lmdb(&e) {
            let db = match imagedb::open(&e).and_then(|db| db.check_holds_images().map(|_| db)) {
                Ok(db) => db,
                Err(err) => {
                    tracing::warn!("{}: skipped: {err}", e.display());
                    continue;
                }
            };
            out.extend(db.paths()?);
        } else if e.is_dir() {
            walk(&e, out, seen)?;
        } else if has_ext(&e, &IMAGE_EXTENSIONS) {
            out.push(e);
        }
    }
    Ok(())
}

/// The images a list file names, one per non-empty line (`path` or `path label`; `#`
/// starts a comment).
pub fn read_list(list: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new(""));
    Ok(text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            // a trailing integer is the label; paths may contain spaces
            let path = match l.rsplit_once(char::is_whitespace) {
                Some((p, label)) if label.parse::<i64>().is_ok() => p.trim_end(),
                _ => l,
            };
            base.join(path)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_lists_and_lmdbs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let img = image::RgbImage::from_pixel(2, 2, image::Rgb([9, 9, 9]));
        std::fs::create_dir_all(d.join("f/b")).unwrap();
        for p in ["f/b/2.png", "f/1.jpg", "f/note.md", "x y.png"] {
            if p.ends_with("md") {
                std::fs::write(d.join(p), "x").unwrap();
            } else {
                img.save(d.join(p)).unwrap();
            }
        }
        imagedb::write(&d.join("f/db"), &[("k.png".into(), img.clone(), None)]).unwrap();
        std::fs::write(d.join("list.txt"), "# images\nx y.png 3\n\nf/1.jpg\n").unwrap();
        let got = collect(&[d.join("f"), d.join("list.txt")]).unwrap();
        let want = vec![
            d.join("f/1.jpg"),
            d.join("f/b/2.png"),
            d.join("f/db/00000000_k.png"),
            d.join("x y.png"),
            d.join("f/1.jpg"),
        ];
        assert_eq!(got, want);
        assert!(collect(&[d.join("missing")]).is_err());
        std::fs::create_dir_all(d.join("empty")).unwrap();
        let e = collect(&[d.join("empty")]).unwrap_err().to_string();
        assert!(e.contains("no images"), "{e}");
    }
}
