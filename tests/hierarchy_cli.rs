//! `parents`, `children --sign/--ablate`, `sanity`, `render --method all` and the tree's
//! `index.html`, run as the real binary on the demo network, demo-resnet and the ResNet-18
//! and AlexNet fixtures; and their errors, one line each.

use std::path::Path;

#[path = "common/bin.rs"]
mod bin;
use bin::{fails, golden, ok};

use serde_json::Value;

fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_str(&ok(&a)).unwrap()
}

fn star(dir: &Path) -> String {
    let p = dir.join("star.png");
    treevis::data::synth::generate_class(treevis::data::synth::HELD_OUT_SEED, 9, 9)
        .save(&p)
        .unwrap();
    p.to_str().unwrap().to_string()
}

/// The most active channel of `blob` in an overview.
fn top_channel(img: &str, model: &[&str], blob: &str) -> usize {
    let mut a = vec!["overview", img, "--top", "1"];
    a.extend_from_slice(model);
    let ov = json(&a);
    let row = ov
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["blob"] == blob)
        .unwrap_or_else(|| panic!("no {blob} in {ov}"));
    row["units"][0]["channel"].as_u64().unwrap() as usize
}

fn args<'a>(cmd: &'a str, img: &'a str, model: &[&'a str], rest: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![cmd, img];
    a.extend_from_slice(model);
    a.extend_from_slice(rest);
    a
}

/// Signed children: `pos` only positive values, `neg` only negative, weights `|value|`,
/// shares in 0..1 summing to at most 1, and each child's edges adding up to its value.
fn check_children(img: &str, model: &[&str], path: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for (sign, method) in [("abs", "guided"), ("pos", "gradient"), ("neg", "gradient")] {
        let kids = json(&args(
            "children",
            img,
            model,
            &[
                "--path", path, "--sign", sign, "--method", method, "--ablate",
            ],
        ));
        let kids = kids.as_array().unwrap().clone();
        assert!(!kids.is_empty(), "{path}: no {sign} children");
        let mut shares = 0.0;
        for c in &kids {
            let (v, w, s) = (
                c["value"].as_f64().unwrap(),
                c["weight"].as_f64().unwrap(),
                c["share"].as_f64().unwrap(),
            );
            assert!((w - v.abs()).abs() <= 1e-6 * w.max(1e-9), "{c}");
            assert!((0.0..=1.0).contains(&s), "{c}");
            shares += s;
            match sign {
                "pos" => assert!(v > 0.0, "{c}"),
                "neg" => assert!(v < 0.0, "{c}"),
                _ => {}
            }
            assert!(c["drop"].as_f64().is_some(), "--ablate gives a drop: {c}");
            if let Some(via) = c["via"].as_array() {
                let sum: f64 = via.iter().map(|e| e["value"].as_f64().unwrap()).sum();
                assert!((sum - v).abs() <= 1e-4 * v.abs().max(1e-6), "{c}");
            }
        }
        assert!(
            shares <= 1.0 + 1e-5,
            "{path} {sign}: shares sum to {shares}"
        );
        all.extend(kids);
    }
    all
}

fn check_parents(img: &str, model: &[&str], path: &str, above: &str) {
    let ps = json(&args("parents", img, model, &["--path", path, "--k", "3"]));
    let ps = ps.as_array().unwrap();
    assert!(!ps.is_empty() && ps.len() <= 3, "{ps:?}");
    let w: Vec<f64> = ps.iter().map(|p| p["weight"].as_f64().unwrap()).collect();
    assert!(
        w.windows(2).all(|x| x[0] >= x[1]) && w[w.len() - 1] > 0.0,
        "{w:?}"
    );
    for p in ps {
        assert_eq!(p["blob"], above, "{p}");
        assert_eq!(
            p["path"].as_str().unwrap(),
            format!("{above}:{}", p["channel"])
        );
    }
}

