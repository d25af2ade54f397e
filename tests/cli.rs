//! The headless commands, run as the real binary: outputs, files and one-line errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_treevis"))
}

/// Runs treevis; commands run on the tiny golden net unless the arguments name a model.
fn run(args: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(args);
    if !args.is_empty() && !args.contains(&"--model") {
        cmd.args(["--model", "tiny"]);
    }
    cmd.output().expect("runs")
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Runs a command that must fail: non-zero exit, one line on stderr naming `needle`, no panic.
fn fails(args: &[&str], needle: &str) {
    let o = run(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{args:?} should fail");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{args:?} panicked: {err}"
    );
    assert_eq!(
        err.trim().lines().count(),
        1,
        "{args:?}: not one line: {err}"
    );
    assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
}

fn image(dir: &Path) -> PathBuf {
    let p = dir.join("pattern.png");
    treevis::data::pattern_image(64, 48).save(&p).unwrap();
    p
}

fn golden(name: &str) -> String {
    format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn default_run_needs_no_arguments() {
    let cache = tempfile::tempdir().unwrap();
    let o = bin().env("XDG_CACHE_HOME", cache.path()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        out.contains("the demo network")
            && out.contains("most active neurons")
            && out.contains("children of conv5:"),
        "{out}"
    );
    let gallery = cache.path().join("treevis/demo-gallery");
    assert_eq!(
        std::fs::read_dir(&gallery)
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "png"))
            .count(),
        22
    );
    // the star of the gallery is recognised
    assert!(out.lines().nth(2).unwrap().contains("star"), "{out}");
}

