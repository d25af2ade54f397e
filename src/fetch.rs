//! `treevis models fetch|list`: pretrained weights from the locations the frameworks' own
//! download code uses (`models/registry.toml`), into `$XDG_CACHE_HOME/treevis/models/NAME/`,
//! resumed after an interruption (HTTP range requests on `FILE.part`) and verified against
//! the digest in the registry before they take their final name: a wrong file is deleted,
//! never left half-written.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::Digest;

use crate::error::{Error, Result};

/// The registry shipped with treevis.
pub const REGISTRY: &str = include_str!("../models/registry.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub model: Vec<Entry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    /// The spec the weights belong to (`--model`).
    pub spec: String,
    #[serde(default)]
    pub description: String,
    pub files: Vec<RemoteFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteFile {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub sha256: Option<String>,
    /// The leading hex digits of the SHA-256, where no full digest could be confirmed:
    /// torchvision publishes the first 8 in each file name, and torch.hub's own
    /// `check_hash` checks no more.
    #[serde(default)]
    pub sha256_prefix: Option<String>,
    /// Only where the publisher gives no SHA-256 (Caffe's model zoo).
    #[serde(default)]
    pub sha1: Option<String>,
    #[serde(default)]
    pub size: Option<u64>,
}

impl Registry {
    pub fn parse(text: &str, origin: &str) -> Result<Registry> {
        let r: Registry = toml::from_str(text).map_err(|e| Error::Spec {
            origin: origin.into(),
            msg: e.to_string().trim().replace('\n', " "),
        })?;
        for m in &r.model {
            for f in &m.files {
                let hex = |d: &String, ok: &dyn Fn(usize) -> bool| {
                    ok(d.len()) && d.chars().all(|c| c.is_ascii_hexdigit())
                };
                let ok = match (&f.sha256, &f.sha256_prefix, &f.sha1) {
                    (Some(d), None, None) => hex(d, &|n| n == 64),
                    (None, Some(d), None) => hex(d, &|n| (8..64).contains(&n)),
                    (None, None, Some(d)) => hex(d, &|n| n == 40),
                    _ => false,
                };
                if !ok {
                    return Err(Error::Spec {
                        origin: origin.into(),
                        msg: format!(
                            "{}: file {} needs one digest: sha256 (64 hex digits), sha256_prefix (8 or more) or sha1 (40)",
                            m.name, f.name
                        ),
                    });
                }
            }
        }
        Ok(r)
    }

    #[allow(
        clippy::expect_used,
        reason = "the registry is compiled in, and a unit test parses it"
    )]
    pub fn builtin() -> Registry {
        Registry::parse(REGISTRY, "models/registry.toml").expect("the shipped registry parses")
    }

    pub fn get(&self, name: &str) -> Result<&Entry> {
        self.model.iter().find(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.model.iter().map(|m| m.name.as_str()).collect();
            Error::Input(format!(
                "no model `{name}` to fetch (known: {})",
                known.join(", ")
            ))
        })
    }
}

/// treevis's cache folder: `$XDG_CACHE_HOME/treevis`, else `~/.cache/treevis`, else the
/// system's temporary folder.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("treevis")
}

/// Where fetched models live.
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// The fetched weights of the built-in spec `spec`, if `treevis models fetch` got them.
pub fn fetched_weights(spec: &str) -> Option<PathBuf> {
    let reg = Registry::builtin();
    let m = reg.model.iter().find(|m| m.spec == spec)?;
    let f = m.files.first()?;
    let p = models_dir().join(&m.name).join(&f.name);
    p.is_file().then_some(p)
}

/// A digest being computed, of whichever kind the registry gives.
enum Hasher {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
}

impl Hasher {
    fn for_file(f: &RemoteFile) -> (Hasher, String) {
        match (f.sha256.as_ref().or(f.sha256_prefix.as_ref()), &f.sha1) {
            (Some(d), _) => (Hasher::Sha256(sha2::Sha256::new()), d.to_lowercase()),
            (None, Some(d)) => (Hasher::Sha1(sha1::Sha1::new()), d.to_lowercase()),
            (None, None) => unreachable!("checked when the registry is parsed"),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => crate::hex::encode(h.finalize()),
            Hasher::Sha1(h) => crate::hex::encode(h.finalize()),
        }
    }
}

