//! End to end: the real binary in a real terminal (tmux, half-blocks): gallery -> overview
//! -> tree -> expand, read back with `capture-pane`, quit, and the shell gets its terminal
//! back. Needs tmux (`.ci/run` installs it).

use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is installed (apt-get install tmux)");
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn screen(sock: &str) -> String {
    tmux(&["-L", sock, "capture-pane", "-p", "-t", "e2e"])
}

fn wait_for(sock: &str, what: &str, secs: u64) -> String {
    let start = Instant::now();
    loop {
        let s = screen(sock);
        if s.contains(what) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "`{what}` never appeared; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ends the test's tmux server (and the app in it) however the test ends, a failed
/// assertion included.
struct Server(String);

impl Drop for Server {
    fn drop(&mut self) {
        tmux(&["-L", &self.0, "kill-server"]);
    }
}

fn launch(sock: &str, cache: &std::path::Path, session: &std::path::Path) {
    launch_with(sock, cache, session, "");
}

fn launch_with(sock: &str, cache: &std::path::Path, session: &std::path::Path, extra: &str) {
    let cmd = format!(
        "cd {}; XDG_CACHE_HOME={} {} --protocol halfblocks --session {} {extra}; echo TREEVIS-EXITED $?; stty -a | grep -o -- '-icanon'; sleep 60",
        cache.display(),
        cache.display(),
        env!("CARGO_BIN_EXE_treevis"),
        session.display()
    );
    tmux(&["-L", sock, "kill-server"]);
    tmux(&[
        "-L",
        sock,
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "120",
        "-y",
        "40",
        &cmd,
    ]);
}

#[test]
fn gallery_overview_tree_expand_quit() {
    let sock = format!("treevis-e2e-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session.json");
    launch(&sock, cache.path(), &session);
    let s = wait_for(&sock, "stripes 100%", 60);
    assert!(
        s.contains("gallery: 22 images") && s.contains(">0000_stripes.png"),
        "{s}"
    );
    // the star (10th image), its overview
    for _ in 0..9 {
        tmux(&["-L", &sock, "send-keys", "-t", "e2e", "l"]);
    }
    wait_for(&sock, ">0009_star.png", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    let s = wait_for(&sock, "conv5:", 60);
    assert!(s.contains("star") && s.contains(">fc8:"), "{s}");
    // conv5's top neuron: tree, expand
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "j", "j", "j"]);
    wait_for(&sock, ">conv5:", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, "tree: Enter expands", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    let s = wait_for(&sock, "· conv4:", 60);
    let children = s.lines().filter(|l| l.contains("· conv4:")).count();
    assert_eq!(children, 5, "{s}");
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "q"]);
    let s = wait_for(&sock, "TREEVIS-EXITED", 10);
    assert!(s.contains("TREEVIS-EXITED 0"), "{s}");
    // the alternate screen is gone and the terminal is back in canonical mode
    assert!(
        !s.contains("gallery |") && !s.contains("-icanon"),
        "terminal not restored:\n{s}"
    );
    tmux(&["-L", &sock, "kill-server"]);
}

/// A user keymap (`--keymap FILE`) rebinds the tree's expansion: the tree's title names the
/// new key, which expands, and the old one does what it is bound to now.
#[test]
fn a_rebound_key_is_named_in_the_title_and_works() {
    let sock = format!("treevis-e2e-keys-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session-keys.json");
    let keymap = cache.path().join("keymap.toml");
    std::fs::write(
        &keymap,
        r#"[tree]
keys = [
  { on = ["o"], run = "expand", desc = "expand" },
  { on = ["Enter"], run = "toggle_input", desc = "input" },
]
"#,
    )
    .unwrap();
    launch_with(
        &sock,
        cache.path(),
        &session,
        &format!("--keymap {}", keymap.display()),
    );
    wait_for(&sock, "stripes 100%", 60);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, ">fc8:", 60);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, "tree: o expands, h collapses", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "o"]);
    let s = wait_for(&sock, "· fc7:", 60);
    assert_eq!(s.lines().filter(|l| l.contains("· fc7:")).count(), 5, "{s}");
    // Enter shows the input image and its labels now
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, "% stripes", 30);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "q"]);
    let s = wait_for(&sock, "TREEVIS-EXITED", 10);
    assert!(s.contains("TREEVIS-EXITED 0"), "{s}");
}

