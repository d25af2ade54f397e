//! Caffe-style LMDB image databases (one `Datum` per record, as `convert_imageset` writes
//! them), read-only.
//!
//! A record is named by a *virtual path*: the database folder joined with the record's key
//! (`val_lmdb/00000042_n01440764/x.JPEG`), so everything that takes an image path (the
//! gallery, the engine, every headless command) takes an LMDB record too. Keys that are not
//! UTF-8 are written `0x` and their bytes in hex.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use lmdb::{Cursor, Transaction};

use super::datum::{self, DatumImage};
use crate::error::{Error, Result};

/// An open LMDB of images.
pub struct ImageDb {
    path: PathBuf,
    env: lmdb::Environment,
    db: lmdb::Database,
    bounds: super::lmdbfile::MapBounds,
}

/// True when `dir` is an LMDB environment folder (it holds `data.mdb`).
pub fn is_lmdb(dir: &Path) -> bool {
    dir.join("data.mdb").is_file()
}

/// Opens (once per process, as LMDB requires) the database in `dir`.
pub fn open(dir: &Path) -> Result<Arc<ImageDb>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Arc<ImageDb>>>> = OnceLock::new();
    let key = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let mut open = OPEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(db) = open.get(&key) {
        return Ok(db.clone());
    }
    let db = Arc::new(ImageDb::open_uncached(dir)?);
    open.insert(key, db.clone());
    Ok(db)
}

impl ImageDb {
    fn open_uncached(dir: &Path) -> Result<ImageDb> {
        if !is_lmdb(dir) {
            return Err(Error::db(dir, "not an LMDB folder (no data.mdb)"));
        }
        let env = super::lmdbfile::open_read_only(dir, None)?;
        let db = env
            .open_db(None)
            .map_err(|e| Error::db(dir, format!("cannot open the main database: {e}")))?;
        let bounds = super::lmdbfile::MapBounds::of(dir)?;
        Ok(ImageDb {
            path: dir.to_path_buf(),
            env,
            db,
            bounds,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::db(&self.path, msg.to_string())
    }

    /// `s`, a key or record LMDB returned, when it lies in the file.
    fn checked<'a>(&self, s: &'a [u8]) -> Result<&'a [u8]> {
        if self.bounds.holds(s) {
            Ok(s)
        } else {
            Err(self.err("damaged: a record runs past the end of data.mdb"))
        }
    }

    /// Every key, in the database's (byte-sorted) order.
    pub fn keys(&self) -> Result<Vec<Vec<u8>>> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.err(e))?;
        let mut cur = txn.open_ro_cursor(self.db).map_err(|e| self.err(e))?;
        cur.iter_start()
            .map(|kv| {
                let (k, _) = kv.map_err(|e| self.err(e))?;
                Ok(self.checked(k)?.to_vec())
            })
            .collect()
    }

    /// The virtual paths of every record.
    pub fn paths(&self) -> Result<Vec<PathBuf>> {
        Ok(self
            .keys()?
            .iter()
            .map(|k| self.path.join(key_to_str(k)))
            .collect())
    }

    /// Decodes the record under `key`.
    pub fn get(&self, key: &[u8]) -> Result<DatumImage> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.err(e))?;
        let what = format!("{}: record `{}`", self.path.display(), key_to_str(key));
        let bytes = match txn.get(self.db, &key) {
            Ok(b) => self.checked(b)?,
            Err(lmdb::Error::NotFound) => return Err(Error::Input(format!("{what}: no such key"))),
            Err(e) => return Err(self.err(e)),
        };
        datum::decode(bytes, &what)
    }

    /// Refuses a database whose first record is not a Caffe `Datum` (a treevis feature
    /// cache, or some other LMDB): its records would be read as junk images.
    pub fn check_holds_images(&self) -> Result<()> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.err(e))?;
        let mut cur = txn.open_ro_cursor(self.db).map_err(|e| self.err(e))?;
        let first = cur.iter_start().next();
        match first {
            None => Ok(()),
            Some(Err(e)) => Err(self.err(e)),
            Some(Ok((k, v))) => datum::decode(self.checked(v)?, &key_to_str(self.checked(k)?))
                .map(|_| ())
                .map_err(|_| {
                    self.err(format!(
                        "not an image database: its first record `{}` is not a Caffe Datum (a treevis feature cache?)",
                        key_to_str(k)
                    ))
                }),
        }
    }

    /// The number of records.
    pub fn len(&self) -> Result<usize> {
        Ok(self.env.stat().map_err(|e| self.err(e))?.entries())
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A key as it appears in a virtual path.
pub fn key_to_str(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if !s.is_empty() && !s.starts_with("0x") && !s.contains(['\0', '\\']) => s.into(),
        _ => format!("0x{}", crate::hex::encode(key)),
    }
}

