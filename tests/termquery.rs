//! The start-up capability query against a terminal that this test plays itself, on a
//! pseudo-terminal: one that answers late, and one that never answers. Either way the app
//! must go on and every key typed afterwards must reach it (a query left reading stdin in the
//! background would swallow them).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Term {
    child: Child,
    master: std::fs::File,
    /// Everything the app wrote to the terminal.
    out: Arc<Mutex<Vec<u8>>>,
    log: std::path::PathBuf,
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The app on a fresh pseudo-terminal of 120x40 cells that is its controlling terminal,
/// waiting at most `timeout_ms` for the terminal's answer.
fn start(dir: &Path, timeout_ms: u32) -> Term {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let name = ptsname(&master, Vec::new()).unwrap();
    rustix::termios::tcsetwinsize(
        &master,
        rustix::termios::Winsize {
            ws_row: 40,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(name.to_str().unwrap())
        .unwrap();
    let cache = dir.join("cache");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_treevis"));
    cmd.args([
        "--protocol",
        "auto",
        "--query-timeout",
        &timeout_ms.to_string(),
    ])
    .env("XDG_CACHE_HOME", &cache)
    .env("XDG_CONFIG_HOME", dir.join("config"))
    .env("TREEVIS_LOG", "treevis=debug")
    .env("TERM", "xterm-256color")
    .env_remove("TMUX")
    .env_remove("TERM_PROGRAM")
    .stdin(Stdio::from(slave.try_clone().unwrap()))
    .stdout(Stdio::from(slave.try_clone().unwrap()))
    .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe system calls between fork and exec
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(std::io::stdin())?;
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let master = std::fs::File::from(master);
    let out = Arc::new(Mutex::new(Vec::new()));
    let (mut reader, sink) = (master.try_clone().unwrap(), out.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    Term {
        child,
        master,
        out,
        log: cache.join("treevis/treevis.log"),
    }
}

impl Term {
    fn wrote(&self, what: &[u8]) -> bool {
        self.count(what) > 0
    }

    fn count(&self, what: &[u8]) -> usize {
        let out = self.out.lock().unwrap();
        out.windows(what.len()).filter(|w| *w == what).count()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn type_(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    fn actions(&self) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" action "))
            .count()
    }

    /// Types `l` (move right in the gallery) and waits for the app to take it.
    fn key_reaches_the_app(&mut self) {
        let before = self.actions();
        self.type_(b"l");
        wait_until("the key to reach the app", 30, || self.actions() > before);
    }

    fn quit(mut self) {
        self.type_(b"q");
        wait_until("the app to end", 30, || {
            self.child.try_wait().unwrap().is_some()
        });
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}\n{}", self.log());
    }
}

#[test]
fn a_late_answer_is_taken_and_no_key_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = start(dir.path(), 8000);
    wait_until("the query", 60, || t.wrote(b"\x1b[5n"));
    // later than ratatui-image's own 2 s timeout
    std::thread::sleep(Duration::from_millis(2300));
    t.type_(b"\x1b[?63;1;2;4;6;9;15;22c\x1b[6;15;9t\x1b[0n");
    wait_until("the first frame", 30, || t.log().contains("first frame"));
    let log = t.log();
    assert!(
        log.contains("sixel: true") && log.contains("cell: Some((9, 15))"),
        "{log}"
    );
    wait_until("a sixel image", 30, || t.wrote(b"\x1bP"));
    t.key_reaches_the_app();
    t.quit();
}

#[test]
fn a_terminal_that_never_answers_still_gets_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = start(dir.path(), 1000);
    wait_until("the query", 60, || t.wrote(b"\x1b[5n"));
    wait_until("the first frame", 30, || t.log().contains("first frame"));
    let log = t.log();
    assert!(log.contains("did not answer"), "{log}");
    // half-blocks: no sixel image sent, nor a kitty one (beyond the query's own probe)
    wait_until("the gallery", 30, || t.log().contains("screen complete"));
    assert!(!t.wrote(b"\x1bP") && t.count(b"\x1b_G") == 1);
    // with a query still reading stdin in the background, this key would vanish
    t.key_reaches_the_app();
    // the answer comes after all: its bytes are no keys (`G` would jump to the last image)
    let before = t.actions();
    t.type_(b"\x1b_Gi=31;OK\x1b\\");
    wait_until("the late answer to be dropped", 30, || {
        t.log().matches("late terminal answer dropped").count() == 10
    });
    t.key_reaches_the_app();
    assert_eq!(t.actions(), before + 1, "{}", t.log());
    t.quit();
}