/// A graph network from an ONNX file (ResNet-18 as PyTorch's dynamo exporter wrote it,
/// weights in `.onnx.data`): the overview scrolls through all ten tree blobs down to the
/// stem, and a residual block's tree expands into the block below.
#[test]
fn an_onnx_resnet_in_the_app() {
    let sock = format!("treevis-e2e-onnx-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session-onnx.json");
    let model = format!(
        "--model {}/tests/golden/resnet18_dynamo.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    launch_with(&sock, cache.path(), &session, &model);
    let s = wait_for(&sock, "resnet18_dynamo", 60);
    assert!(s.contains("gallery: 22 images"), "{s}");
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, ">fc:", 60);
    for _ in 0..9 {
        tmux(&["-L", &sock, "send-keys", "-t", "e2e", "j"]);
    }
    let s = wait_for(&sock, ">relu:", 30);
    assert!(s.contains("layer1.0"), "{s}");
    for _ in 0..8 {
        tmux(&["-L", &sock, "send-keys", "-t", "e2e", "k"]);
    }
    wait_for(&sock, ">layer4.1:", 30);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, "tree: Enter expands", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    let s = wait_for(&sock, "· layer4.0:", 60);
    let children = s.lines().filter(|l| l.contains("· layer4.0:")).count();
    assert_eq!(children, 5, "{s}");
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "q"]);
    let s = wait_for(&sock, "TREEVIS-EXITED", 10);
    assert!(s.contains("TREEVIS-EXITED 0"), "{s}");
    tmux(&["-L", &sock, "kill-server"]);
}

/// The built-in residual demo, offline (`--model demo-resnet`): the gallery's labels come
/// from its own weights, the overview lists its five blobs, `layer3`'s top neuron expands
/// into `layer2` (through the block's skip and branch alike), and the tree exports; on
/// `--device cpu-generic`, the tensor-op backend a GPU runs.
#[test]
fn the_residual_demo_in_the_app() {
    let sock = format!("treevis-e2e-resnet-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session-resnet.json");
    // on the tensor-op backend: the code a GPU runs drives the app
    launch_with(
        &sock,
        cache.path(),
        &session,
        "--model demo-resnet --device cpu-generic",
    );
    let s = wait_for(&sock, "0000_stripes.png", 60);
    assert!(s.contains("gallery: 22 images"), "{s}");
    assert!(s.contains("demo-resnet | cpu-generic"), "{s}");
    wait_for(&sock, "stripes 9", 60);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    let s = wait_for(&sock, "relu:", 60);
    assert!(
        s.contains(">fc:") && s.contains("layer3:") && s.contains("layer1:"),
        "{s}"
    );
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "j"]);
    wait_for(&sock, ">layer3:", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    wait_for(&sock, "tree: Enter expands", 10);
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "Enter"]);
    let s = wait_for(&sock, "· layer2:", 60);
    let children = s.lines().filter(|l| l.contains("· layer2:")).count();
    assert_eq!(children, 5, "{s}");
    // the whole tree exported (into the app's folder)
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "E"]);
    wait_for(&sock, "wrote 6 node(s)", 60);
    let export = cache.path().join("treevis-export");
    let tree = std::fs::read_dir(&export)
        .unwrap()
        .map(|e| e.unwrap().path().join("tree.json"))
        .find(|p| p.is_file())
        .expect("tree.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tree).unwrap()).unwrap();
    assert_eq!(json["children"].as_array().map(Vec::len), Some(5), "{json}");
    tmux(&["-L", &sock, "send-keys", "-t", "e2e", "q"]);
    let s = wait_for(&sock, "TREEVIS-EXITED", 10);
    assert!(s.contains("TREEVIS-EXITED 0"), "{s}");
    tmux(&["-L", &sock, "kill-server"]);
}

