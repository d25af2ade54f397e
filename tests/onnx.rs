//! ONNX files as models, through the real binary: every headless command takes
//! `--model FILE.onnx`; `models import-onnx` writes a folder that loads to the same
//! numbers; bad files are one-line errors naming the file.

use std::path::{Path, PathBuf};

#[path = "common/bin.rs"]
mod bin;
use bin::{fails, golden, ok, run};

fn image(dir: &Path) -> PathBuf {
    let p = dir.join("pattern.png");
    treevis::data::pattern_image(96, 80).save(&p).unwrap();
    p
}

#[test]
fn headless_commands_take_onnx_files_and_import_writes_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let img = img.to_str().unwrap();
    let onnx = golden("resnet18_dynamo.onnx");
    let direct = ok(&["labels", img, "--model", &onnx, "--json"]);
    let out = dir.path().join("r18");
    let said = ok(&[
        "models",
        "import-onnx",
        &golden("resnet18.onnx"),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        said.contains("layer4.1") && said.contains("preprocessing"),
        "{said}"
    );
    let folder = ok(&["labels", img, "--model", out.to_str().unwrap(), "--json"]);
    // the two exporters' files and the edited-folder route agree on the classes
    let classes = |s: &str| -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_str(s).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|l| l["index"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(classes(&direct), classes(&folder));
    let spec = std::fs::read_to_string(out.join("model.toml")).unwrap();
    assert!(
        spec.contains("type = \"add\"") && spec.contains("inputs = ["),
        "{spec}"
    );
    // children, render and overview on a graph model
    let kids = ok(&[
        "children",
        img,
        "--model",
        &onnx,
        "--path",
        "layer4.1:0",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&kids).unwrap();
    assert_eq!(v[0]["blob"], "layer4.0", "{kids}");
    let png = dir.path().join("r.png");
    ok(&[
        "render",
        img,
        "--model",
        &onnx,
        "--path",
        "layer4.1:0/layer4.0:1",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(image::open(&png).is_ok());
    let ov = ok(&["overview", img, "--model", &onnx, "--json", "--top", "2"]);
    let v: serde_json::Value = serde_json::from_str(&ov).unwrap();
    assert_eq!(v.as_array().map(|a| a.len()), Some(10), "{ov}");
    let info = ok(&["models", "info", &onnx]);
    assert!(
        info.contains("a graph with branches") && info.contains("layer1.0"),
        "{info}"
    );
}

#[test]
fn bad_onnx_files_are_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let img = img.to_str().unwrap();
    let text = dir.path().join("notes.onnx");
    std::fs::write(&text, "this is not a model\n").unwrap();
    fails(
        &["labels", img, "--model", text.to_str().unwrap()],
        "not an ONNX model",
    );
    // truncated
    let bytes = std::fs::read(golden("resnet18.onnx")).unwrap();
    let cut = dir.path().join("cut.onnx");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    fails(
        &["labels", img, "--model", cut.to_str().unwrap()],
        "cut.onnx",
    );
    // external data missing
    let lone = dir.path().join("lone.onnx");
    std::fs::copy(golden("resnet18_dynamo.onnx"), &lone).unwrap();
    fails(
        &["labels", img, "--model", lone.to_str().unwrap()],
        "resnet18_dynamo.onnx.data",
    );
    // a blob that is not in the graph
    fails(
        &[
            "children",
            img,
            "--model",
            &golden("resnet18.onnx"),
            "--path",
            "layer9.9:0",
        ],
        "layer9.9",
    );
}

#[test]
fn a_state_dict_for_another_network_names_the_spec_it_looks_like() {
    let dir = tempfile::tempdir().unwrap();
    let img = image(dir.path());
    let o = run(&[
        "labels",
        img.to_str().unwrap(),
        "--model",
        "resnet50",
        "--weights",
        &golden("resnet18.pth"),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("resnet18.pth") && err.contains("look like the built-in spec `resnet18`"),
        "{err}"
    );
}