fn hash_file(path: &Path, h: &mut Hasher) -> Result<u64> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            return Ok(n);
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// The size and digest of `path`, and whether they are the registry's; `None` when there
/// is no such file.
fn check(path: &Path, f: &RemoteFile) -> Result<Option<(bool, u64, String, String)>> {
    if !path.is_file() {
        return Ok(None);
    }
    let (mut h, want) = Hasher::for_file(f);
    let n = hash_file(path, &mut h)?;
    let got = h.hex();
    // a full digest, or the leading digits the registry holds
    Ok(Some((
        f.size.is_none_or(|s| s == n) && got.starts_with(&want) && !want.is_empty(),
        n,
        got,
        want,
    )))
}

/// Whether `path` holds the registry's file (size and digest). A file verified before, and
/// unchanged since (same size and modification time, see [`stamp`]), is not read again.
pub fn verify(path: &Path, f: &RemoteFile) -> Result<bool> {
    let want = Hasher::for_file(f).1;
    if stamped(path).is_some_and(|d| d == want) {
        return Ok(true);
    }
    let before = identity(path);
    let ok = check(path, f)?.is_some_and(|c| c.0);
    // a file that changed while it was read is not stamped
    if ok && identity(path) == before {
        stamp(path, &want);
    }
    Ok(ok)
}

/// Where the digest of a verified `path` is recorded: `.NAME.verified` beside it.
fn stamp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.verified"))
}

/// What a stamp must match: the file's device, inode, size, and modification and change
/// times (a copy that keeps the modification time still gets a new inode and change time).
fn identity(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    Some(format!(
        "{}:{}:{}:{}.{:09}:{}.{:09}",
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec()
    ))
}

/// Records that `path`, as it is now, has `digest` (best effort: a read-only folder only
/// means the next check reads the file again).
fn stamp(path: &Path, digest: &str) {
    if let Some(id) = identity(path) {
        let _ = std::fs::write(stamp_path(path), format!("{digest} {id}\n"));
    }
}

/// The digest recorded for `path`, if the file is still the one that was verified.
fn stamped(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(stamp_path(path)).ok()?;
    let (digest, id) = text.trim_end().split_once(' ')?;
    (identity(path)? == id).then(|| digest.to_string())
}

/// How a fetch reports progress.
pub trait Progress {
    fn start(&self, file: &str, total: Option<u64>, already: u64);
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// Downloads `f` from `url` into `dir`, resuming `NAME.part`; verifies it; returns its path.
pub fn fetch_file(
    f: &RemoteFile,
    url: &str,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let done = dir.join(&f.name);
    if verify(&done, f)? {
        return Ok(done);
    }
    let part = dir.join(format!("{}.part", f.name));
    let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let net = |e: ureq::Error| Error::Input(format!("downloading {url}: {e}"));
    // a stalled connection fails (and the next run resumes) instead of hanging
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .timeout_per_read(Some(std::time::Duration::from_secs(60)))
            .build(),
    );
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = match req.call() {
        // the part file already holds everything
        Err(ureq::Error::StatusCode(416)) => None,
        r => Some(r.map_err(net)?),
    };
    if let Some(resp) = resp {
        // a partial answer counts only if it starts where the part file ends
        let from = resp.headers().get("content-range").and_then(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("bytes ")?
                .split('-')
                .next()?
                .parse::<u64>()
                .ok()
        });
        if resp.status().as_u16() == 206 && from != Some(have) {
            let _ = std::fs::remove_file(&part);
            return Err(Error::Input(format!(
                "downloading {url}: the server resumed at {from:?}, not at byte {have}; the partial file was deleted, run again"
            )));
        }
        let resumed = resp.status().as_u16() == 206;
        let length = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        let start = if resumed { have } else { 0 };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(resumed)
            .truncate(!resumed)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        progress.start(&f.name, length.map(|l| l + start).or(f.size), start);
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = start;
        loop {
            let k = body.read(&mut buf).map_err(|e| {
                Error::Input(format!("downloading {url}: {e} (run again to resume)"))
            })?;
            if k == 0 {
                break;
            }
            written += k as u64;
            // a server that sends more than the registry's size is not sending this file
            // (and an endless one would fill the disk)
            if let Some(size) = f.size.filter(|&s| written > s) {
                drop(out);
                let _ = std::fs::remove_file(&part);
                return Err(Error::Input(format!(
                    "downloading {url}: the server sent more than the file's {size} bytes; stopped and deleted the part file"
                )));
            }
            out.write_all(&buf[..k]).map_err(|e| Error::io(&part, e))?;
            progress.advance(k as u64);
        }
        out.flush().map_err(|e| Error::io(&part, e))?;
        progress.finish();
    }
    let (ok, n, got, want) = check(&part, f)?
        .ok_or_else(|| Error::Input(format!("downloading {url}: nothing was written")))?;
    if !ok {
        let _ = std::fs::remove_file(&part);
        return Err(Error::Input(format!(
            "{url}: the download ({n} bytes, digest {got}) is not the expected file (digest {want}{}); it was deleted",
            f.size.map(|s| format!(", {s} bytes")).unwrap_or_default()
        )));
    }
    std::fs::rename(&part, &done).map_err(|e| Error::io(&done, e))?;
    stamp(&done, &got);
    Ok(done)
}

