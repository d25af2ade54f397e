//! The cache's LMDB environment: one database of string keys and byte values, written in
//! transactions so that a build killed at any moment leaves the last checkpoint intact.

use std::path::{Path, PathBuf};

use lmdb::{Cursor, Transaction};

use crate::error::{Error, Result};

/// Virtual size of the memory map; LMDB files are sparse, so this only bounds growth.
const MAP_SIZE: usize = 1 << 40;

pub struct Store {
    path: PathBuf,
    env: lmdb::Environment,
    db: lmdb::Database,
    bounds: crate::data::lmdbfile::MapBounds,
}

impl Store {
    /// Opens (creating when `create`) the cache in folder `dir`.
    pub fn open(dir: &Path, create: bool) -> Result<Store> {
        if create {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        } else if !dir.join("data.mdb").is_file() {
            return Err(Error::db(dir, "no feature cache here (no data.mdb)"));
        }
        let env = if create {
            crate::data::lmdbfile::open_read_write(dir, MAP_SIZE)?
        } else {
            crate::data::lmdbfile::open_read_only(dir, Some(MAP_SIZE))?
        };
        let db = env
            .open_db(None)
            .map_err(|e| Error::db(dir, format!("cannot open the database: {e}")))?;
        let bounds = crate::data::lmdbfile::MapBounds::of(dir)?;
        Ok(Store {
            path: dir.to_path_buf(),
            env,
            db,
            bounds,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::db(&self.path, e.to_string())
    }

    /// `s`, a record LMDB returned, when it lies in the file (else the file is damaged).
    fn checked<'a>(&self, s: &'a [u8], what: &str) -> Result<&'a [u8]> {
        if self.bounds.holds(s) {
            Ok(s)
        } else {
            Err(self.err(format!(
                "damaged: record `{what}` runs past the end of data.mdb"
            )))
        }
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.err(e))?;
        match txn.get(self.db, &key) {
            Ok(v) => Ok(Some(self.checked(v, key)?.to_vec())),
            Err(lmdb::Error::NotFound) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Writes all `puts` atomically: after a crash, either all or none are there.
    pub fn write(&self, puts: &[(String, Vec<u8>)]) -> Result<()> {
        let explain = |e| crate::data::lmdbfile::explain(&self.path, e);
        let mut txn = self.env.begin_rw_txn().map_err(|e| self.err(explain(e)))?;
        for (k, v) in puts {
            txn.put(self.db, k, v, lmdb::WriteFlags::empty())
                .map_err(|e| self.err(format!("writing `{k}`: {}", explain(e))))?;
        }
        txn.commit().map_err(|e| self.err(explain(e)))
    }

    /// Every key starting with `prefix`, in order, with its value.
    pub fn scan(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.env.begin_ro_txn().map_err(|e| self.err(e))?;
        let mut cur = txn.open_ro_cursor(self.db).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        let iter = if prefix.is_empty() {
            cur.iter_start()
        } else {
            cur.iter_from(prefix)
        };
        for kv in iter {
            let (k, v) = kv.map_err(|e| self.err(e))?;
            let k = self.checked(k, prefix)?;
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            let name = String::from_utf8_lossy(k).into_owned();
            let v = self.checked(v, &name)?;
            out.push((name, v.to_vec()));
        }
        Ok(out)
    }

    /// Bytes the cache takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::metadata(self.path.join("data.mdb"))
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                m.blocks() * 512
            })
            .unwrap_or(0)
    }
}

/// Little-endian byte writer and reader for the cache's records.
#[derive(Default)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn blob(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
}

/// Reads what [`Bytes`] wrote; every read checks the length, so a damaged record is an
/// error, not a panic.
pub struct Reader<'a> {
    b: &'a [u8],
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8], what: &'a str) -> Reader<'a> {
        Reader { b, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.b.len() < n {
            return Err(Error::Input(format!(
                "feature cache record `{}` is truncated",
                self.what
            )));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn f32(&mut self) -> Result<f32> {
        let b = self.take(4)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn blob(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}
