//! The HTML report (`treevis::report`) end to end: a page with small generated PNGs is
//! written to a temporary folder, parsed with a real HTML parser (`tl`) to check its
//! structure (one `<details>` per node nested like the tree, every image an inline PNG of
//! the right size, nothing that points outside the file, escaped text that round-trips),
//! then opened in headless Chromium, which takes a screenshot and dumps its DOM.
//!
//! The browser is `$TREEVIS_CHROMIUM` when set, else `chromium` or `chromium-browser` on
//! the `PATH` (`tests/run.sh` installs Debian's `chromium` where missing). Without one,
//! the browser test fails when `CI` is set (to anything but empty, `0` or `false`) and
//! otherwise prints `skipped: no chromium` to stderr and passes. Each browser run has a
//! deadline (`TREEVIS_CHROMIUM_TIMEOUT` seconds, default 120): a hung browser is killed
//! (its whole process group) and the test fails. `TREEVIS_REPORT_KEEP=DIR` keeps the page and the screenshot there.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use treevis::report::{render_html, write_html, Page, PageNode};

/// How long one browser run may take: `$TREEVIS_CHROMIUM_TIMEOUT` seconds, default 120.
fn browser_timeout() -> Duration {
    let secs = std::env::var("TREEVIS_CHROMIUM_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    Duration::from_secs(secs)
}
const WINDOW: (u32, u32) = (1200, 1600);
/// The input image's colour: pure magenta, which nothing else on the page uses.
const MAGENTA: [u8; 3] = [255, 0, 255];

/// A `w`x`h` PNG: a checkerboard of `rgb` and black.
fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        if (x + y) % 2 == 0 {
            image::Rgb(rgb)
        } else {
            image::Rgb([0, 0, 0])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A node whose reconstruction is `size` and coloured by its position in the tree.
fn node(
    path: &str,
    weight: f32,
    share: f32,
    size: (u32, u32),
    children: Vec<PageNode>,
) -> PageNode {
    let last = path.rsplit('/').next().unwrap();
    let (blob, ch) = last.rsplit_once(':').unwrap();
    let hue = path.len() as u8;
    PageNode {
        path: path.into(),
        blob: blob.into(),
        channel: ch.parse().unwrap(),
        weight: Some(weight),
        share: Some(share),
        png: png(size.0, size.1, [0, 200u8.wrapping_add(hue), 255 - hue]),
        note: None,
        via: vec![],
        children,
    }
}

/// Hostile text for the escaping checks: it would open tags, close attributes and pull a
/// remote image if it were not escaped.
const HOSTILE_LABEL: &str = r#"<script>alert("x")</script> & 'tabby' "cat""#;
const HOSTILE_NOTE: &str = r#"all-zero: "</summary><img src='http://example.com/x.png'>" & more"#;
const HOSTILE_BLOB: &str = r#"mixed<5b>&"q""#;

/// A 3-level tree (root, 3 children, 3 grandchildren) with one hostile blob name.
fn sample() -> Page {
    let r = "conv5:12";
    let a = format!("{r}/conv4:3");
    let b = format!("{r}/{HOSTILE_BLOB}:7");
    let c = format!("{r}/conv4:200");
    let mut na = node(
        &a,
        0.0123,
        0.6,
        (13, 13),
        vec![
            node(&format!("{a}/conv3:1"), 0.004, 0.7, (9, 9), vec![]),
            node(&format!("{a}/conv3:2"), -0.0017, 0.3, (7, 5), vec![]),
        ],
    );
    na.via = vec![
        ("conv4->relu4".into(), 0.01),
        ("skip & <add>".into(), -0.002),
    ];
    let mut nb = node(
        &b,
        -0.0045,
        0.25,
        (11, 10),
        vec![node(&format!("{b}/conv3:9"), 0.02, 1.0, (6, 6), vec![])],
    );
    nb.note = Some(HOSTILE_NOTE.into());
    let nc = node(&c, 0.0008, 0.15, (12, 12), vec![]);
    let mut root = node(r, 0.0, 0.0, (16, 16), vec![na, nb, nc]);
    root.weight = None;
    root.share = None;
    Page {
        title: "treevis: conv5:12 on cat & <dog>.jpg".into(),
        model: "alexnet (caffe bvlc_alexnet weights)".into(),
        method: "guided".into(),
        mult: "auto".into(),
        display: "norm".into(),
        image: "cat & <dog>.jpg".into(),
        input_png: png(32, 24, MAGENTA),
        labels: vec![
            ("tabby, tabby cat".into(), 0.4567),
            (HOSTILE_LABEL.into(), 0.2),
            ("Egyptian cat".into(), 0.1),
            ("lynx".into(), 0.05),
            ("tiger cat".into(), 0.0004),
        ],
        root,
    }
}

/// Every node in preorder.
fn preorder(n: &PageNode) -> Vec<&PageNode> {
    let mut out = vec![n];
    for c in &n.children {
        out.extend(preorder(c));
    }
    out
}

/// The five entities the report writes, decoded (`&amp;` last).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// A tree of paths, as the page's `<details>` nest or as the page's nodes do.
#[derive(Debug, PartialEq)]
struct Shape(String, Vec<Shape>);

fn shape(n: &PageNode) -> Shape {
    Shape(n.path.clone(), n.children.iter().map(shape).collect())
}

fn tag<'a, 'b>(h: &tl::NodeHandle, p: &'b tl::Parser<'a>) -> Option<&'b tl::HTMLTag<'a>> {
    h.get(p).and_then(|n| n.as_tag())
}

fn attr(t: &tl::HTMLTag, key: &str) -> Option<String> {
    t.attributes()
        .get(key)
        .flatten()
        .map(|v| v.as_utf8_str().into_owned())
}

/// The `<details>` under `h`, nested as in the DOM; `imgs` gets each one's summary image
/// (its `src`) by path.
fn details(
    h: &tl::NodeHandle,
    p: &tl::Parser,
    out: &mut Vec<Shape>,
    imgs: &mut BTreeMap<String, String>,
) {
    let Some(t) = tag(h, p) else { return };
    let kids: Vec<tl::NodeHandle> = t.children().top().iter().copied().collect();
    if t.name().as_utf8_str() == "details" {
        let path = unescape(&attr(t, "data-path").expect("data-path on every <details>"));
        // its <summary>, the first child tag, holds its image
        let summary = kids
            .iter()
            .find_map(|k| tag(k, p))
            .expect("a <details> with content");
        assert_eq!(summary.name().as_utf8_str(), "summary", "{path}");
        let img = summary
            .children()
            .top()
            .iter()
            .filter_map(|k| tag(k, p))
            .find(|k| k.name().as_utf8_str() == "img")
            .unwrap_or_else(|| panic!("no <img> in {path}'s summary"));
        imgs.insert(path.clone(), attr(img, "src").unwrap());
        let mut sub = Vec::new();
        for k in &kids {
            details(k, p, &mut sub, imgs);
        }
        out.push(Shape(path, sub));
    } else {
        for k in &kids {
            details(k, p, out, imgs);
        }
    }
}

/// The PNG in a `data:image/png;base64,` URI, decoded, and its size.
fn data_png(src: &str) -> (u32, u32, image::RgbaImage) {
    let b64 = src
        .strip_prefix("data:image/png;base64,")
        .unwrap_or_else(|| panic!("not an inline PNG: {:.60}", src));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("valid base64");
    let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
        .expect("a PNG the image crate decodes")
        .to_rgba8();
    (img.width(), img.height(), img)
}

/// The text inside the one element that `selector` matches, entities decoded.
fn text_of(dom: &tl::VDom, selector: &str) -> Vec<String> {
    dom.query_selector(selector)
        .unwrap()
        .filter_map(|h| tag(&h, dom.parser()))
        .map(|t| unescape(&t.inner_text(dom.parser())))
        .collect()
}

#[test]
fn the_page_parses_into_the_tree_with_inline_images() {
    let page = sample();
    let tmp = tempfile::tempdir().unwrap();
    let file = write_html(&page, &tmp.path().join("report")).unwrap();
    assert_eq!(file, tmp.path().join("report/index.html"));
    let html = std::fs::read_to_string(&file).unwrap();
    assert_eq!(html, render_html(&page), "the file is the rendered page");
    assert_eq!(html, render_html(&sample()), "deterministic");
    // one file, nothing beside it
    let files: Vec<_> = std::fs::read_dir(tmp.path().join("report"))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);

    let dom = tl::parse(&html, tl::ParserOptions::default()).unwrap();
    let p = dom.parser();

    // one <details> per node, nested like the tree
    let mut found = Vec::new();
    let mut imgs = BTreeMap::new();
    for h in dom.children() {
        details(h, p, &mut found, &mut imgs);
    }
    assert_eq!(found, vec![shape(&page.root)]);
    let nodes = preorder(&page.root);
    assert_eq!(dom.query_selector("details").unwrap().count(), nodes.len());

    // every node's image is its PNG, at its size, with its pixels
    assert_eq!(imgs.len(), nodes.len());
    for n in &nodes {
        let (w, h, img) = data_png(&imgs[&n.path]);
        let want = image::load_from_memory(&n.png).unwrap().to_rgba8();
        assert_eq!((w, h), want.dimensions(), "{}", n.path);
        assert_eq!(img, want, "{}", n.path);
    }
    let input: Vec<String> = dom
        .query_selector("img.input")
        .unwrap()
        .filter_map(|h| tag(&h, p).and_then(|t| attr(t, "src")))
        .collect();
    assert_eq!(input.len(), 1);
    assert_eq!(data_png(&input[0]).0, 32);
    assert_eq!(data_png(&input[0]).1, 24);

    // every image on the page is inline; nothing points outside the file
    let mut img_count = 0;
    for n in dom.nodes() {
        let Some(t) = n.as_tag() else { continue };
        let name = t.name().as_utf8_str().to_ascii_lowercase();
        assert!(
            !["link", "iframe", "object", "embed", "base", "video", "audio", "source"]
                .contains(&name.as_str()),
            "<{name}> in the page"
        );
        if name == "img" {
            img_count += 1;
            assert!(attr(t, "src")
                .unwrap()
                .starts_with("data:image/png;base64,"));
        }
        if name == "script" {
            assert!(attr(t, "src").is_none(), "an external script");
        }
        for (k, v) in t.attributes().iter() {
            let k = k.to_ascii_lowercase();
            if [
                "src",
                "href",
                "action",
                "srcset",
                "poster",
                "formaction",
                "xlink:href",
            ]
            .contains(&k.as_str())
            {
                let v = v.unwrap_or_default();
                assert!(
                    v.starts_with("data:") || v.starts_with('#'),
                    "<{name} {k}={v:.80}>"
                );
            }
            assert!(
                !k.starts_with("on"),
                "an event handler attribute <{name} {k}>"
            );
        }
    }
    assert_eq!(
        img_count,
        nodes.len() + 1,
        "one image per node and the input"
    );
    assert_eq!(
        dom.query_selector("script").unwrap().count(),
        1,
        "only the page's own"
    );
    let styles = text_of(&dom, "style").join("");
    assert!(!styles.contains("url(") && !styles.contains("@import"));

    // header: settings and labels, text round-trips through the escaping
    assert_eq!(text_of(&dom, "title"), vec![page.title.clone()]);
    assert_eq!(text_of(&dom, "h1"), vec![page.title.clone()]);
    assert_eq!(text_of(&dom, "dd.model"), vec![page.model.clone()]);
    assert_eq!(text_of(&dom, "dd.method"), vec![page.method.clone()]);
    assert_eq!(text_of(&dom, "dd.multiplier"), vec![page.mult.clone()]);
    assert_eq!(text_of(&dom, "dd.display"), vec![page.display.clone()]);
    assert_eq!(text_of(&dom, "dd.image"), vec![page.image.clone()]);
    assert_eq!(
        text_of(&dom, "dd.tree"),
        vec!["7 nodes, depth 3".to_string()]
    );
    let names: Vec<String> = page.labels.iter().map(|l| l.0.clone()).collect();
    assert_eq!(text_of(&dom, "td.label"), names);
    assert_eq!(
        text_of(&dom, "td.prob"),
        vec!["45.7%", "20.0%", "10.0%", "5.0%", "<0.1%"]
    );

    // the nodes' own text
    assert_eq!(text_of(&dom, ".note"), vec![HOSTILE_NOTE.to_string()]);
    let blobch: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}:{}", n.blob, n.channel))
        .collect();
    assert_eq!(text_of(&dom, "code.blobch"), blobch);
    let paths: Vec<String> = text_of(&dom, ".path");
    let want: Vec<String> = nodes.iter().map(|n| n.path.clone()).collect();
    assert_eq!(paths, want);
    assert_eq!(
        text_of(&dom, ".weight"),
        vec![
            "root",
            "weight +1.23e-2 excitatory",
            "weight +4.0e-3 excitatory",
            "weight \u{2212}1.7e-3 inhibitory",
            "weight \u{2212}4.5e-3 inhibitory",
            "weight +2.0e-2 excitatory",
            "weight +8.0e-4 excitatory",
        ]
    );
    let shares: Vec<String> = text_of(&dom, ".share")
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    assert_eq!(
        shares,
        vec![
            "share 60.0%",
            "share 70.0%",
            "share 30.0%",
            "share 25.0%",
            "share 100.0%",
            "share 15.0%"
        ]
    );
    let via: Vec<String> = dom
        .query_selector("table.via")
        .unwrap()
        .filter_map(|h| tag(&h, p))
        .flat_map(|t| t.query_selector(p, "td").unwrap())
        .filter_map(|h| tag(&h, p))
        .map(|t| unescape(&t.inner_text(p)))
        .collect();
    assert_eq!(
        via,
        vec!["conv4->relu4", "+1.0e-2", "skip & <add>", "\u{2212}2.0e-3"]
    );
}

