//! A real terminal with real graphics: xterm emulating a VT340 (sixel) under Xvfb. treevis
//! queries the terminal itself (`--protocol auto`), the keys are typed into the xterm
//! window, and screenshots (ImageMagick `import`) are searched for the reconstructions that
//! `treevis overview --out` computes headless. Then the tiles must be gone from the screen
//! when the overview is left, and the shell must get a sane terminal back.
//!
//! Needs Xvfb, xterm (with the 9x15 font), ImageMagick and xdotool: `.ci/run` installs them
//! (`apt-get install xvfb xterm xfonts-base imagemagick xdotool x11-utils`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "common/x11.rs"]
mod x11;
use x11::{
    best_match, find_window, need, one_demo_image, placements, run, wait_until, xvfb, Driver,
    Killed, Placed, Screen,
};

const COLS: u32 = 140;
const ROWS: u32 = 44;

/// Xvfb and, in it, an xterm emulating a VT340 (sixel) of [`COLS`]x[`ROWS`] cells that
/// runs `script` with treevis's logs (debug) under `cache`. Returns the processes, the
/// display, the window and its geometry.
fn open_xterm(d: &Path, cache: &Path, script: &str) -> (Killed, String, String, Screen) {
    let (server, display) = xvfb("1400x800x24");
    let mut procs = Killed(vec![server]);
    let xterm = || {
        Command::new("xterm")
            .env("DISPLAY", &display)
            .env("XDG_CACHE_HOME", cache)
            .env("TREEVIS_LOG", "treevis=debug")
            .args([
                "-ti", "vt340", "-b", "0", "-fn", "9x15", "-bg", "black", "-fg", "white",
            ])
            .args(["-geometry", &format!("{COLS}x{ROWS}+0+0")])
            .args(["-xrm", "XTerm*decTerminalID: vt340"])
            .args(["-xrm", "XTerm*numColorRegisters: 1024"])
            .args(["-xrm", "XTerm*allowWindowOps: true"])
            .args(["-xrm", "XTerm*allowSendEvents: true"])
            .args(["-e", "sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("xterm.err")).unwrap())
            .spawn()
            .unwrap()
    };
    procs.0.push(xterm());
    let wid = wait_until("the xterm window", 30, || {
        // an xterm that could not start (it happens, rarely, on a busy machine) starts again
        let term = procs.0.last_mut().unwrap();
        if let Ok(Some(status)) = term.try_wait() {
            let err = std::fs::read_to_string(d.join("xterm.err")).unwrap_or_default();
            eprintln!("xterm ended ({status}), starting another; it said: {err}");
            let _ = std::fs::remove_file(cache.join("treevis/treevis.log"));
            *term = xterm();
        }
        find_window(&display, "xterm").map_err(|e| {
            let err = std::fs::read_to_string(d.join("xterm.err")).unwrap_or_default();
            format!("{e}; xterm said: {err}")
        })
    });
    let screen = Screen::of_window(&display, &wid, COLS, ROWS, d);
    (procs, display, wid, screen)
}

#[test]
fn sixel_tiles_in_a_real_xterm() {
    for t in ["Xvfb", "xterm", "import", "xdotool", "xwininfo"] {
        need(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = env!("CARGO_BIN_EXE_treevis");
    // one demo image, and its reconstructions computed headless
    let imgs = one_demo_image(d, "0009_star.png");
    let recons = d.join("recons");
    run(Command::new(bin)
        .args(["overview", "--model", "demo", "--top", "5"])
        .arg(imgs.join("0009_star.png"))
        .arg("--out")
        .arg(&recons));

    let cache = d.join("cache");
    let stty = d.join("stty.txt");
    let script = format!(
        "{bin} {}; stty -a > {}; sleep 60",
        imgs.display(),
        stty.display()
    );
    let (procs, display, wid, screen) = open_xterm(d, &cache, &script);
    let log = cache.join("treevis/treevis.log");
    let app = Driver {
        display: display.clone(),
        wid: wid.clone(),
        log: log.clone(),
    };
    let logged = |what: &str| app.logged(what);
    let key = |k: &str| app.key(k);
    let press = |k: &str, secs: u64| app.press(k, secs);

    // the app found sixel by asking the terminal, and drew the gallery
    wait_until("the gallery", 30, || logged("screen complete"));
    logged("sixel: true")
        .and_then(|_| logged("complete: true"))
        .unwrap_or_else(|e| panic!("the terminal's answer: {e}"));
    // prove the way into the app with a key that changes nothing (one image: Right stays),
    // then Enter (typed again only if the app took nothing for 15 s: a second one would
    // open a tree)
    press("Right", 3);
    press("Return", 15);
    wait_until("the overview", 60, || logged("screen=overview"));
    let tiles: Vec<Placed> = placements(&log)
        .into_iter()
        .filter(|p| p.tile.starts_with("recon "))
        .collect();
    assert!(tiles.len() >= 20, "{tiles:?}");
    let expected = |t: &Placed| {
        let name = t.tile.trim_start_matches("recon ").replace(':', "_");
        image::open(recons.join(format!("{name}.png")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .to_rgb8()
    };
    let probe = tiles
        .iter()
        .find(|t| t.tile.starts_with("recon conv5:"))
        .unwrap()
        .clone();
    // every tile's pixels are on screen (xterm may still be drawing: poll)
    let shot = wait_until("every reconstruction on screen", 30, || {
        let shot = screen.shot();
        if let Ok(dbg) = std::env::var("TREEVIS_XTERM_DEBUG") {
            shot.save(format!("{dbg}/shot.png")).unwrap();
            screen
                .crop(&shot, &probe)
                .save(format!("{dbg}/probe.png"))
                .unwrap();
            expected(&probe)
                .save(format!("{dbg}/probe_want.png"))
                .unwrap();
        }
        let bad: Vec<String> = tiles
            .iter()
            .filter_map(|t| {
                let (mae, corr) = best_match(&screen.crop(&shot, t), &expected(t));
                (mae > 8.0 || corr < 0.8)
                    .then(|| format!("{}: mae {mae:.1} corr {corr:.2}", t.tile))
            })
            .collect();
        if bad.is_empty() {
            Ok(shot)
        } else {
            Err(bad.join("; "))
        }
    });
    // and the comparison can fail: the probe's place matches its own picture better than
    // any other tile's, and its mirror image not at all
    let crop = screen.crop(&shot, &probe);
    let (_, own) = best_match(&crop, &expected(&probe));
    for t in tiles.iter().filter(|t| t.tile != probe.tile) {
        let (_, corr) = best_match(&crop, &expected(t));
        assert!(
            corr < own,
            "{} at {} scores {corr:.2}, itself {own:.2}",
            t.tile,
            probe.tile
        );
    }
    let mirror = image::imageops::flip_horizontal(&expected(&probe));
    let (mae, corr) = best_match(&crop, &mirror);
    eprintln!(
        "{}: itself corr {own:.2}; mirrored: mae {mae:.1}, corr {corr:.2}",
        probe.tile
    );
    assert!(
        corr < 0.5,
        "the mirror image of {} matches (corr {corr:.2})",
        probe.tile
    );

    // leaving the overview clears its tiles from the screen
    press("Escape", 4);
    wait_until("the tiles to be cleared", 30, || {
        let shot = screen.shot();
        let left: Vec<String> = tiles
            .iter()
            .filter_map(|t| {
                let c = screen.crop(&shot, t);
                let dark = c.pixels().filter(|p| p.0.iter().all(|&v| v < 40)).count();
                let frac = dark as f64 / c.pixels().len() as f64;
                (frac < 0.98).then(|| format!("{}: {:.0}% dark", t.tile, frac * 100.0))
            })
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("; "))
        }
    });
    key("q");
    let modes = wait_until("the shell after quitting", 30, || {
        std::fs::read_to_string(&stty)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "no stty output yet".to_string())
    });
    assert!(
        !modes.contains("-icanon") && !modes.contains("-echo "),
        "terminal left raw: {modes}"
    );
    drop(procs);
}

/// Ends a tmux server when the test ends, however it ends.
struct TmuxServer(PathBuf);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .arg("kill-server")
            .output();
    }
}

/// The same xterm with tmux in between: treevis asks the terminal through tmux's
/// passthrough, finds sixel, and its images reach the screen (with ratatui-image's own
/// wrapping they never did: see `tui::ui::tmux_sixel_terminated`).
#[test]
fn sixel_through_tmux_in_a_real_xterm() {
    for t in ["Xvfb", "xterm", "import", "xwininfo", "tmux"] {
        need(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = env!("CARGO_BIN_EXE_treevis");
    let imgs = one_demo_image(d, "0000_stripes.png");
    let cache = d.join("cache");
    let sock = d.join("tmux.sock");
    let _server = TmuxServer(sock.clone());
    let script = format!(
        "tmux -S {} -f /dev/null new-session 'XDG_CACHE_HOME={} TREEVIS_LOG=treevis=debug {bin} --protocol auto {}'; sleep 60",
        sock.display(),
        cache.display(),
        imgs.display()
    );
    let (procs, _display, _wid, screen) = open_xterm(d, &cache, &script);
    let log = cache.join("treevis/treevis.log");
    let text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until("the gallery", 30, || {
        text()
            .contains("screen complete")
            .then_some(())
            .ok_or_else(|| format!("no `screen complete` in the log:\n{}", text()))
    });
    let t = text();
    assert!(
        t.contains("tmux=true") && t.contains("sixel: true") && t.contains("complete: true"),
        "the answer through tmux:\n{t}"
    );
    let thumb = placements(&log)
        .into_iter()
        .find(|p| p.tile == "thumb")
        .unwrap_or_else(|| panic!("no thumbnail placed:\n{t}"));
    let want = image::open(imgs.join("0000_stripes.png"))
        .unwrap()
        .to_rgb8();
    let shot = wait_until("the thumbnail on screen", 30, || {
        let shot = screen.shot();
        let (mae, corr) = best_match(&screen.crop(&shot, &thumb), &want);
        if mae <= 8.0 && corr >= 0.8 {
            Ok(shot)
        } else {
            Err(format!("mae {mae:.1} corr {corr:.2}"))
        }
    });
    // and the comparison is of these pixels: their negative does not match
    let mut negative = want.clone();
    image::imageops::invert(&mut negative);
    let (_, corr) = best_match(&screen.crop(&shot, &thumb), &negative);
    assert!(corr < 0.0, "the negative matches too (corr {corr:.2})");
    run(Command::new("tmux")
        .arg("-S")
        .arg(&sock)
        .args(["send-keys", "q"]));
    wait_until("the app to end", 30, || {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .arg("list-sessions")
            .output()
            .map_err(|e| e.to_string())?;
        (!o.status.success())
            .then_some(())
            .ok_or_else(|| "the tmux session is still there".to_string())
    });
    drop(procs);
}
