//! `treevis models fetch` against a local HTTP server on 127.0.0.1 (tests never reach the
//! internet): a verified download, a wrong digest (the file is refused and nothing is left
//! behind), and an interrupted download that resumes with a range request.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// Serves `body` under any path; honours `Range: bytes=N-`; the first `cut` responses stop
/// after half of their bytes (a dropped connection). Records the requests' Range headers.
struct Server {
    port: u16,
    ranges: Arc<Mutex<Vec<Option<u64>>>>,
}

fn serve(body: Vec<u8>, cut: usize) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (i, s) in l.incoming().enumerate() {
            let Ok(s) = s else { continue };
            answer(s, &body, i < cut, &seen);
        }
    });
    Server { port, ranges }
}

fn answer(mut s: TcpStream, body: &[u8], cut: bool, seen: &Mutex<Vec<Option<u64>>>) {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range = v.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    seen.lock().unwrap().push(range);
    let start = range.unwrap_or(0) as usize;
    let part = &body[start.min(body.len())..];
    let head = if range.is_some() {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            part.len(),
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            part.len()
        )
    };
    let _ = s.write_all(head.as_bytes());
    let n = if cut { part.len() / 2 } else { part.len() };
    let _ = s.write_all(&part[..n]);
    let _ = s.flush();
    // dropping the socket ends the response (early when cut)
}

fn registry(dir: &Path, digest: &str, size: usize) -> std::path::PathBuf {
    let p = dir.join("registry.toml");
    std::fs::write(
        &p,
        format!(
            "[[model]]\nname = \"fix\"\nspec = \"tiny\"\n[[model.files]]\nname = \"fix.bin\"\nurl = \"https://example.invalid/fix.bin\"\nsha256 = \"{digest}\"\nsize = {size}\n"
        ),
    )
    .unwrap();
    p
}

fn fetch(reg: &Path, port: u16, dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["models", "fetch", "fix", "--registry"])
        .arg(reg)
        .arg("--mirror")
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn body() -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

#[test]
fn a_download_is_verified_and_listed() {
    let d = tempfile::tempdir().unwrap();
    let b = body();
    let reg = registry(d.path(), &hex(&b), b.len());
    let srv = serve(b.clone(), 0);
    let out = d.path().join("models");
    let o = fetch(&reg, srv.port, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(out.join("fix/fix.bin")).unwrap(), b);
    assert!(!out.join("fix/fix.bin.part").exists());
    let list = Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["models", "list", "--registry"])
        .arg(&reg)
        .arg("--dir")
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("fix") && text.contains("present"), "{text}");
    // fetched again: nothing downloaded
    let before = srv.ranges.lock().unwrap().len();
    assert!(fetch(&reg, srv.port, &out).status.success());
    assert_eq!(srv.ranges.lock().unwrap().len(), before);
}

#[test]
fn a_wrong_digest_is_refused_and_nothing_is_left() {
    let d = tempfile::tempdir().unwrap();
    let b = body();
    let reg = registry(d.path(), &"0".repeat(64), b.len());
    let srv = serve(b, 0);
    let out = d.path().join("models");
    let o = fetch(&reg, srv.port, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is not the expected file") && err.contains("deleted"),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(out.join("fix")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn an_interrupted_download_resumes() {
    let d = tempfile::tempdir().unwrap();
    let b = body();
    let reg = registry(d.path(), &hex(&b), b.len());
    let srv = serve(b.clone(), 1);
    let out = d.path().join("models");
    let first = fetch(&reg, srv.port, &out);
    assert!(!first.status.success(), "the cut download succeeded");
    let part = out.join("fix/fix.bin.part");
    let have = std::fs::metadata(&part).unwrap().len();
    assert!(have > 0 && have < b.len() as u64, "{have}");
    assert!(!out.join("fix/fix.bin").exists());
    let second = fetch(&reg, srv.port, &out);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(std::fs::read(out.join("fix/fix.bin")).unwrap(), b);
    // the second request asked only for the rest
    assert_eq!(*srv.ranges.lock().unwrap(), vec![None, Some(have)]);
}

/// A server that never stops sending (no Content-Length): the download stops at the
/// registry's size, says so, and leaves no part file.
#[test]
fn an_endless_server_is_stopped_at_the_registry_size() {
    let d = tempfile::tempdir().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                line.clear();
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
            let chunk = vec![7u8; 1 << 16];
            // 64 MB at most, so a broken client cannot make the test run forever
            for _ in 0..1024 {
                if s.write_all(&chunk).is_err() {
                    break;
                }
            }
        }
    });
    let reg = registry(d.path(), &"0".repeat(64), 100_000);
    let out = fetch(&reg, port, &d.path().join("models"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("more than the file's 100000 bytes"),
        "{err}"
    );
    let left: Vec<_> = walk(&d.path().join("models"));
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}
