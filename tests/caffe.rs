//! Caffe import: the mean is applied as Caffe applies it, the CLI writes a folder that
//! `--model` takes, and malformed files give errors that name the problem, never panics.
//! (That imported nets compute what PyTorch computes is in tests/golden.rs.)

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use treevis::model::WeightsSource;

fn caffe(f: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/caffe")
        .join(f)
}

fn import_err(deploy: &Path, weights: &Path, mean: Option<&Path>) -> String {
    let out = tempfile::tempdir().unwrap();
    match treevis::caffe::import(deploy, weights, mean, None, &out.path().join("m")) {
        Ok(_) => panic!("{} + {} imported", deploy.display(), weights.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_mean_is_centre_cropped_and_subtracted_in_bgr() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("net");
    let o = Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["models", "import-caffe"])
        .arg(caffe("deploy.prototxt"))
        .arg(caffe("net.caffemodel"))
        .arg("--mean")
        .arg(caffe("mean.binaryproto"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model =
        treevis::catalog::load(out.to_str().unwrap(), &WeightsSource::Default, &Device::Cpu)
            .unwrap();
    // a 227x227 image: no resizing, so the input is exactly BGR pixels minus the mean's
    // centre
    let img = image::RgbImage::from_fn(227, 227, |x, y| {
        image::Rgb([(x % 256) as u8, (y * 3 % 256) as u8, ((x + y) % 256) as u8])
    });
    let png = d.path().join("in.png");
    img.save(&png).unwrap();
    let got = treevis::data::preprocess(&model, &img)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let mean = treevis::data::npy::read_f32(&caffe("mean_expected.npy")).unwrap();
    assert_eq!(mean.shape, [3, 256, 256]);
    // as cnn_treevis crops it: `mean[:, 15:-14, 15:-14]` (odd margin rounded up)
    let off = (256 - 227_usize).div_ceil(2);
    for c in 0..3 {
        for y in 0..227 {
            for x in 0..227 {
                let px = img.get_pixel(x as u32, y as u32).0[2 - c] as f32;
                let m = mean.data[c * 256 * 256 + (y + off) * 256 + x + off];
                let g = got[c * 227 * 227 + y * 227 + x];
                assert!(
                    (g - (px - m)).abs() < 1e-3,
                    "c{c} y{y} x{x}: {g} vs {}",
                    px - m
                );
            }
        }
    }
    // the built-in caffenet spec takes a caffemodel as --weights directly (Caffe's names)
    let direct = Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["overview", "--model", "caffenet", "--top", "2", "--weights"])
        .arg(caffe("net_v1.caffemodel"))
        .arg(d.path().join("in.png"))
        .output()
        .unwrap();
    let via_import = Command::new(env!("CARGO_BIN_EXE_treevis"))
        .args(["overview", "--top", "2", "--model"])
        .arg(&out)
        .arg(d.path().join("in.png"))
        .output()
        .unwrap();
    // (the same weights; only the mean differs, so compare the blob names and channels' count)
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    assert!(via_import.status.success());
    assert_eq!(
        String::from_utf8_lossy(&direct.stdout).lines().count(),
        String::from_utf8_lossy(&via_import.stdout).lines().count()
    );
    // and every headless command runs on it
    for args in [
        vec!["labels"],
        vec!["render", "--path", "conv5:3/conv4:1"],
        vec!["children", "--path", "conv5:3"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_treevis"))
            .current_dir(d.path())
            .args(&args)
            .arg("--model")
            .arg(&out)
            .arg(&png)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn malformed_files_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let deploy = caffe("deploy.prototxt");
    let weights = caffe("net.caffemodel");
    let text = std::fs::read_to_string(&deploy).unwrap();
    let write = |name: &str, body: &[u8]| {
        let p = d.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // truncated and garbage caffemodels
    let bytes = std::fs::read(&weights).unwrap();
    for (name, body) in [
        ("cut.caffemodel", &bytes[..bytes.len() / 2]),
        ("garbage.caffemodel", &b"\xff\xff\xff\xff\x0f garbage"[..]),
        ("empty.caffemodel", &b""[..]),
    ] {
        let e = import_err(&deploy, &write(name, body), None);
        assert!(e.contains(name), "{e}");
    }
    // prototxt: syntax, unknown layer, a blob nobody writes, a Scale alone, a kernel given
    // twice, a 11x9 kernel for 11x11 weights, no input
    let cases = [
        (
            text.replacen("layer {", "layer {{", 1),
            ":7: expected a field name",
        ),
        (
            text.replace("type: \"LRN\"", "type: \"PReLU\""),
            "type `PReLU`, which treevis does not run",
        ),
        (
            text.replace("bottom: \"pool1\"", "bottom: \"nowhere\""),
            "reads `nowhere`, which no earlier layer writes",
        ),
        (
            text.replace("type: \"LRN\"", "type: \"Scale\""),
            "does not follow a BatchNorm",
        ),
        (
            text.replace("kernel_size: 11", "kernel_size: 11 kernel_h: 11"),
            "kernel_size takes one or two values, or both kernel_h and kernel_w",
        ),
        (
            text.replace("kernel_size: 11", "kernel_h: 11 kernel_w: 9"),
            "expected [out, 3, 11, 9]",
        ),
        (text.replace("input_dim", "# input_dim"), "no input shape"),
        (
            text.replace(
                "num_output: 16 kernel_size: 11",
                "num_output: x kernel_size: 11",
            ),
            "`num_output: x` is not a valid number",
        ),
    ];
    for (i, (bad, want)) in cases.iter().enumerate() {
        let e = import_err(
            &write(&format!("bad{i}.prototxt"), bad.as_bytes()),
            &weights,
            None,
        );
        assert!(e.contains(want), "case {i}: {e}");
        assert!(
            e.contains(&format!("bad{i}.prototxt")),
            "case {i} names the file: {e}"
        );
    }
    // weights that do not fit the deploy net
    let other = text.replace("name: \"conv3\"", "name: \"conv3x\"");
    let e = import_err(&write("renamed.prototxt", other.as_bytes()), &weights, None);
    assert!(e.contains("no weights for layer `conv3x`"), "{e}");
    // a mean of the wrong shape
    let e = import_err(&deploy, &weights, Some(&weights));
    assert!(
        e.contains("not a Caffe BlobProto") || e.contains("a mean is [1, 3, H, W]"),
        "{e}"
    );
}