fn check_sanity(img: &str, model: &[&str], path: &str, steps: usize, dir: &Path) {
    let png = dir.join("sanity.png");
    let s = json(&args(
        "sanity",
        img,
        model,
        &["--path", path, "--out", png.to_str().unwrap()],
    ));
    let st = s["steps"].as_array().unwrap();
    assert_eq!(st.len(), steps, "{s}");
    for (i, x) in st.iter().enumerate() {
        assert_eq!(x["layers"].as_u64().unwrap() as usize, i + 1);
        for k in ["spearman", "ssim"] {
            match x[k].as_f64() {
                Some(v) => assert!((-1.0..=1.0 + 1e-6).contains(&v), "{k} {v}"),
                // NaN: a constant reconstruction, which the step's note names
                None => assert!(x["note"].is_string(), "{x}"),
            }
        }
    }
    let strip = image::open(&png).unwrap();
    assert!(strip.width() > (steps as u32 + 1) * 64, "{}", strip.width());
}

#[test]
fn the_hierarchy_commands_on_the_demo_network() {
    let d = tempfile::tempdir().unwrap();
    let img = star(d.path());
    let m = ["--model", "demo"];
    let c5 = top_channel(&img, &m, "conv5");
    let c3 = top_channel(&img, &m, "conv3");
    let kids = check_children(&img, &m, &format!("conv5:{c5}"));
    assert!(
        kids.iter().all(|c| c["via"].is_null()),
        "a chain has one edge"
    );
    check_parents(&img, &m, &format!("conv3:{c3}"), "conv4");
    check_sanity(&img, &m, &format!("conv5:{c5}"), 5, d.path());
    // the text form: signed shares, drops, and where ablation disagrees
    let out = ok(&args(
        "children",
        &img,
        &m,
        &["--path", &format!("conv5:{c5}"), "--ablate", "--k", "5"],
    ));
    assert!(out.contains('%') && out.contains("drop"), "{out}");
    let out = ok(&args(
        "sanity",
        &img,
        &m,
        &["--path", &format!("conv5:{c5}")],
    ));
    assert!(
        out.contains("randomized down to") && out.contains("conv1"),
        "{out}"
    );

    // every rule and mode in one strip
    let all = d.path().join("all.png");
    ok(&args(
        "render",
        &img,
        &m,
        &[
            "--path",
            &format!("conv5:{c5}"),
            "--method",
            "all",
            "--out",
            all.to_str().unwrap(),
        ],
    ));
    // 64 px tiles are drawn at 128 px: 8 of them and 9 gaps of 6 px
    assert_eq!(image::open(&all).unwrap().width(), 8 * 128 + 9 * 6);

    // the tree's page: one <details> per node, images inline
    let tree = d.path().join("tree");
    ok(&args(
        "tree",
        &img,
        &m,
        &[
            "--root",
            &format!("conv5:{c5}"),
            "--depth",
            "2",
            "--k",
            "2",
            "--sign",
            "pos",
            "--out",
            tree.to_str().unwrap(),
        ],
    ));
    let html = std::fs::read_to_string(tree.join("index.html")).unwrap();
    assert_eq!(html.matches("<details").count(), 7, "1 + 2 + 4 nodes");
    assert!(html.contains("data:image/png;base64,") && !html.contains("src=\"http"));
    let t: Value =
        serde_json::from_str(&std::fs::read_to_string(tree.join("tree.json")).unwrap()).unwrap();
    assert!(t["children"][0]["value"].as_f64().unwrap() > 0.0, "{t}");

    // bad input: one line each, no panic
    fails(
        &args("parents", &img, &m, &["--path", "fc8:0"]),
        "top of the tree",
    );
    fails(
        &args(
            "children",
            &img,
            &m,
            &["--path", "conv1:0", "--sign", "pos"],
        ),
        "no children",
    );
    fails(
        &args(
            "render",
            &img,
            &m,
            &["--path", "conv1:0", "--method", "all", "--raw", "x.npy"],
        ),
        "one --method",
    );
    let file = d.path().join("file");
    std::fs::write(&file, b"").unwrap();
    fails(
        &args(
            "tree",
            &img,
            &m,
            &[
                "--root",
                "conv2:0",
                "--depth",
                "1",
                "--out",
                file.join("sub").to_str().unwrap(),
            ],
        ),
        "file",
    );
}