/// Processes whose command line mentions `needle`.
fn pids_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|pid| *pid != std::process::id())
        .collect()
}

#[test]
fn a_hang_up_ends_the_app() {
    let sock = format!("treevis-e2e-hup-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session-hup.json");
    launch(&sock, cache.path(), &session);
    wait_for(&sock, "stripes 100%", 60);
    let needle = session.display().to_string();
    let running = [app_pid(&session)];
    // the SSH connection drops: the terminal goes away under the app
    tmux(&["-L", &sock, "kill-server"]);
    let start = Instant::now();
    while pids_with(&needle).contains(&running[0]) {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = Command::new("kill")
                .args(["-9", &running[0].to_string()])
                .status();
            panic!("treevis still runs 20 s after its terminal hung up");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The treevis process of a test, found by its session file's name.
fn app_pid(session: &std::path::Path) -> u32 {
    let needle = session.display().to_string();
    let running: Vec<u32> = pids_with(&needle)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "treevis")
        })
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    running[0]
}

/// A signal ends the app with the terminal restored and the shell's convention for a
/// killed command (128 + the signal), SIGQUIT and SIGUSR1 included; and a session file
/// that is not a tree (a child cycle) is set aside, reported, and the app starts fresh.
#[test]
fn signals_exit_128_plus_n_and_a_corrupt_session_is_set_aside() {
    for (sig, num) in [("TERM", 15), ("QUIT", 3), ("USR1", 10), ("INT", 2)] {
        let sock = format!("treevis-e2e-sig{sig}-{}", std::process::id());
        let _server = Server(sock.clone());
        let cache = tempfile::tempdir().unwrap();
        let session = cache.path().join(format!("session-{sig}.json"));
        if sig == "TERM" {
            // a cycle: node 1's child is node 1
            let node = |parent: &str, children: &str| {
                format!(
                    r#"{{"path":"conv5:1","weight":null,"parent":{parent},"children":[{children}],"expanding":false,"removed":false}}"#
                )
            };
            let text = format!(
                r#"{{"image":"x.png","pane":"tree","opts":{{"rule":"guided","mult":"auto"}},"display":"norm","ov_top":5,"ov_row":0,"ov_col":0,"tree":{{"nodes":[{},{}],"sel":0,"show_input":false}}}}"#,
                node("null", "1"),
                node("0", "1"),
            );
            std::fs::write(&session, text).unwrap();
        }
        launch(&sock, cache.path(), &session);
        let s = wait_for(&sock, "stripes 100%", 60);
        if sig == "TERM" {
            assert!(
                s.contains("the tree node 1 is a child of 1") && s.contains("set aside"),
                "{s}"
            );
            let mut aside = session.as_os_str().to_owned();
            aside.push(".bad");
            assert!(std::path::Path::new(&aside).is_file());
        }
        let pid = app_pid(&session);
        Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap();
        let s = wait_for(&sock, "TREEVIS-EXITED", 20);
        assert!(
            s.contains(&format!("TREEVIS-EXITED {}", 128 + num)),
            "SIG{sig}: {s}"
        );
        assert!(
            !s.contains("gallery |") && !s.contains("-icanon"),
            "SIG{sig}: terminal not restored:\n{s}"
        );
    }
}

