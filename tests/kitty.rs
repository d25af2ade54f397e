//! A real kitty under Xvfb (software GL). treevis asks the terminal itself (`--protocol
//! auto`); kitty answers its graphics query and, to XTVERSION, its version. ratatui-image
//! draws kitty images with unicode placeholders only, which kitty has since 0.28.0: an older
//! kitty (Debian 12 ships 0.26.5) rejects every such command and showed a grid of
//! placeholder glyphs, so treevis must fall back to half-blocks there. Screenshots (ImageMagick
//! `import`) are compared with the pictures: the gallery's thumbnails, then, in the
//! overview, the reconstructions that `treevis overview --out` computes headless. Then the
//! shell must get a sane terminal back.
//!
//! Needs Xvfb, kitty, ImageMagick and xdotool: `.ci/run` installs them (`apt-get install
//! xvfb kitty imagemagick xdotool x11-utils`). `TREEVIS_KITTY_DEBUG=DIR` keeps the
//! screenshots there.

use std::path::Path;
use std::process::{Command, Stdio};

#[path = "common/x11.rs"]
mod x11;
use x11::{
    best_match, blocks_match, demo_images, find_window, need, placements, run, wait_until, xvfb,
    Driver, Killed, Placed, Screen,
};

const COLS: u32 = 140;
const ROWS: u32 = 44;

/// Xvfb and, in it, a kitty of [`COLS`]x[`ROWS`] cells that runs `script` with treevis's
/// logs (debug) under `cache`. Returns the processes, the display, the window and its
/// geometry.
fn open_kitty(d: &Path, cache: &Path, script: &str) -> (Killed, String, String, Screen) {
    let (server, display) = xvfb("1600x1000x24");
    let mut procs = Killed(vec![server]);
    let err = d.join("kitty.err");
    let opts = [
        "remember_window_size=no",
        &format!("initial_window_width={COLS}c"),
        &format!("initial_window_height={ROWS}c"),
        "placement_strategy=top-left",
        "window_padding_width=0",
        "font_size=11",
        "background=#000000",
        "foreground=#ffffff",
        "cursor_blink_interval=0",
        "enable_audio_bell=no",
        "linux_display_server=x11",
    ];
    let mut kitty = Command::new("kitty");
    kitty
        .env("DISPLAY", &display)
        // no GPU under Xvfb: Mesa's software renderer
        .env("LIBGL_ALWAYS_SOFTWARE", "1")
        .env("XDG_CACHE_HOME", cache)
        .env("XDG_CONFIG_HOME", d.join("config"))
        .env("TREEVIS_LOG", "treevis=debug")
        .args(["--config", "NONE"]);
    for o in opts {
        kitty.args(["-o", o]);
    }
    procs.0.push(
        kitty
            .args(["-e", "sh", "-c", script])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .unwrap(),
    );
    let wid = wait_until("the kitty window", 60, || {
        let said = || std::fs::read_to_string(&err).unwrap_or_default();
        if let Ok(Some(status)) = procs.0.last_mut().unwrap().try_wait() {
            panic!(
                "kitty ended ({status}) without a window; it said: {}",
                said()
            );
        }
        find_window(&display, "kitty").map_err(|e| format!("{e}; kitty said: {}", said()))
    });
    let screen = Screen::of_window(&display, &wid, COLS, ROWS, d);
    (procs, display, wid, screen)
}

/// The version kitty told (`kitty(0.26.5)` in the logged reply), as numbers.
fn kitty_version(log: &str) -> [u32; 3] {
    let at = log
        .find("XtVersion { name: \"kitty\", version: \"")
        .unwrap_or_else(|| panic!("kitty told no version (XTVERSION):\n{log}"));
    let rest = &log[at..];
    let v = rest.split('"').nth(3).unwrap();
    let mut n = [0; 3];
    for (i, p) in v.split('.').take(3).enumerate() {
        n[i] = p.parse().unwrap_or(0);
    }
    n
}

