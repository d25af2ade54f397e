//! Opening LMDB environments safely. LMDB memory-maps `data.mdb` and trusts it: a file
//! shorter than its own meta page says (a truncated copy, a full disk, an interrupted
//! `rsync`) is read past its end, and the kernel answers with SIGBUS. So the file's meta
//! pages are checked against its length before LMDB ever maps it.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// LMDB's `MDB_MAGIC`.
const MAGIC: u32 = 0xBEEF_C0DE;
/// `MDB_DATA_VERSION` of LMDB 0.9 (`MDB_DEVEL` off).
const DATA_VERSION: u32 = 1;
/// The page header (`mp_pgno`, `mp_pad`, `mp_flags`, `mp_lower`, `mp_upper`) on 64-bit.
const PAGE_HEADER: usize = 16;
/// Offsets in a meta page (after the header) of `MDB_meta`'s fields on 64-bit builds:
/// magic u32, version u32, address ptr, mapsize size_t, two `MDB_db` of 48 bytes (the first
/// one's `md_pad` holds the page size), last_pg, txnid.
const OFF_MAGIC: usize = PAGE_HEADER;
const OFF_VERSION: usize = PAGE_HEADER + 4;
const OFF_PSIZE: usize = PAGE_HEADER + 24;
const OFF_LAST_PG: usize = PAGE_HEADER + 24 + 2 * 48;
const OFF_TXNID: usize = OFF_LAST_PG + 8;
const META_LEN: usize = OFF_TXNID + 8;

/// The roots of the two databases in a meta page (`mm_dbs[i].md_root`, 40 bytes into
/// each 48-byte `MDB_db`): the free-page database and the main one.
const OFF_FREE_ROOT: usize = PAGE_HEADER + 24 + 40;
const OFF_MAIN_ROOT: usize = PAGE_HEADER + 24 + 48 + 40;
/// `P_INVALID`: an empty database has no root page.
const NO_PAGE: u64 = u64::MAX;

/// What one meta page says.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Meta {
    page_size: u64,
    last_page: u64,
    txnid: u64,
    roots: [u64; 2],
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Parses a meta page, or says why it is not one.
fn meta(page: &[u8]) -> std::result::Result<Meta, String> {
    if page.len() < META_LEN {
        return Err("shorter than an LMDB meta page".into());
    }
    if u32_at(page, OFF_MAGIC) != Some(MAGIC) {
        return Err("not an LMDB file (bad magic number)".into());
    }
    let version = u32_at(page, OFF_VERSION).unwrap_or(0);
    if version != DATA_VERSION {
        return Err(format!(
            "LMDB data format {version}, expected {DATA_VERSION}"
        ));
    }
    let page_size = u64::from(u32_at(page, OFF_PSIZE).unwrap_or(0));
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(format!("implausible page size {page_size}"));
    }
    Ok(Meta {
        page_size,
        last_page: u64_at(page, OFF_LAST_PG).unwrap_or(u64::MAX),
        txnid: u64_at(page, OFF_TXNID).unwrap_or(0),
        roots: [
            u64_at(page, OFF_FREE_ROOT).unwrap_or(NO_PAGE),
            u64_at(page, OFF_MAIN_ROOT).unwrap_or(NO_PAGE),
        ],
    })
}

/// Checks that `data.mdb` in `dir` is a whole LMDB file: both meta pages readable and the
/// file at least as long as the pages the newest one says are in use. A missing file is
/// fine (LMDB creates it); anything else that is wrong is an error that says so.
pub fn check(dir: &Path) -> Result<()> {
    let file = dir.join("data.mdb");
    let damaged = |why: String| Error::db(dir, format!("data.mdb is damaged: {why}"));
    let mut f = match std::fs::File::open(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(&file, e)),
    };
    let len = f.metadata().map_err(|e| Error::io(&file, e))?.len();
    if len == 0 {
        return Err(damaged("the file is empty".into()));
    }
    let mut first = vec![0u8; META_LEN];
    f.read_exact(&mut first)
        .map_err(|_| damaged(format!("the file has only {len} bytes")))?;
    let m0 = meta(&first).map_err(damaged)?;
    let second_at = m0.page_size;
    if len < second_at + META_LEN as u64 {
        return Err(damaged(format!(
            "the file has only {len} bytes, less than its two meta pages"
        )));
    }
    let mut second = vec![0u8; META_LEN];
    {
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::Start(second_at))
            .map_err(|e| Error::io(&file, e))?;
    }
    f.read_exact(&mut second).map_err(|e| Error::io(&file, e))?;
    let m1 = meta(&second).map_err(damaged)?;
    // LMDB reads the meta page of the newer transaction
    let newest = if m1.txnid > m0.txnid { m1 } else { m0 };
    let need = newest
        .last_page
        .checked_add(1)
        .and_then(|p| p.checked_mul(newest.page_size))
        .ok_or_else(|| damaged(format!("last page {} is impossible", newest.last_page)))?;
    if len < need {
        return Err(damaged(format!(
            "the file has {len} bytes but its last transaction uses {need} \
             (truncated? copy it again)"
        )));
    }
    for root in newest.roots {
        walk_tree(&f, &newest, root).map_err(damaged)?;
    }
    Ok(())
}

