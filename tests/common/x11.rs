//! What the tests that run treevis in a real terminal under Xvfb share (`xterm_sixel.rs`,
//! `kitty.rs`): a private X server, the terminal's window and screenshots of it (ImageMagick
//! `import`), keys typed into it (xdotool), the places the app logs for its images, and the
//! comparison of screen pixels with the pictures that belong there.
#![allow(dead_code)] // each test uses its own part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills what it holds when the test ends, however it ends.
pub struct Killed(pub Vec<Child>);

impl Drop for Killed {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fails (never skips) where `tool` is missing, saying what to install.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is missing: apt-get install xvfb xterm kitty xfonts-base imagemagick xdotool x11-utils (.ci/run does)"
    );
}

pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().expect("runs");
    assert!(
        o.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `f` until it gives `Ok`; on timeout, fails with its last `Err`.
pub fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        let last = match f() {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}: {last}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// One tile as the app logged it: what it shows and its cells.
#[derive(Debug, Clone)]
pub struct Placed {
    pub tile: String,
    pub x: u32,
    pub y: u32,
    pub cols: u32,
    pub rows: u32,
}

pub fn placements(log: &Path) -> Vec<Placed> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("image placed"))
        .filter_map(|l| {
            let field = |name: &str| -> Option<String> {
                let rest = &l[l.find(&format!(" {name}="))? + name.len() + 2..];
                Some(match rest.find(" x=") {
                    Some(end) if name == "tile" => rest[..end].to_string(),
                    _ => rest.split_whitespace().next()?.to_string(),
                })
            };
            Some(Placed {
                tile: field("tile")?,
                x: field("x")?.parse().ok()?,
                y: field("y")?.parse().ok()?,
                cols: field("cols")?.parse().ok()?,
                rows: field("rows")?.parse().ok()?,
            })
        })
        .collect()
}

/// How far (pixels) a tile may sit from where its cells begin.
pub const SLACK: u32 = 2;

/// Mean absolute error (0..255) and correlation of the deviations from grey of `a` and the
/// part of `b` at `(dx, dy)` of `a`'s size.
fn compare(a: &image::RgbImage, b: &image::RgbImage, dx: u32, dy: u32) -> (f64, f64) {
    let (mut err, mut sxy, mut sxx, mut syy) = (0f64, 0f64, 0f64, 0f64);
    for (x, y, p) in a.enumerate_pixels() {
        let q = b.get_pixel(x + dx, y + dy);
        for c in 0..3 {
            let (a, b) = (p.0[c] as f64 - 128.0, q.0[c] as f64 - 128.0);
            err += (a - b).abs();
            sxy += a * b;
            sxx += a * a;
            syy += b * b;
        }
    }
    let mae = err / (3 * a.width() * a.height()) as f64;
    (mae, sxy / (sxx.sqrt() * syy.sqrt()).max(1e-9))
}

/// Mean absolute error (0..255) and correlation of the deviations from grey, between `want`
/// scaled (nearest, as the app scales) to `s`×`s` and the screen at offset `(dx, dy)` in
/// `crop` (which has [`SLACK`] pixels around the cells); the best over every size that fits
/// the cells and every offset within the slack.
pub fn best_match(crop: &image::RgbImage, want: &image::RgbImage) -> (f64, f64) {
    let max = crop.width().min(crop.height()) - 2 * SLACK;
    let mut best = (f64::MAX, 0.0);
    for s in (max / 2).max(8)..=max {
        let w = image::imageops::resize(want, s, s, image::imageops::FilterType::Nearest);
        for dy in 0..=2 * SLACK {
            for dx in 0..=2 * SLACK {
                let m = compare(&w, crop, dx, dy);
                if m.0 < best.0 {
                    best = m;
                }
            }
        }
    }
    best
}

/// As [`best_match`], for a picture drawn in half-blocks: `grid` holds two colours a cell
/// (see [`Screen::blocks`]), `want` is scaled (as ratatui-image's half-blocks scale: a
/// triangle filter) to every size from the grid's own down to 2 blocks less each way (the
/// picture keeps its aspect, and what is left of the last cells is background), at the top
/// left.
pub fn blocks_match(grid: &image::RgbImage, want: &image::RgbImage) -> (f64, f64) {
    let mut best = (f64::MAX, 0.0);
    for h in grid.height().saturating_sub(2).max(1)..=grid.height() {
        for w in grid.width().saturating_sub(2).max(1)..=grid.width() {
            let s = image::imageops::resize(want, w, h, image::imageops::FilterType::Triangle);
            let m = compare(&s, grid, 0, 0);
            if m.0 < best.0 {
                best = m;
            }
        }
    }
    best
}

/// Where the terminal's window is on the X screen, and how large its cells are.
pub struct Screen {
    pub display: String,
    pub origin: (u32, u32),
    pub cell: (u32, u32),
    pub shots: PathBuf,
}