/// Waits until `ok` holds of the screen.
fn wait_until(sock: &str, what: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let s = screen(sock);
        if ok(&s) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "never {what}; screen:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The selected tree node's path: the right pane's title.
fn selected_path(s: &str) -> String {
    s.lines()
        .find(|l| l.contains("┌ tree:"))
        .and_then(|l| l.split("┐┌ ").nth(1))
        .and_then(|r| r.split(' ').next())
        .unwrap_or_default()
        .to_string()
}

fn keys(sock: &str, k: &[&str]) {
    let mut args = vec!["-L", sock, "send-keys", "-t", "e2e"];
    args.extend_from_slice(k);
    tmux(&args);
}

/// The whole tree walk: a child's parents, the tree re-rooted at one, the rules compared,
/// the sanity check, and the export with its HTML page.
#[test]
fn parents_reroot_compare_sanity_and_html_export() {
    let sock = format!("treevis-e2e-walk-{}", std::process::id());
    let _server = Server(sock.clone());
    let cache = tempfile::tempdir().unwrap();
    let session = cache.path().join("session-walk.json");
    launch(&sock, cache.path(), &session);
    wait_for(&sock, "stripes 100%", 60);
    for _ in 0..9 {
        keys(&sock, &["l"]);
    }
    wait_for(&sock, ">0009_star.png", 10);
    keys(&sock, &["Enter"]);
    wait_for(&sock, "conv5:", 60);
    keys(&sock, &["j", "j", "j"]);
    wait_for(&sock, ">conv5:", 10);
    keys(&sock, &["Enter"]);
    wait_for(&sock, "tree: Enter expands", 10);
    keys(&sock, &["Enter"]);
    let s = wait_for(&sock, "· conv4:", 60);
    assert!(
        s.contains("s: strongest children (abs)") && s.contains('%'),
        "{s}"
    );
    // the first child, its parents
    keys(&sock, &["j"]);
    let s = wait_until(&sock, "a conv4 node selected", 10, |s| {
        selected_path(s).contains("/conv4:")
    });
    let before = selected_path(&s);
    let (old_root, child) = before.split_once('/').unwrap();
    keys(&sock, &["u"]);
    let s = wait_for(&sock, "share", 60);
    assert!(
        s.contains(&format!("parents of {child}")) && s.contains("> conv5:"),
        "{s}"
    );
    // the second parent: the tree is rooted there, the child under it
    keys(&sock, &["j"]);
    keys(&sock, &["Enter"]);
    let s = wait_until(&sock, "re-rooted", 60, |s| {
        !s.contains("parents of") && selected_path(s).ends_with(&format!("/{child}"))
    });
    let after = selected_path(&s);
    let new_root = after.split_once('/').unwrap().0;
    assert_ne!(new_root, old_root, "{s}");
    assert!(s.contains(&format!("▾ {new_root}")), "{s}");
    // every rule side by side
    keys(&sock, &["c"]);
    let s = wait_for(&sock, "every rule and multiplier mode", 10);
    assert!(
        s.contains("gradient auto") && s.contains("guided-neg manual"),
        "{s}"
    );
    keys(&sock, &["Escape"]);
    wait_until(&sock, "compare closed", 10, |s| {
        !s.contains("every rule and multiplier mode")
    });
    // the sanity check, to its reading
    keys(&sock, &["S"]);
    wait_for(&sock, "sanity check of", 10);
    let s = wait_for(&sock, "spearman", 120);
    assert!(
        s.contains("randomized down to")
            && (s.contains("similarity stays high") || s.contains("the picture changes")),
        "{s}"
    );
    keys(&sock, &["Escape"]);
    wait_until(&sock, "sanity closed", 10, |s| {
        !s.contains("sanity check of")
    });
    assert_eq!(selected_path(&screen(&sock)), after);
    // the tree exported, with its page
    keys(&sock, &["E"]);
    let s = wait_for(&sock, "index.html to", 60);
    assert!(s.contains("wrote ") && s.contains("node(s)"), "{s}");
    let page = cache.path().join("treevis-export/0009_star/index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains("<details") && html.contains("data:image/png;base64,"),
        "{}",
        page.display()
    );
    let dom = tl::parse(&html, tl::ParserOptions::default()).unwrap();
    let details = dom
        .query_selector("details")
        .map(|q| q.count())
        .unwrap_or(0);
    assert!(details >= 2, "{details} <details> in {}", page.display());
    keys(&sock, &["q"]);
    let s = wait_for(&sock, "TREEVIS-EXITED", 10);
    assert!(s.contains("TREEVIS-EXITED 0"), "{s}");
}