#[test]
fn labels_overview_children_json() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let img = img.to_str().unwrap();
    let labels: serde_json::Value = serde_json::from_str(&ok(&["labels", img, "--json"])).unwrap();
    let l = labels.as_array().unwrap();
    assert_eq!(l.len(), 5);
    let probs: Vec<f64> = l.iter().map(|x| x["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]) && probs.iter().sum::<f64>() <= 1.0 + 1e-6);
    assert!(l[0]["name"].is_string() && l[0]["index"].is_u64());
    // --labels names the classes; a file of another length is refused
    let names: Vec<String> = (0..10).map(|i| format!("kind-{i}")).collect();
    let lf = d.path().join("names.txt");
    std::fs::write(&lf, names.join("\n")).unwrap();
    let renamed: serde_json::Value = serde_json::from_str(&ok(&[
        "labels",
        img,
        "--json",
        "--labels",
        lf.to_str().unwrap(),
    ]))
    .unwrap();
    for (a, b) in l.iter().zip(renamed.as_array().unwrap()) {
        assert_eq!(a["index"], b["index"]);
        let i = b["index"].as_u64().unwrap() as usize;
        assert_eq!(b["name"].as_str().unwrap(), names[i]);
    }
    std::fs::write(&lf, "one\ntwo\n").unwrap();
    fails(
        &["labels", img, "--labels", lf.to_str().unwrap()],
        "2 class names for the 10 outputs",
    );

    let out = d.path().join("ov");
    let ov: serde_json::Value = serde_json::from_str(&ok(&[
        "overview",
        img,
        "--top",
        "2",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]))
    .unwrap();
    let rows = ov.as_array().unwrap();
    assert_eq!(rows.len(), 6, "one row per blob of tiny");
    assert_eq!(rows[0]["blob"], "fc6");
    for r in rows {
        let units = r["units"].as_array().unwrap();
        assert_eq!(units.len(), 2);
        let blob = r["blob"].as_str().unwrap();
        for u in units {
            let f = out.join(format!("{blob}_{}.png", u["channel"]));
            assert!(f.exists(), "{} missing", f.display());
        }
    }
    assert!(out.join("input.png").exists());

    let top = format!("conv4:{}", rows[2]["units"][0]["channel"]);
    let kids: serde_json::Value = serde_json::from_str(&ok(&[
        "children", img, "--path", &top, "--k", "3", "--json",
    ]))
    .unwrap();
    let kids = kids.as_array().unwrap();
    assert_eq!(kids.len(), 3);
    for c in kids {
        assert_eq!(c["blob"], "conv3");
        assert_eq!(
            c["path"].as_str().unwrap(),
            format!("{top}/conv3:{}", c["channel"])
        );
        assert!(c["weight"].as_f64().unwrap() >= 0.0);
    }
}

#[test]
fn render_tree_forward_and_npy_inputs() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let img = img.to_str().unwrap();
    let dump = d.path().join("in.npy");
    let png = d.path().join("r.png");
    let raw = d.path().join("r.npy");
    ok(&[
        "render",
        img,
        "--path",
        "conv3:1/conv2:3",
        "--out",
        png.to_str().unwrap(),
        "--raw",
        raw.to_str().unwrap(),
        "--dump-input",
        dump.to_str().unwrap(),
    ]);
    let r = treevis::data::npy::read_f32(&raw).unwrap();
    assert_eq!(r.shape, vec![3, 39, 39]);
    let i = treevis::data::npy::read_f32(&dump).unwrap();
    assert_eq!(i.shape, vec![3, 39, 39]);
    assert_eq!(image::open(&png).unwrap().width(), 39);
    // the dumped input gives the same raw gradient
    let raw2 = d.path().join("r2.npy");
    ok(&[
        "render",
        "--input-npy",
        dump.to_str().unwrap(),
        "--path",
        "conv3:1/conv2:3",
        "--out",
        png.to_str().unwrap(),
        "--raw",
        raw2.to_str().unwrap(),
    ]);
    assert_eq!(treevis::data::npy::read_f32(&raw2).unwrap(), r);

    let tree = d.path().join("tree");
    ok(&[
        "tree",
        img,
        "--root",
        "conv4:0",
        "--depth",
        "2",
        "--k",
        "2",
        "--out",
        tree.to_str().unwrap(),
    ]);
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tree.join("tree.json")).unwrap()).unwrap();
    fn count(v: &serde_json::Value, dir: &Path) -> usize {
        assert!(dir.join(v["image"].as_str().unwrap()).exists());
        1 + v["children"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| count(c, dir))
            .sum::<usize>()
    }
    assert_eq!(count(&t, &tree), 1 + 2 + 4);
    assert_eq!(
        t["children"][0]["children"][0]["path"]
            .as_str()
            .unwrap()
            .split('/')
            .count(),
        3
    );

    let fw = d.path().join("fw");
    ok(&["forward", img, "--out", fw.to_str().unwrap()]);
    assert_eq!(
        treevis::data::npy::read_f32(&fw.join("conv1.npy"))
            .unwrap()
            .shape,
        vec![8, 20, 20]
    );
    assert_eq!(
        treevis::data::npy::read_f32(&fw.join("fc6.npy"))
            .unwrap()
            .shape,
        vec![10]
    );
}