#[test]
fn pictures_in_a_real_kitty() {
    for t in ["Xvfb", "kitty", "import", "xdotool", "xwininfo"] {
        need(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let bin = env!("CARGO_BIN_EXE_treevis");
    // four images unlike each other, and the reconstructions of the first computed headless
    let names = [
        "0006_circle.png",
        "0007_square.png",
        "0008_triangle.png",
        "0009_star.png",
    ];
    let imgs = demo_images(d, &names);
    let recons = d.join("recons");
    run(Command::new(bin)
        .args(["overview", "--model", "demo", "--top", "5"])
        .arg(imgs.join(names[0]))
        .arg("--out")
        .arg(&recons));

    let cache = d.join("cache");
    let stty = d.join("stty.txt");
    let script = format!(
        "{bin} --protocol auto {}; stty -a > {}; sleep 60",
        imgs.display(),
        stty.display()
    );
    let (procs, display, wid, screen) = open_kitty(d, &cache, &script);
    let app = Driver {
        display,
        wid,
        log: cache.join("treevis/treevis.log"),
    };
    let debug = std::env::var("TREEVIS_KITTY_DEBUG").ok();

    // kitty answered the graphics query and XTVERSION, and the app chose by its version
    wait_until("the gallery", 60, || app.logged("screen complete"));
    let log = app.log_text();
    assert!(
        log.contains("kitty: true") && log.contains("complete: true"),
        "kitty's answer:\n{log}"
    );
    let version = kitty_version(&log);
    let placeholders = version >= [0, 28, 0];
    let v = format!("{}.{}.{}", version[0], version[1], version[2]);
    let fell_back = log.contains(&format!("kitty {v} < 0.28: "))
        && log.contains("images fall back to Halfblocks");
    eprintln!("kitty {v}: half-blocks {fell_back}");
    assert_eq!(fell_back, !placeholders, "kitty {v}:\n{log}");

    // the thumbnails are the images (half-blocks are compared colour by colour: closer)
    let (max_mae, min_corr) = if placeholders { (8.0, 0.8) } else { (6.0, 0.9) };
    let matches = |shot: &image::RgbImage, t: &Placed, want: &image::RgbImage| {
        if placeholders {
            best_match(&screen.crop(shot, t), want)
        } else {
            blocks_match(&screen.blocks(shot, t), want)
        }
    };
    let thumbs: Vec<Placed> = placements(&app.log)
        .into_iter()
        .filter(|p| p.tile == "thumb")
        .take(names.len())
        .collect();
    assert_eq!(thumbs.len(), names.len(), "{log}");
    let want: Vec<image::RgbImage> = names
        .iter()
        .map(|n| image::open(imgs.join(n)).unwrap().to_rgb8())
        .collect();
    let shot = wait_until("the thumbnails on screen", 30, || {
        let shot = screen.shot();
        if let Some(dbg) = &debug {
            shot.save(format!("{dbg}/gallery.png")).unwrap();
        }
        let bad: Vec<String> = thumbs
            .iter()
            .zip(&want)
            .zip(names)
            .filter_map(|((t, w), n)| {
                let (mae, corr) = matches(&shot, t, w);
                (mae > max_mae || corr < min_corr)
                    .then(|| format!("{n}: mae {mae:.1} corr {corr:.2}"))
            })
            .collect();
        if bad.is_empty() {
            Ok(shot)
        } else {
            Err(bad.join("; "))
        }
    });
    // and the comparison can fail: each place matches its own image better than any other,
    // and the image turned upside down not at all
    for (i, t) in thumbs.iter().enumerate() {
        let (own_mae, own) = matches(&shot, t, &want[i]);
        for (j, other) in want.iter().enumerate().filter(|(j, _)| *j != i) {
            let (mae, corr) = matches(&shot, t, other);
            assert!(
                corr < own && mae > own_mae,
                "{} at {}'s place scores mae {mae:.1} corr {corr:.2}, itself {own_mae:.1} {own:.2}",
                names[j],
                names[i]
            );
        }
        let turned = image::imageops::rotate180(&want[i]);
        let (mae, corr) = matches(&shot, t, &turned);
        eprintln!(
            "{}: mae {own_mae:.1} corr {own:.2}; upside down: mae {mae:.1}, corr {corr:.2}",
            names[i]
        );
        assert!(
            mae > 2.0 * own_mae + 5.0,
            "{} upside down matches (mae {mae:.1} corr {corr:.2})",
            names[i]
        );
    }

    // the overview of the first image: the image and its reconstructions are on screen
    app.press("Return", 15);
    wait_until("the overview", 60, || app.logged("screen=overview"));
    let placed = placements(&app.log);
    let input = placed
        .iter()
        .find(|p| p.tile == "input")
        .unwrap_or_else(|| panic!("no input image placed:\n{}", app.log_text()))
        .clone();
    let tiles: Vec<Placed> = placed
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
    wait_until("the overview on screen", 30, || {
        let shot = screen.shot();
        if let Some(dbg) = &debug {
            shot.save(format!("{dbg}/overview.png")).unwrap();
        }
        let (mae, corr) = matches(&shot, &input, &want[0]);
        let mut bad: Vec<String> = Vec::new();
        if mae > max_mae || corr < min_corr {
            bad.push(format!("input: mae {mae:.1} corr {corr:.2}"));
        }
        // in half-blocks a reconstruction is all but uniform grey (its correlation is
        // noise): its colours are compared; placeholder glyphs on black would be far off
        bad.extend(tiles.iter().filter_map(|t| {
            let (mae, corr) = matches(&shot, t, &expected(t));
            let off = if placeholders {
                mae > 8.0 || corr < 0.8
            } else {
                mae > 4.0
            };
            off.then(|| format!("{}: mae {mae:.1} corr {corr:.2}", t.tile))
        }));
        if bad.is_empty() {
            Ok(())
        } else {
            Err(bad.join("; "))
        }
    });

    // quitting gives the shell a sane terminal back
    app.press("Escape", 4);
    app.key("q");
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
    // and kitty took every command it was sent
    let said = std::fs::read_to_string(d.join("kitty.err")).unwrap_or_default();
    assert!(
        !said.contains("Malformed") && !said.contains("PARSE ERROR"),
        "kitty rejected commands:\n{said}"
    );
    drop(procs);
}