// The B-tree page layout of LMDB 0.9 on 64-bit builds (`mdb.c`): a 16-byte header
// (`mp_pgno` u64, `mp_pad` u16, `mp_flags` u16, `mp_lower` u16, `mp_upper` u16; an
// overflow page keeps its page count in the last four), then `mp_ptrs`, the u16 offsets of
// its nodes. A node: `mn_lo`, `mn_hi`, `mn_flags`, `mn_ksize` (u16 each), the key, the data.
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const P_LEAF2: u16 = 0x20;
const F_BIGDATA: u16 = 0x01;
const NODE_HEADER: usize = 8;

/// Walks a database's B-tree from `root` (reading pages with `pread`, never through a
/// map), checking that every page it reaches is a branch or leaf page inside the file,
/// that every node lies in its page, and that every overflow record lies in the file. LMDB
/// trusts all of these, and a damaged one makes it read past the end of its map (SIGBUS).
/// Leaves and branches are a small part of a database of images or crops (the records
/// live in overflow pages, which are not read), so this costs little.
fn walk_tree(f: &std::fs::File, m: &Meta, root: u64) -> std::result::Result<(), String> {
    use std::os::unix::fs::FileExt;
    if root == NO_PAGE {
        return Ok(());
    }
    let ps = m.page_size as usize;
    let pages = m.last_page.saturating_add(1);
    let mut page = vec![0u8; ps];
    let mut stack = vec![(root, 0usize)];
    let mut seen = std::collections::HashSet::new();
    let read = |pgno: u64, buf: &mut [u8]| -> std::result::Result<(), String> {
        if pgno < 2 || pgno >= pages {
            return Err(format!(
                "a page number {pgno} outside the file's {pages} pages"
            ));
        }
        f.read_exact_at(buf, pgno * m.page_size)
            .map_err(|e| format!("page {pgno}: {e}"))
    };
    while let Some((pgno, depth)) = stack.pop() {
        if depth > 64 || !seen.insert(pgno) {
            return Err(format!("page {pgno} is reached twice (a cycle)"));
        }
        read(pgno, &mut page)?;
        let u16_at = |o: usize| u16::from_le_bytes([page[o], page[o + 1]]);
        let (flags, lower, upper) = (u16_at(10), usize::from(u16_at(12)), usize::from(u16_at(14)));
        let bad = |what: &str| format!("page {pgno}: {what}");
        if flags & (P_BRANCH | P_LEAF) == 0 || flags & (P_OVERFLOW | P_LEAF2) != 0 {
            return Err(bad(&format!(
                "not a branch or leaf page (flags {flags:#x})"
            )));
        }
        if lower < PAGE_HEADER
            || lower > upper
            || upper > ps
            || !(lower - PAGE_HEADER).is_multiple_of(2)
        {
            return Err(bad("its node table is out of the page"));
        }
        for i in 0..(lower - PAGE_HEADER) / 2 {
            let at = usize::from(u16_at(PAGE_HEADER + 2 * i));
            if at < upper || at + NODE_HEADER > ps {
                return Err(bad("a node outside the page"));
            }
            let (lo, hi, nflags, ksize) = (
                u64::from(u16_at(at)),
                u64::from(u16_at(at + 2)),
                u16_at(at + 4),
                usize::from(u16_at(at + 6)),
            );
            let data = at + NODE_HEADER + ksize;
            if data > ps {
                return Err(bad("a key runs past the page"));
            }
            if flags & P_BRANCH != 0 {
                // a branch node's child: 48 bits in lo, hi and flags
                let child = lo | (hi << 16) | (u64::from(nflags) << 32);
                stack.push((child, depth + 1));
                continue;
            }
            let size = (lo | (hi << 16)) as usize;
            if nflags & F_BIGDATA == 0 {
                if data + size > ps {
                    return Err(bad("a record runs past the page"));
                }
                continue;
            }
            // a record in overflow pages: its first page number in the node, its page
            // count in that page's header
            if data + 8 > ps {
                return Err(bad("an overflow reference runs past the page"));
            }
            let first = u64::from_le_bytes(page[data..data + 8].try_into().unwrap_or([0; 8]));
            let mut head = [0u8; PAGE_HEADER];
            read(first, &mut head)?;
            let oflags = u16::from_le_bytes([head[10], head[11]]);
            let count = u64::from(u32::from_le_bytes([head[12], head[13], head[14], head[15]]));
            let fits = first.checked_add(count).is_some_and(|end| end <= pages)
                && (size as u64)
                    <= count
                        .saturating_mul(m.page_size)
                        .saturating_sub(PAGE_HEADER as u64);
            if oflags & P_OVERFLOW == 0 || !fits {
                return Err(format!(
                    "page {first}: a record of {size} bytes does not fit its overflow pages"
                ));
            }
        }
    }
    Ok(())
}