#[test]
fn full_size_alexnet_with_random_weights() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let img = img.to_str().unwrap();
    let out = ok(&[
        "children",
        img,
        "--model",
        "alexnet",
        "--weights",
        "random",
        "--path",
        "fc8:3",
        "--k",
        "2",
    ]);
    assert!(
        out.lines().count() == 2 && out.contains("fc8:3/fc7:"),
        "{out}"
    );
    let png = d.path().join("a.png");
    ok(&[
        "render",
        img,
        "--model",
        "alexnet",
        "--weights",
        "random:1",
        "--path",
        "conv5:10/conv4:3",
        "--method",
        "deconv",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_eq!(image::open(&png).unwrap().width(), 224);
}

#[test]
fn bad_input_gives_one_line_errors() {
    let d = tempfile::tempdir().unwrap();
    let img = image(d.path());
    let img = img.to_str().unwrap();
    fails(&["labels", "/no/such/file.png"], "/no/such/file.png");
    let txt = d.path().join("notes.png");
    std::fs::write(&txt, "this is not an image").unwrap();
    fails(&["labels", txt.to_str().unwrap()], "cannot decode");
    fails(&["labels"], "no input");
    fails(
        &["render", img, "--path", "conv9:1"],
        "unknown blob `conv9`",
    );
    fails(&["render", img, "--path", "conv2:9999"], "out of range");
    fails(&["render", img, "--path", "conv2:1/conv3:1"], "not below");
    fails(&["children", img, "--path", "conv1:0"], "no children");
    fails(&["labels", img, "--device", "cuda:0"], "without CUDA");
    // a misspelt device is a usage error (exit 2), found before any model is loaded
    fails(&["labels", img, "--device", "gpu"], "unknown device `gpu`");
    fails(
        &[
            "cache",
            "build",
            "--data",
            img,
            "--out",
            "x",
            "--device",
            "cpu,cuda:x",
        ],
        "cuda:N",
    );
    for args in [
        &["labels", img, "--device", "gpu"][..],
        &["bench", "--device", "tpu"],
    ] {
        let o = bin().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("unknown device"), "{args:?}: {err}");
    }
    fails(
        &["labels", img, "--model", "nonet"],
        "unknown model `nonet`",
    );

    // truncated safetensors
    let w = std::fs::read(golden("tiny.weights.safetensors")).unwrap();
    let trunc = d.path().join("trunc.safetensors");
    std::fs::write(&trunc, &w[..w.len() / 2]).unwrap();
    fails(
        &["labels", img, "--weights", trunc.to_str().unwrap()],
        "truncated or corrupt",
    );
    // weights of another net: shapes do not match the spec
    fails(
        &[
            "labels",
            img,
            "--model",
            "caffenet",
            "--weights",
            &golden("tiny.weights.safetensors"),
        ],
        "expected [out, 3, 11, 11]",
    );
    fails(
        &[
            "labels",
            img,
            "--model",
            &golden("../../models/caffenet.toml"),
            "--weights",
            &golden("alexnet.weights.safetensors"),
        ],
        "missing tensor",
    );
    // a spec whose kernel does not match the weights
    let spec = std::fs::read_to_string(golden("../../models/tiny.toml"))
        .unwrap()
        .replacen("kernel = 3", "kernel = 5", 1);
    let bad = d.path().join("bad.toml");
    std::fs::write(&bad, spec).unwrap();
    fails(
        &[
            "labels",
            img,
            "--model",
            bad.to_str().unwrap(),
            "--weights",
            &golden("tiny.weights.safetensors"),
        ],
        "tensor `conv1.weight` of layer `conv1` has shape [8, 3, 3, 3]",
    );
    // a wrongly shaped npy input
    let npy = d.path().join("x.npy");
    treevis::data::npy::write_f32(&npy, &[2, 4], &[0.0; 8]).unwrap();
    fails(
        &["labels", "--input-npy", npy.to_str().unwrap()],
        "[3, H, W]",
    );
}

#[test]
fn headless_commands_on_the_demo_network() {
    let d = tempfile::tempdir().unwrap();
    let star = d.path().join("star.png");
    treevis::data::synth::generate_class(treevis::data::synth::HELD_OUT_SEED, 9, 9)
        .save(&star)
        .unwrap();
    let star = star.to_str().unwrap();
    let labels: serde_json::Value =
        serde_json::from_str(&ok(&["labels", star, "--model", "demo", "--json"])).unwrap();
    assert_eq!(labels[0]["name"], "star", "{labels}");
    let ov: serde_json::Value =
        serde_json::from_str(&ok(&["overview", star, "--model", "demo", "--json"])).unwrap();
    let blobs: Vec<&str> = ov
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["blob"].as_str().unwrap())
        .collect();
    assert_eq!(
        blobs,
        ["fc8", "fc7", "fc6", "conv5", "conv4", "conv3", "conv2", "conv1"]
    );
    let root = format!("conv5:{}", ov[3]["units"][0]["channel"]);
    let tree = d.path().join("tree");
    ok(&[
        "tree",
        star,
        "--model",
        "demo",
        "--root",
        &root,
        "--depth",
        "2",
        "--k",
        "2",
        "--out",
        tree.to_str().unwrap(),
    ]);
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tree.join("tree.json")).unwrap()).unwrap();
    assert_eq!(t["children"].as_array().unwrap().len(), 2);
    assert_eq!(
        t["children"][1]["children"][1]["path"]
            .as_str()
            .unwrap()
            .split('/')
            .count(),
        3
    );
}