fn str_to_key(s: &str) -> Vec<u8> {
    s.strip_prefix("0x")
        .and_then(crate::hex::decode)
        .unwrap_or_else(|| s.as_bytes().to_vec())
}

/// Splits a virtual path into its database folder and key, if an ancestor of `path` is an
/// LMDB folder and `path` itself is not a file.
pub fn split_virtual(path: &Path) -> Option<(PathBuf, Vec<u8>)> {
    if path.is_file() {
        return None;
    }
    let mut db = path.parent();
    while let Some(d) = db {
        if is_lmdb(d) {
            let rest = path.strip_prefix(d).ok()?;
            let key = rest
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            return Some((d.to_path_buf(), str_to_key(&key)));
        }
        db = d.parent();
    }
    None
}

/// Loads a record given by its virtual path.
pub fn load_virtual(path: &Path) -> Option<Result<DatumImage>> {
    let (dir, key) = split_virtual(path)?;
    Some(open(&dir).and_then(|db| db.get(&key)))
}

/// Writes `images` as a Caffe-style LMDB of raw `Datum`s under keys `%08d_NAME`, as
/// `convert_imageset` names them (used for tests and the demo dataset).
pub fn write(dir: &Path, images: &[(String, image::RgbImage, Option<i32>)]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let size: usize = images
        .iter()
        .map(|(_, i, _)| i.as_raw().len() + 64)
        .sum::<usize>();
    let env = super::lmdbfile::open_read_write(dir, (size * 2 + (1 << 20)).next_power_of_two())?;
    let db = env
        .open_db(None)
        .map_err(|e| Error::db(dir, e.to_string()))?;
    let mut txn = env
        .begin_rw_txn()
        .map_err(|e| Error::db(dir, e.to_string()))?;
    for (i, (name, img, label)) in images.iter().enumerate() {
        let key = format!("{i:08}_{name}");
        txn.put(
            db,
            &key,
            &datum::encode_raw(img, *label),
            lmdb::WriteFlags::empty(),
        )
        .map_err(|e| Error::db(dir, e.to_string()))?;
    }
    txn.commit().map_err(|e| Error::db(dir, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_list_and_read_back_by_virtual_path() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("imgs_lmdb");
        let imgs: Vec<_> = (0..3u8)
            .map(|i| {
                (
                    format!("sub/{i}.png"),
                    image::RgbImage::from_pixel(4, 2, image::Rgb([i * 50, 1, 2])),
                    Some(i as i32),
                )
            })
            .collect();
        write(&db, &imgs).unwrap();
        assert!(is_lmdb(&db));
        let opened = open(&db).unwrap();
        assert_eq!(opened.len().unwrap(), 3);
        let paths = opened.paths().unwrap();
        assert_eq!(paths[1], db.join("00000001_sub/1.png"));
        let rec = load_virtual(&paths[2]).unwrap().unwrap();
        assert_eq!(rec.image, imgs[2].1);
        assert_eq!(rec.label, Some(2));
        let missing = load_virtual(&db.join("nope")).unwrap().unwrap_err();
        assert!(missing.to_string().contains("no such key"), "{missing}");
        assert!(load_virtual(&dir.path().join("x.png")).is_none());
    }

    #[test]
    fn binary_keys_round_trip_through_hex() {
        for k in [&b"\x00\xffab"[..], b"0xzz", b"plain_key"] {
            assert_eq!(str_to_key(&key_to_str(k)), k);
        }
        assert_eq!(key_to_str(b"a/b.jpg"), "a/b.jpg");
    }
}