/// Fetches every file of a registry entry into `dir/NAME/`; `mirror` replaces each URL's
/// folder (a local copy of the files).
pub fn fetch(
    entry: &Entry,
    dir: &Path,
    mirror: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    let into = dir.join(&entry.name);
    entry
        .files
        .iter()
        .map(|f| {
            let url = match mirror {
                Some(m) => format!("{}/{}", m.trim_end_matches('/'), f.name),
                None => f.url.clone(),
            };
            fetch_file(f, &url, &into, progress)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_registry_is_complete() {
        let r = Registry::builtin();
        let names = [
            "alexnet",
            "vgg16",
            "caffenet",
            "resnet18",
            "resnet34",
            "resnet50",
            "resnet101",
            "vgg16_bn",
            "googlenet",
            "densenet121",
            "mobilenet_v2",
            "squeezenet1_1",
        ];
        assert_eq!(r.model.len(), names.len());
        for name in names {
            let m = r.get(name).unwrap();
            assert!(crate::model::spec::builtin_names().contains(&m.spec.as_str()));
            for f in &m.files {
                let d = f
                    .sha256
                    .as_deref()
                    .or(f.sha256_prefix.as_deref())
                    .or(f.sha1.as_deref())
                    .unwrap();
                // torchvision names carry the digest's first 8 hex digits
                if let Some(h) = f
                    .name
                    .rsplit('-')
                    .next()
                    .and_then(|t| t.strip_suffix(".pth"))
                {
                    assert!(d.starts_with(h), "{}", f.name);
                }
            }
        }
        assert!(r.get("resnet").is_err());
    }

    #[test]
    fn a_digest_prefix_is_checked_as_torch_hub_does() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, b"weights").unwrap();
        let full = crate::hex::encode(sha2::Sha256::digest(b"weights"));
        let file = |prefix: &str| RemoteFile {
            name: "w.bin".into(),
            url: String::new(),
            sha256: None,
            sha256_prefix: Some(prefix.into()),
            sha1: None,
            size: None,
        };
        assert!(verify(&path, &file(&full[..8])).unwrap());
        let wrong = format!("{}0", &full[..7]);
        let wrong = if wrong == full[..8] {
            format!("{}1", &full[..7])
        } else {
            wrong
        };
        assert!(!verify(&path, &file(&wrong)).unwrap());
        // a registry with a short or doubled digest is refused
        for bad in [
            "sha256_prefix = \"abc\"",
            "sha256 = \"abcd1234\"",
            "sha256_prefix = \"abcd1234\"\nsha1 = \"0000000000000000000000000000000000000000\"",
        ] {
            let text = format!(
                "[[model]]\nname = \"m\"\nspec = \"tiny\"\n[[model.files]]\nname = \"f\"\nurl = \"u\"\n{bad}\n"
            );
            assert!(Registry::parse(&text, "r").is_err(), "{bad}");
        }
    }

    #[test]
    fn a_verified_file_is_not_read_again_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, b"weights").unwrap();
        let f = RemoteFile {
            name: "w.bin".into(),
            url: String::new(),
            sha256: Some(crate::hex::encode(sha2::Sha256::digest(b"weights"))),
            sha256_prefix: None,
            sha1: None,
            size: Some(7),
        };
        assert!(!stamp_path(&path).exists());
        assert!(verify(&path, &f).unwrap());
        assert_eq!(stamped(&path).as_deref(), f.sha256.as_deref());
        // the same size, other bytes, another modification time: read again, and refused
        std::fs::write(&path, b"WEIGHTS").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1000))
            .unwrap();
        assert_eq!(stamped(&path), None);
        assert!(!verify(&path, &f).unwrap());
        // a stamp for another digest is no proof
        std::fs::write(&path, b"weights").unwrap();
        stamp(&path, "00");
        assert!(verify(&path, &f).unwrap());
        assert_eq!(stamped(&path).as_deref(), f.sha256.as_deref());
    }
}