#[test]
fn the_hierarchy_commands_on_resnets() {
    let d = tempfile::tempdir().unwrap();
    let img = star(d.path());
    // demo-resnet: residual blocks, so children reach their parent through two edges
    let m = ["--model", "demo-resnet"];
    let ov = json(&["overview", &img, "--model", "demo-resnet", "--top", "1"]);
    let blobs: Vec<String> = ov
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["blob"].as_str().unwrap().to_string())
        .collect();
    let top = blobs[1].clone();
    let c = top_channel(&img, &m, &top);
    let kids = check_children(&img, &m, &format!("{top}:{c}"));
    assert!(
        kids.iter()
            .any(|k| k["via"].as_array().is_some_and(|v| v.len() == 2)),
        "a residual block's child acts through its skip and its branch: {kids:?}"
    );
    check_parents(&img, &m, &format!("{}:0", blobs[2]), &top);

    // the ResNet-18 fixture (torchvision's module names)
    let w = golden("resnet18.pth");
    let m = ["--model", "resnet18", "--weights", w.as_str()];
    let c = top_channel(&img, &m, "layer2.1");
    let kids = check_children(&img, &m, &format!("layer2.1:{c}"));
    assert!(kids
        .iter()
        .any(|k| k["via"].as_array().is_some_and(|v| v.len() == 2)));
    check_parents(&img, &m, &format!("layer2.1:{c}"), "layer3.0");
    // stem conv + 2 blocks of 2 convs up to layer1.1: 5 layers with weights
    let c = top_channel(&img, &m, "layer1.1");
    check_sanity(&img, &m, &format!("layer1.1:{c}"), 5, d.path());
}

#[test]
fn the_hierarchy_commands_on_alexnet() {
    let d = tempfile::tempdir().unwrap();
    let img = star(d.path());
    let w = golden("alexnet.weights.safetensors");
    let spec = format!("{}/models/alexnet.toml", env!("CARGO_MANIFEST_DIR"));
    let m = ["--model", spec.as_str(), "--weights", w.as_str()];
    let c = top_channel(&img, &m, "conv5");
    check_children(&img, &m, &format!("conv5:{c}"));
    check_parents(&img, &m, &format!("conv5:{c}"), "fc6");
    check_sanity(&img, &m, &format!("conv3:{c}"), 3, d.path());
}

/// A blob with no layer with weights below it: the sanity check has nothing to randomize
/// and says so.
#[test]
fn sanity_of_a_blob_below_every_weight_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let img = star(d.path());
    let spec = d.path().join("nop.toml");
    std::fs::write(
        &spec,
        r#"name = "nop"
[input]
size = [16, 16]
color = "rgb"
scale = 1.0
mean = [0.5, 0.5, 0.5]
std = [0.25, 0.25, 0.25]
[[layers]]
name = "relu0"
type = "relu"
[[layers]]
name = "conv1"
type = "conv"
out = 4
kernel = 3
[[layers]]
name = "relu1"
type = "relu"
[[layers]]
name = "flatten"
type = "flatten"
[[layers]]
name = "fc"
type = "linear"
out = 3
[[blobs]]
name = "fc"
layer = "fc"
mult = 1
[[blobs]]
name = "conv1"
layer = "relu1"
mult = 1
[[blobs]]
name = "rect"
layer = "relu0"
mult = 1
"#,
    )
    .unwrap();
    let spec = spec.to_str().unwrap();
    let m = ["--model", spec, "--weights", "random"];
    fails(
        &args("sanity", &img, &m, &["--path", "rect:0"]),
        "nothing to randomize",
    );
    let s = json(&args("sanity", &img, &m, &["--path", "conv1:0"]));
    assert_eq!(s["steps"].as_array().unwrap().len(), 1, "{s}");
    fails(
        &args("parents", &img, &m, &["--path", "fc:0"]),
        "top of the tree",
    );
}