/// Where an environment's committed records can lie: the process's memory maps of its
/// `data.mdb` (from `/proc/self/maps`), cut at the end of the file. LMDB hands out records as
/// slices of the map and trusts the lengths written in the pages; a damaged page can name a
/// record that runs past the end of the file, and touching it is a SIGBUS. Every record
/// read is checked against these bounds first, without touching its bytes. (Where
/// `/proc/self/maps` cannot be read, nothing is checked.)
pub struct MapBounds {
    file: std::path::PathBuf,
    /// `(start, end of the mapping, end of the file in it)` of each mapping of the file.
    maps: std::sync::Mutex<Vec<(usize, usize, usize)>>,
}

impl MapBounds {
    pub fn of(dir: &Path) -> Result<MapBounds> {
        let file = dir
            .join("data.mdb")
            .canonicalize()
            .map_err(|e| Error::io(dir.join("data.mdb"), e))?;
        let b = MapBounds {
            file,
            maps: std::sync::Mutex::new(Vec::new()),
        };
        b.refresh();
        Ok(b)
    }

    /// Re-reads the mappings and the file's length (a store being written grows).
    fn refresh(&self) {
        let len = std::fs::metadata(&self.file).map_or(0, |m| m.len()) as usize;
        let maps = std::fs::read_to_string("/proc/self/maps")
            .map(|t| mappings_of(&t, &self.file, len))
            .unwrap_or_default();
        *self.maps.lock().unwrap_or_else(|p| p.into_inner()) = maps;
    }

    /// `Some(fits)` for a slice that starts in a mapping of the file; `None` for one that
    /// does not (memory LMDB allocated itself: a write transaction's pages).
    fn fits(&self, s: &[u8]) -> Option<bool> {
        let p = s.as_ptr() as usize;
        let maps = self.maps.lock().unwrap_or_else(|p| p.into_inner());
        let &(_, _, file_end) = maps
            .iter()
            .find(|&&(start, end, _)| p >= start && p < end)?;
        Some(p.checked_add(s.len()).is_some_and(|e| e <= file_end))
    }

    /// Whether `s` (a key or value LMDB returned) lies wholly in the file, checked without
    /// touching its bytes.
    pub fn holds(&self, s: &[u8]) -> bool {
        if s.is_empty() || self.fits(s) != Some(false) {
            return true;
        }
        self.refresh();
        self.fits(s) != Some(false)
    }
}

/// The mappings of `file` at offset 0 in a `/proc/self/maps` text, with where the file's
/// `len` bytes end in each.
fn mappings_of(maps: &str, file: &Path, len: usize) -> Vec<(usize, usize, usize)> {
    let name = file.to_string_lossy();
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let _perms = f.next()?;
            let offset = f.next()?;
            let (_dev, _inode) = (f.next()?, f.next()?);
            let path = f.collect::<Vec<_>>().join(" ");
            if path != name || usize::from_str_radix(offset, 16).ok()? != 0 {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let (start, end) = (
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            );
            Some((start, end, end.min(start.saturating_add(len))))
        })
        .collect()
}

/// An LMDB error as a user reads it. LMDB reports a full disk as "Input/output error" (a
/// short write): when the file system holding `dir` has (almost) no room left, it is named
/// for what it is.
pub fn explain(dir: &Path, e: lmdb::Error) -> String {
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;
    match e {
        lmdb::Error::MapFull => "the database reached its map size".into(),
        lmdb::Error::Other(EIO | ENOSPC) => match free_bytes(dir) {
            Some(free) if free < 64 << 20 => format!(
                "no space left on device ({} MB free on the disk that holds it)",
                free >> 20
            ),
            _ => e.to_string(),
        },
        e => e.to_string(),
    }
}

/// Bytes free to an unprivileged user on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let s = rustix::fs::statvfs(dir).ok()?;
    s.f_bavail.checked_mul(s.f_frsize)
}