/// The browser: `$TREEVIS_CHROMIUM`, else `chromium` or `chromium-browser` on the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(b) = std::env::var_os("TREEVIS_CHROMIUM").filter(|b| !b.is_empty()) {
        return Some(PathBuf::from(b));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Runs the browser on `url` with `extra` flags and a fresh profile under `dir`, its
/// stdout into `stdout`; kills its process group and fails past [`browser_timeout`].
fn browse(bin: &Path, dir: &Path, extra: &[String], url: &str, stdout: &Path) {
    let profile = tempfile::tempdir_in(dir).unwrap();
    let err_path = dir.join(format!("chromium-{}.err", extra.len()));
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
    .args(extra)
    .arg(url)
    .env("HOME", dir)
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(stdout).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap())
    .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let (start, timeout) = (Instant::now(), browser_timeout());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            // the browser and its helpers (renderer, zygote) share its process group
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            panic!(
                "{} {extra:?} hung for {timeout:?}: killed; stderr:\n{err}",
                bin.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if !status.success() {
        let err = std::fs::read_to_string(&err_path).unwrap_or_default();
        panic!(
            "{} {extra:?} failed ({status}); stderr:\n{err}",
            bin.display()
        );
    }
}

/// `s` as an HTML serializer writes text: `&`, `<`, `>` and no-break spaces escaped.
fn serialized_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('\u{a0}', "&nbsp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn headless_chromium_draws_the_page() {
    let Some(bin) = chromium() else {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        if ci {
            panic!(
                "no chromium (looked for $TREEVIS_CHROMIUM, `chromium`, `chromium-browser`): \
                 install it (`apt-get install chromium`; tests/run.sh does) or set \
                 TREEVIS_CHROMIUM to the browser's path"
            );
        }
        // straight to stderr: libtest captures eprintln! of a passing test
        let _ = writeln!(
            std::io::stderr(),
            "headless_chromium_draws_the_page: skipped: no chromium (set TREEVIS_CHROMIUM, \
             or install `chromium`; the test fails instead when CI is set)"
        );
        return;
    };
    let page = sample();
    let tmp = tempfile::tempdir().unwrap();
    let file = write_html(&page, &tmp.path().join("report")).unwrap();
    let url = format!("file://{}", file.canonicalize().unwrap().display());

    // the screenshot: the window's size, and the images drawn
    let shot = tmp.path().join("shot.png");
    browse(
        &bin,
        tmp.path(),
        &[format!("--screenshot={}", shot.display())],
        &url,
        &tmp.path().join("shot.out"),
    );
    let img = image::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()))
        .to_rgb8();
    if let Some(keep) = std::env::var_os("TREEVIS_REPORT_KEEP") {
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::copy(&file, keep.join("index.html")).unwrap();
        std::fs::copy(&shot, keep.join("shot.png")).unwrap();
    }
    assert_eq!(
        img.dimensions(),
        WINDOW,
        "the screenshot has the window's size"
    );
    let first = img.get_pixel(0, 0);
    assert!(
        img.pixels().any(|p| p != first),
        "a single colour: nothing drawn"
    );
    // the input image is a magenta checkerboard, 32x24 shown at 224 wide: with pixelated
    // scaling its magenta squares cover about half of 224x168 pixels
    let near = |p: &image::Rgb<u8>, c: [u8; 3]| {
        p.0.iter()
            .zip(c)
            .all(|(&a, b)| (i32::from(a) - i32::from(b)).abs() <= 12)
    };
    let magenta = img.pixels().filter(|p| near(p, MAGENTA)).count();
    assert!(
        magenta > 224 * 168 / 3,
        "the input image is not drawn: {magenta} magenta pixels"
    );
    // the reconstructions are checkerboards of cyan-ish colours on black: some drawn
    let recon = img
        .pixels()
        .filter(|p| p.0[0] < 30 && p.0[1] > 180 && p.0[2] > 180)
        .count();
    assert!(
        recon > 128 * 128,
        "the reconstructions are not drawn: {recon} pixels"
    );

    // the DOM as the browser parsed it: every node, nested, with its path
    let dump = tmp.path().join("dom.html");
    browse(&bin, tmp.path(), &["--dump-dom".to_string()], &url, &dump);
    let dom = std::fs::read_to_string(&dump).unwrap();
    let nodes = preorder(&page.root);
    assert_eq!(dom.matches("<details").count(), nodes.len(), "{dom:.2000}");
    for (i, n) in nodes.iter().enumerate() {
        assert!(dom.contains(&format!("id=\"n{i}\"")), "node {i}");
        let last = n.path.rsplit('/').next().unwrap();
        assert!(
            dom.contains(&format!("<b>{}</b>", serialized_text(last))),
            "{} not in the browser's DOM",
            n.path
        );
        if !n.path.contains(['<', '>', '&', '"']) {
            assert!(
                dom.contains(&format!("data-path=\"{}\"", n.path)),
                "{}",
                n.path
            );
        }
    }
    assert!(dom.contains(&serialized_text(HOSTILE_LABEL)));
    assert!(dom.contains(&serialized_text(HOSTILE_NOTE)));
    // the optional script ran: its buttons exist in the browser's DOM
    assert!(
        dom.contains(">expand all</button>"),
        "the script did not run"
    );
}