/// `treevis bench --kernels --runs 1 ARGS`: its table.
fn bench_kernels_with(args: &[&std::ffi::OsStr]) -> String {
    let o = bin()
        .args(["bench", "--kernels", "--runs", "1"])
        .args(args)
        .output()
        .expect("runs");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// `treevis bench --kernels --runs 1 --models demo FLAG FILE`: its table.
fn bench_kernels(flag: &str, file: &Path) -> String {
    bench_kernels_with(&[
        "--models".as_ref(),
        "demo".as_ref(),
        flag.as_ref(),
        file.as_os_str(),
    ])
}

#[test]
fn bench_kernels_times_each_3x3_convolution_both_ways() {
    let table = bench_kernels_with(&["--models".as_ref(), "demo-resnet".as_ref()]);
    // demo-resnet's stride-1 3x3 convolutions: 32 -> 32 at 16x16 (layer1), 64 -> 64 at 8x8
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("| demo-resnet |") && l.contains(" -> "))
        .collect();
    for shape in ["| 32 -> 32 |", "| 64 -> 64 |"] {
        for scheme in ["| F(2x2, 3x3) |", "| F(4x4, 3x3) |"] {
            let row = rows
                .iter()
                .find(|l| l.contains(shape) && l.contains(scheme))
                .unwrap_or_else(|| panic!("no row for {shape} {scheme}:\n{table}"));
            // at batch 1 these planes are below the work Winograd needs to gain, and at
            // batch 32 below F(4x4, 3x3)'s
            let used = ["| b32 |", "| no |"];
            assert!(used.iter().any(|u| row.contains(u)), "{row}");
            // six timings and three gains, all positive
            let cells: Vec<f64> = row
                .split('|')
                .filter_map(|c| c.trim().trim_end_matches('x').parse().ok())
                .collect();
            assert_eq!(cells.len(), 9, "{row}");
            assert!(cells.iter().all(|v| *v > 0.0), "{row}");
        }
    }
}

#[test]
fn bench_kernels_prints_the_gemm_table_and_the_compared_columns() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.json");
    let table = bench_kernels("--json", &ours);
    assert!(table.starts_with("peak ("), "{table}");
    // the demo net's conv1: 3 input channels, 5x5 kernel, 32 filters, 32x32 output
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ours).unwrap()).unwrap();
    let cases = json["cases"].as_array().unwrap();
    assert!(cases.len() >= 4, "{cases:?}");
    assert!(
        cases
            .iter()
            .any(|c| c["m"] == 32 && c["n"] == 1024 && c["k"] == 75 && c["product"] == "fwd"),
        "{cases:?}"
    );
    assert!(cases.iter().all(|c| c["gflops"].as_f64().unwrap() > 0.0));
    assert!(json["peak"]["all_threads"].as_f64().unwrap() > 0.0);
    for pass in ["demo forward b1", "demo forward b32", "demo backward from"] {
        assert!(table.contains(pass), "{pass} missing:\n{table}");
    }
    // a compared file's numbers land in the row of their case id
    let id = cases[0]["id"].as_str().unwrap().to_string();
    let theirs = dir.path().join("theirs.json");
    std::fs::write(
        &theirs,
        serde_json::json!({"torch": {&id: 123.4}, "onnxruntime": {&id: 56.7}, "meta": {}})
            .to_string(),
    )
    .unwrap();
    let table = bench_kernels("--compare", &theirs);
    let row = table
        .lines()
        .find(|l| l.contains("| demo |") && l.contains("| 123.4 | 56.7 |"))
        .unwrap_or_else(|| panic!("no compared row for {id}:\n{table}"));
    assert!(row.ends_with("x |"), "{row}");
}