/// Opens the LMDB environment in `dir` for reading (with a memory map of `map_size` when
/// given), after [`check`]ing its file. A read-only or shared folder cannot take a lock
/// file: it is read without one then.
pub fn open_read_only(dir: &Path, map_size: Option<usize>) -> Result<lmdb::Environment> {
    check(dir)?;
    let ro = lmdb::EnvironmentFlags::READ_ONLY | lmdb::EnvironmentFlags::NO_TLS;
    let open = |flags| {
        let mut b = lmdb::Environment::new();
        b.set_flags(flags);
        if let Some(m) = map_size {
            b.set_map_size(m);
        }
        b.open(dir)
    };
    open(ro)
        .or_else(|_| open(ro | lmdb::EnvironmentFlags::NO_LOCK))
        .map_err(|e| Error::db(dir, format!("cannot open: {e}")))
}

/// Opens (creating) the LMDB environment in `dir` for writing, after [`check`]ing an
/// existing file.
pub fn open_read_write(dir: &Path, map_size: usize) -> Result<lmdb::Environment> {
    check(dir)?;
    let mut b = lmdb::Environment::new();
    b.set_map_size(map_size);
    b.open(dir)
        .map_err(|e| Error::db(dir, format!("cannot open: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lmdb::Transaction;

    fn write_env(dir: &Path) {
        let env = open_read_write(dir, 1 << 24).unwrap();
        let db = env.open_db(None).unwrap();
        let mut t = env.begin_rw_txn().unwrap();
        for i in 0..2000u32 {
            t.put(
                db,
                &format!("key{i:05}"),
                &[7u8; 100],
                lmdb::WriteFlags::empty(),
            )
            .unwrap();
        }
        t.commit().unwrap();
    }

    #[test]
    fn a_whole_file_passes_and_a_truncated_one_is_refused_before_it_is_mapped() {
        let dir = tempfile::tempdir().unwrap();
        write_env(dir.path());
        check(dir.path()).unwrap();
        assert!(open_read_only(dir.path(), None).is_ok());
        let file = dir.path().join("data.mdb");
        let len = std::fs::metadata(&file).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(len / 2).unwrap();
        let e = open_read_only(dir.path(), None).unwrap_err().to_string();
        assert!(e.contains("damaged") && e.contains("truncated"), "{e}");
        f.set_len(100).unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(e.contains("only 100 bytes"), "{e}");
        f.set_len(0).unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn junk_over_a_tree_page_is_found_before_lmdb_maps_it() {
        let dir = tempfile::tempdir().unwrap();
        write_env(dir.path());
        let file = dir.path().join("data.mdb");
        let whole = std::fs::read(&file).unwrap();
        // every page after the two meta pages, in turn: junk over a branch or leaf page is
        // refused by name; LMDB itself would follow it out of its map
        let mut refused = 0;
        for pgno in 2..whole.len() / 4096 {
            let mut bytes = whole.clone();
            for (i, b) in bytes[pgno * 4096..(pgno + 1) * 4096].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(151).wrapping_add(7);
            }
            std::fs::write(&file, &bytes).unwrap();
            if let Err(e) = check(dir.path()) {
                assert!(e.to_string().contains("damaged: page"), "{e}");
                refused += 1;
            }
        }
        assert!(refused >= 10, "{refused} pages refused");
        std::fs::write(&file, &whole).unwrap();
        check(dir.path()).unwrap();
    }

    #[test]
    fn records_are_checked_against_the_file_in_the_map() {
        let maps = "7f00-7f40 r--s 00000000 08:01 42 /data/c/data.mdb\n\
                    7f40-7f80 r--p 00000000 08:01 43 /other\n\
                    7f80-7fc0 r--s 00001000 08:01 42 /data/c/data.mdb\n";
        let got = mappings_of(maps, Path::new("/data/c/data.mdb"), 0x20);
        assert_eq!(got, vec![(0x7f00, 0x7f40, 0x7f20)]);
        // a buffer standing for the map: the file ends half way
        let buf = [0u8; 64];
        let start = buf.as_ptr() as usize;
        let b = MapBounds {
            file: "/nonexistent/data.mdb".into(),
            maps: std::sync::Mutex::new(vec![(start, start + 64, start + 32)]),
        };
        assert_eq!(b.fits(&buf[..32]), Some(true));
        assert_eq!(
            b.fits(&buf[30..40]),
            Some(false),
            "runs past the end of the file"
        );
        assert_eq!(
            b.fits(&buf[40..48]),
            Some(false),
            "starts past the end of the file"
        );
        let elsewhere = [0u8; 8];
        assert_eq!(
            b.fits(&elsewhere),
            None,
            "LMDB's own memory is not the file's"
        );
    }

    #[test]
    fn a_file_that_is_not_lmdb_is_named_so() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.mdb"), vec![1u8; 10000]).unwrap();
        let e = check(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad magic"), "{e}");
        assert!(check(&dir.path().join("absent")).is_ok());
    }
}