impl Screen {
    /// The window `wid` of `cols`x`rows` cells on `display`; screenshots go to `shots`.
    pub fn of_window(display: &str, wid: &str, cols: u32, rows: u32, shots: &Path) -> Screen {
        let info = run(Command::new("xwininfo")
            .env("DISPLAY", display)
            .args(["-id", wid]));
        let num = |key: &str| -> u32 {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("no `{key}` in xwininfo:\n{info}"))
        };
        let screen = Screen {
            display: display.to_string(),
            origin: (num("Absolute upper-left X:"), num("Absolute upper-left Y:")),
            cell: (num("Width:") / cols, num("Height:") / rows),
            shots: shots.to_path_buf(),
        };
        eprintln!(
            "window {wid}: origin {:?}, cell {:?}",
            screen.origin, screen.cell
        );
        screen
    }

    pub fn shot(&self) -> image::RgbImage {
        let p = self.shots.join("shot.png");
        run(Command::new("import")
            .env("DISPLAY", &self.display)
            .args(["-window", "root"])
            .arg(&p));
        image::open(&p).unwrap().to_rgb8()
    }

    pub fn crop(&self, shot: &image::RgbImage, t: &Placed) -> image::RgbImage {
        let (x, y) = (
            self.origin.0 + t.x * self.cell.0,
            self.origin.1 + t.y * self.cell.1,
        );
        image::imageops::crop_imm(
            shot,
            x.saturating_sub(SLACK),
            y.saturating_sub(SLACK),
            t.cols * self.cell.0 + 2 * SLACK,
            t.rows * self.cell.1 + 2 * SLACK,
        )
        .to_image()
    }

    /// A half-block picture's colours as on screen: one pixel for each half of each of
    /// `t`'s cells (upper, lower), from the middle of that half.
    pub fn blocks(&self, shot: &image::RgbImage, t: &Placed) -> image::RgbImage {
        let (cw, ch) = self.cell;
        image::RgbImage::from_fn(t.cols, 2 * t.rows, |bx, by| {
            let x = self.origin.0 + (t.x + bx) * cw + cw / 2;
            let y = self.origin.1 + (t.y + by / 2) * ch + ch / 4 + (by % 2) * (ch / 2);
            *shot.get_pixel(x, y)
        })
    }
}

/// A folder `d/imgs` holding the demo gallery's images `names` alone.
pub fn demo_images(d: &Path, names: &[&str]) -> PathBuf {
    let imgs = d.join("imgs");
    run(Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["demo-gallery", "--n", "10", "--out"])
        .arg(&imgs));
    for e in std::fs::read_dir(&imgs).unwrap() {
        let p = e.unwrap().path();
        if !names.iter().any(|n| p.ends_with(n)) {
            std::fs::remove_file(p).unwrap();
        }
    }
    imgs
}

/// A folder `d/imgs` holding the demo gallery's image `name` alone.
pub fn one_demo_image(d: &Path, name: &str) -> PathBuf {
    demo_images(d, &[name])
}

/// A private X server of `size` (`1400x800x24`), on a display number it picks itself, up
/// and answering clients. Returns it and its display.
pub fn xvfb(size: &str) -> (Child, String) {
    let mut xvfb = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", size, "-nolisten", "tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(xvfb.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let display = format!(":{}", line.trim());
    assert!(line.trim().parse::<u32>().is_ok(), "Xvfb said {line:?}");
    // (killed if it never answers)
    let mut xvfb = Killed(vec![xvfb]);
    // the server is up when it answers a client
    wait_until("the X server", 20, || {
        Command::new("xwininfo")
            .env("DISPLAY", &display)
            .arg("-root")
            .output()
            .map_err(|e| e.to_string())
            .and_then(|o| {
                o.status
                    .success()
                    .then_some(())
                    .ok_or_else(|| String::from_utf8_lossy(&o.stderr).into_owned())
            })
    });
    (xvfb.0.pop().unwrap(), display)
}

/// The first visible window of X class `class` on `display`, if there is one yet.
pub fn find_window(display: &str, class: &str) -> Result<String, String> {
    let o = Command::new("xdotool")
        .env("DISPLAY", display)
        .args(["search", "--onlyvisible", "--class", class])
        .output()
        .map_err(|e| e.to_string())?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .map(str::to_string)
        .ok_or_else(|| "no window yet".to_string())
}

/// The app in a terminal window: keys typed into it, and its log (debug) read.
pub struct Driver {
    pub display: String,
    pub wid: String,
    pub log: PathBuf,
}

impl Driver {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn logged(&self, what: &str) -> Result<(), String> {
        let text = self.log_text();
        if text.contains(what) {
            Ok(())
        } else {
            Err(format!("no `{what}` in the log:\n{text}"))
        }
    }

    /// The keys the app has taken (each is logged as an action).
    pub fn actions(&self) -> usize {
        self.log_text()
            .lines()
            .filter(|l| l.contains(" action "))
            .count()
    }

    /// Keys as a keyboard types them (XTEST), into the focused window, the pointer over it.
    pub fn key(&self, k: &str) {
        run(Command::new("xdotool")
            .env("DISPLAY", &self.display)
            .args(["mousemove", "--window", &self.wid, "20", "20"])
            .args(["windowfocus", "--sync", &self.wid])
            .args(["key", k]));
    }

    /// One key, typed again if the app has logged no action `secs` after it (an X server
    /// may lose a key while a window is still settling); only where a second arrival of a
    /// late first one would do no harm, or after a generous wait.
    pub fn press(&self, k: &str, secs: u64) {
        let before = self.actions();
        wait_until(&format!("the app to take {k}"), 4 * secs + 10, || {
            self.key(k);
            let typed = Instant::now();
            while typed.elapsed() < Duration::from_secs(secs) {
                if self.actions() > before {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(format!("no new action in the log:\n{}", self.log_text()))
        })
    }
}
