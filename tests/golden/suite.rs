// The golden suite, included by `tests/golden.rs` (the CPU kernels),
// `tests/golden_winograd.rs` (the CPU kernels with Winograd F(2x2, 3x3) and F(2x2, 5x5) on
// every convolution they take), `tests/golden_winograd6.rs` (the same with F(4x4, 3x3))
// and `tests/golden_generic.rs` (the tensor-op backend a GPU runs, on the CPU),
// each naming its `DEVICE` and `CONVS`: treevis against
// PyTorch autograd + Captum on the same weights. The fixtures in `tests/golden/` were
// written by the scripts beside this file (their headers say which torch/captum versions);
// the suite only reads them.
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use treevis::model::{Model, WeightsSource};
use treevis::recon::{self, MultMode, Options, Path, Rule};

/// The repository root: `TREEVIS_ROOT` when set (test binaries copied to another
/// machine), else where the crate was built.
fn root() -> PathBuf {
    std::env::var_os("TREEVIS_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

fn golden(name: &str) -> PathBuf {
    root().join("tests/golden").join(name)
}

/// `TREEVIS_TEST_DEVICE` (e.g. `cuda:0` in a build with the `cuda` feature), else the
/// including test's `DEVICE`.
fn device() -> treevis::model::Placement {
    let d = std::env::var("TREEVIS_TEST_DEVICE").unwrap_or_else(|_| DEVICE.into());
    treevis::model::parse_device(&d).unwrap()
}

/// max |a - b| / max |b|
fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    let a = a
        .flatten_all()
        .unwrap()
        .to_device(&Device::Cpu)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(a.len(), b.len(), "sizes differ");
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    if scale == 0.0 {
        diff
    } else {
        diff / scale
    }
}

struct Fixture {
    model: Model,
    refs: std::collections::HashMap<String, Tensor>,
    meta: serde_json::Value,
}

/// The fixture of `net`, on the spec and weights it was made with, or on `model`.
fn load(net: &str, model: Option<Model>) -> Fixture {
    let meta = meta(net);
    let spec = root().join(meta["model"].as_str().unwrap());
    let refs =
        candle_core::safetensors::load(golden(&format!("{net}.ref.safetensors")), &Device::Cpu)
            .unwrap();
    let mut model = model.unwrap_or_else(|| {
        treevis::catalog::load(
            spec.to_str().unwrap(),
            &WeightsSource::File(golden(&format!("{net}.weights.safetensors"))),
            device(),
        )
        .unwrap()
    });
    assert_eq!(model.net.backend, device().backend, "{net}: the backend under test");
    model.net.convs = CONVS;
    let input = &refs["input"];
    let (h, w) = (input.dims()[1], input.dims()[2]);
    if [h, w] != model.spec().input.size {
        model.net = model.net.resized(h, w).unwrap();
    }
    Fixture { model, refs, meta }
}

/// A fixture's `NAME.ref.json`.
fn meta(net: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(golden(&format!("{net}.ref.json"))).unwrap())
        .unwrap()
}

/// A fixture's tree blobs, top first.
fn want_blobs(meta: &serde_json::Value) -> Vec<&str> {
    meta["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect()
}

fn opts(v: &serde_json::Value) -> Options {
    Options {
        rule: v["rule"].as_str().unwrap().parse::<Rule>().unwrap(),
        mult: match v["mult_mode"].as_str().unwrap() {
            "auto" => MultMode::Auto,
            "manual" => MultMode::Manual,
            m => panic!("mode {m}"),
        },
    }
}

fn check(net: &str) {
    check_fixture(net, load(net, None));
}

fn check_fixture(net: &str, f: Fixture) {
    let state = f
        .model
        .net
        .forward(&f.refs["input"].unsqueeze(0).unwrap())
        .unwrap();
    // every blob
    for b in &f.model.net.blobs {
        let ours = state.outputs[b.layer].get(0).unwrap();
        let e = rel_err(&ours, &f.refs[&format!("blob/{}", b.name)]);
        assert!(e <= 1e-4, "{net}: blob {} differs by {e:e}", b.name);
    }
    // labels
    let top5: Vec<usize> = recon::labels(&f.model, &state, 0, 5)
        .unwrap()
        .iter()
        .map(|l| l.index)
        .collect();
    let want: Vec<usize> = f.meta["top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(top5, want, "{net}: top-5");
    // reconstructions, all cases of one option set in one batched pass
    let cases = f.meta["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    let mut by_opts: std::collections::BTreeMap<String, Vec<&serde_json::Value>> =
        Default::default();
    for c in cases {
        by_opts.entry(format!("{:?}", opts(c))).or_default().push(c);
    }
    let mut worst = 0f32;
    for group in by_opts.values() {
        let o = opts(group[0]);
        let paths: Vec<Path> = group
            .iter()
            .map(|c| c["path"].as_str().unwrap().parse().unwrap())
            .collect();
        let out = recon::reconstruct(&f.model, &state, 0, &o, &paths).unwrap();
        for (c, r) in group.iter().zip(out) {
            let want = &f.refs[c["key"].as_str().unwrap()];
            let e = rel_err(&r.grad, want);
            worst = worst.max(e);
            assert!(e <= 1e-4, "{net}: {} {:?} differs by {e:e}", c["path"], o);
        }
    }
    // children: identical order, same weights
    for c in f.meta["children"].as_array().unwrap() {
        let p: Path = c["path"].as_str().unwrap().parse().unwrap();
        let k = c["k"].as_u64().unwrap() as usize;
        let ours = recon::children(&f.model, &state, 0, &opts(c), std::slice::from_ref(&p), k)
            .unwrap()
            .remove(0);
        let want = c["children"].as_array().unwrap();
        assert_eq!(ours.len(), want.len());
        for (o, w) in ours.iter().zip(want) {
            assert_eq!(
                o.blob,
                w["blob"].as_str().unwrap(),
                "{net}: children of {p}"
            );
            assert_eq!(
                o.channel as u64,
                w["channel"].as_u64().unwrap(),
                "{net}: children order of {p}"
            );
            let ww = w["weight"].as_f64().unwrap() as f32;
            assert!(
                (o.weight - ww).abs() <= 1e-4 * ww.abs().max(1e-6),
                "{net}: weight of {}: {} vs {ww}",
                o.path,
                o.weight
            );
        }
    }
    eprintln!(
        "{net}: {} reconstructions, worst relative error {worst:e}",
        cases.len()
    );
}

#[test]
fn tiny_matches_pytorch() {
    check("tiny");
}

#[test]
fn caffenet_matches_pytorch() {
    check("caffenet");
}

#[test]
fn alexnet_matches_pytorch() {
    check("alexnet");
}

/// The same CaffeNet in Caffe's own files (written by tests/caffe/make_caffe.py with the
/// Python protobuf package, current and V1 formats), imported: PyTorch's numbers again.
#[test]
fn imported_caffe_files_match_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let caffe = root().join("tests/caffe");
    for (deploy, weights) in [
        ("deploy.prototxt", "net.caffemodel"),
        ("deploy_v1.prototxt", "net_v1.caffemodel"),
        ("deploy.prototxt", "net_v1.caffemodel"),
    ] {
        let out = dir.path().join(format!("{deploy}-{weights}"));
        treevis::caffe::import(
            &caffe.join(deploy),
            &caffe.join(weights),
            Some(&caffe.join("mean.binaryproto")),
            None,
            &out,
        )
        .unwrap();
        let model =
            treevis::catalog::load(out.to_str().unwrap(), &WeightsSource::Default, device())
                .unwrap();
        assert_eq!(
            model
                .spec()
                .blobs
                .iter()
                .map(|b| b.mult)
                .collect::<Vec<_>>(),
            [1000.0, 4096.0, 400.0, 40.0, 40.0, 20.0, 4.0, 1.0],
            "cnn_treevis's multipliers for CaffeNet"
        );
        check_fixture("caffenet", load("caffenet", Some(model)));
    }
}

/// A torchvision graph's fixture (tests/golden/make_golden_graph.py) on the built-in spec
/// of the same name with the fixture's `.pth` state dict.
fn load_graph_pth(net: &str, spec: Option<treevis::model::Spec>) -> Fixture {
    let meta = meta(net);
    // a spec given as a file, written as TOML and read back
    let dir = tempfile::tempdir().unwrap();
    let name = match spec {
        Some(s) => {
            let f = dir.path().join("model.toml");
            std::fs::write(&f, s.to_toml().unwrap()).unwrap();
            f.to_str().unwrap().to_string()
        }
        None => meta["model"].as_str().unwrap().to_string(),
    };
    let model = treevis::catalog::load(
        &name,
        &WeightsSource::File(root().join(meta["pth"].as_str().unwrap())),
        device(),
    )
    .unwrap();
    let blobs: Vec<&str> = model.net.blobs.iter().map(|b| b.name.as_str()).collect();
    let want = want_blobs(&meta);
    assert_eq!(blobs, want, "{net}: tree blobs");
    load(net, Some(model))
}

#[test]
fn resnet18_pth_matches_pytorch() {
    check_fixture("resnet18", load_graph_pth("resnet18", None));
}

#[test]
fn mobilenet_v2_pth_matches_pytorch() {
    // the fixture is torchvision's width 0.25, where features.1 has a residual connection
    let spec = treevis::model::zoo::mobilenet_v2_spec(0.25);
    check_fixture("mobilenet_v2", load_graph_pth("mobilenet_v2", Some(spec)));
}

/// The same fixtures through the ONNX files PyTorch's two exporters wrote (TorchScript:
/// BN folded, weights inline; dynamo: opset 20, weights in `.onnx.data`, ReduceMean
/// pooling, module paths in node metadata): the same tree blobs, the same numbers.
fn check_onnx(net: &str) {
    let meta = meta(net);
    let want = want_blobs(&meta);
    for f in meta["onnx"].as_array().unwrap() {
        let file = root().join(f.as_str().unwrap());
        let model =
            treevis::catalog::load(file.to_str().unwrap(), &WeightsSource::Default, device())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let blobs: Vec<&str> = model.net.blobs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(blobs, want, "{}: tree blobs", file.display());
        check_fixture(net, load(net, Some(model)));
    }
}

#[test]
fn resnet18_onnx_matches_pytorch() {
    check_onnx("resnet18");
}

#[test]
fn mobilenet_v2_onnx_matches_pytorch() {
    check_onnx("mobilenet_v2");
}

#[test]
fn squeezenet1_1_matches_pytorch() {
    check_fixture("squeezenet1_1", load_graph_pth("squeezenet1_1", None));
    check_onnx("squeezenet1_1");
}

#[test]
fn googlenet_matches_pytorch() {
    check_fixture("googlenet", load_graph_pth("googlenet", None));
    check_onnx("googlenet");
}

#[test]
fn densenet121_matches_pytorch() {
    check_fixture("densenet121", load_graph_pth("densenet121", None));
    check_onnx("densenet121");
}

/// A file in other exporters' style (tests/golden/make_golden_graph.py writes it with the
/// onnx package from PyTorch weights): weights as Constant nodes, BatchNorm unfolded,
/// hard-swish and GELU spelled out in elementwise ops, a Shape->Gather->Unsqueeze->Concat
/// ->Reshape flatten, MatMul + Add, a final Softmax, opset 13, no module paths.
#[test]
fn foreign_style_onnx_matches_pytorch() {
    check_onnx("foreign");
}

/// A net of the ops other exporters' models bring (tests/golden/make_golden_graph.py
/// `opsnet`, weights as Constant nodes, opset 13, a 32x28 input): Sub and Div by per-channel
/// constants, a zero Pad folded into a 3x5 stride-(1,2) Conv, a per-channel PRelu, a
/// depthwise 3x1 Conv padded only below, a squeeze-and-excitation Mul of two activations, a
/// constant layer scale on the left, AveragePool without the padding in its divisor, a
/// 2x3 MaxPool padded left and right, Gemm(transB), Div of the logits by a temperature.
#[test]
fn other_exporters_ops_match_pytorch() {
    check_onnx("opsnet");
}

/// The reduced ResNet-18 written as a Caffe net (tests/caffe/make_caffe_resnet.py, from the
/// fixture's `.pth`): branches joined by an Eltwise SUM, BatchNorm + Scale in place with
/// Caffe's scaled running statistics, FLOOR-rounded max pooling, a final Softmax. Imported
/// by `treevis models import-caffe`, it gives PyTorch's numbers and the same tree blobs.
#[test]
fn imported_caffe_resnet_matches_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let caffe = root().join("tests/caffe");
    let out = dir.path().join("r18");
    treevis::caffe::import(
        &caffe.join("resnet18_deploy.prototxt"),
        &caffe.join("resnet18.caffemodel"),
        None,
        None,
        &out,
    )
    .unwrap();
    let model =
        treevis::catalog::load(out.to_str().unwrap(), &WeightsSource::Default, device()).unwrap();
    let meta = meta("resnet18");
    let blobs: Vec<&str> = model.net.blobs.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(blobs, want_blobs(&meta), "tree blobs");
    check_fixture("resnet18", load("resnet18", Some(model)));
}

/// `tests/golden/hierarchy.ref.json` (make_golden_hierarchy.py): signed children, shares,
/// parents, per-edge terms and ablation of one fixture against PyTorch.
fn check_hierarchy(net: &str, f: Fixture) {
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(golden("hierarchy.ref.json")).unwrap())
            .unwrap();
    let cases = &all["nets"][net];
    let state = f
        .model
        .net
        .forward(&f.refs["input"].unsqueeze(0).unwrap())
        .unwrap();
    let close = |ours: f32, want: f64, scale: f64, what: &str| {
        assert!(
            (ours as f64 - want).abs() <= 1e-4 * scale.max(1e-9),
            "{net}: {what}: {ours} vs {want}"
        );
    };
    let mut checked = (0, 0, 0, 0);
    for c in cases["children"].as_array().unwrap() {
        let p: Path = c["path"].as_str().unwrap().parse().unwrap();
        for sign in recon::Sign::ALL {
            let want = c[sign.name()].as_array().unwrap();
            let r = recon::Ranking {
                k: 5,
                sign,
                via: true,
            };
            let ours =
                recon::children_ranked(&f.model, &state, 0, &opts(c), std::slice::from_ref(&p), &r)
                    .unwrap()
                    .remove(0);
            assert_eq!(ours.len(), want.len(), "{net}: {sign} children of {p}");
            let scale = want
                .iter()
                .map(|w| w["value"].as_f64().unwrap().abs())
                .fold(0.0, f64::max);
            for (o, w) in ours.iter().zip(want) {
                assert_eq!(o.blob, c["blob"].as_str().unwrap());
                assert_eq!(
                    o.channel as u64,
                    w["channel"].as_u64().unwrap(),
                    "{net}: {sign} order of the children of {p}"
                );
                close(
                    o.value,
                    w["value"].as_f64().unwrap(),
                    scale,
                    "signed weight",
                );
                close(o.share, w["share"].as_f64().unwrap(), 1.0, "share");
                assert_eq!(o.weight, o.value.abs());
                match w.get("via") {
                    // a residual block: its first convolution is the branch, the other
                    // consumer (the Add, or the downsampling convolution) the skip
                    Some(via) => {
                        assert_eq!(o.via.len(), 2, "{net}: edges of {}: {:?}", o.path, o.via);
                        for e in &o.via {
                            let kind = if e.edge.ends_with("conv1") {
                                "branch"
                            } else {
                                "skip"
                            };
                            assert_eq!(e.skip, kind == "skip", "{net}: {e:?}");
                            close(e.value, via[kind].as_f64().unwrap(), scale, &e.edge);
                        }
                        let sum: f32 = o.via.iter().map(|e| e.value).sum();
                        close(sum, o.value as f64, scale, "the edges' sum");
                        checked.2 += 1;
                    }
                    None => assert!(o.via.is_empty(), "{net}: a chain has one edge"),
                }
            }
            checked.0 += 1;
        }
    }
    for c in cases["parents"].as_array().unwrap() {
        let p: Path = c["path"].as_str().unwrap().parse().unwrap();
        let ours = recon::parents(&f.model, &state, 0, &opts(c), &p, 5).unwrap();
        let want = c["parents"].as_array().unwrap();
        assert_eq!(ours.len(), want.len(), "{net}: parents of {p}");
        let scale = want[0]["weight"].as_f64().unwrap();
        for (o, w) in ours.iter().zip(want) {
            assert_eq!(o.blob, c["blob"].as_str().unwrap());
            assert_eq!(
                o.channel as u64,
                w["channel"].as_u64().unwrap(),
                "{net}: parents order of {p}"
            );
            close(
                o.weight,
                w["weight"].as_f64().unwrap(),
                scale,
                "parent weight",
            );
            close(o.share, w["share"].as_f64().unwrap(), 1.0, "parent share");
            // both ways agree: a parent's weight is the node's weight among its children
            let last = p.last();
            let all = f.model.net.blobs[f.model.net.blob_index(&last.blob).unwrap()]
                .shape
                .channels();
            let kids = recon::children(
                &f.model,
                &state,
                0,
                &opts(c),
                std::slice::from_ref(&o.path),
                all,
            )
            .unwrap()
            .remove(0);
            let me = kids.iter().find(|k| k.channel == last.channel).unwrap();
            close(
                me.weight,
                o.weight as f64,
                scale,
                "a parent's weight as a child's",
            );
        }
        checked.1 += 1;
    }
    for c in cases["ablate"].as_array().unwrap() {
        let p: Path = c["path"].as_str().unwrap().parse().unwrap();
        let want = c["children"].as_array().unwrap();
        let blob = c["blob"].as_str().unwrap();
        let mut kids: Vec<recon::Child> = want
            .iter()
            .map(|w| {
                let j = w["channel"].as_u64().unwrap() as usize;
                recon::Child {
                    blob: blob.into(),
                    channel: j,
                    weight: 0.0,
                    path: p.child(blob, j),
                    value: 0.0,
                    share: 0.0,
                    via: vec![],
                    drop: None,
                }
            })
            .collect();
        recon::ablate(&f.model, &state, 0, &p, &mut kids).unwrap();
        let scale = want
            .iter()
            .map(|w| w["drop"].as_f64().unwrap().abs())
            .fold(0.0, f64::max);
        for (o, w) in kids.iter().zip(want) {
            close(o.drop.unwrap(), w["drop"].as_f64().unwrap(), scale, "drop");
        }
        checked.3 += 1;
    }
    assert!(
        checked.0 >= 6 && checked.1 >= 2 && checked.3 >= 1,
        "{checked:?}"
    );
    eprintln!(
        "{net}: {} rankings, {} parent lists, {} children with edges, {} ablations agree",
        checked.0, checked.1, checked.2, checked.3
    );
}

#[test]
fn hierarchy_alexnet_matches_pytorch() {
    check_hierarchy("alexnet", load("alexnet", None));
}

#[test]
fn hierarchy_resnet18_matches_pytorch() {
    check_hierarchy("resnet18", load_graph_pth("resnet18", None));
}

/// The sanity check's similarities against scikit-image's SSIM and SciPy's Spearman
/// (tests/golden/make_golden_similarity.py).
#[test]
fn similarities_match_scikit_image_and_scipy() {
    let want = meta("similarity").clone();
    let img = |n: &str| image::open(golden(n)).unwrap().to_rgb8();
    let (a, b) = (img("similarity_a.png"), img("similarity_b.png"));
    let ssim = recon::similarity::ssim(&a, &b);
    assert!(
        (ssim as f64 - want["ssim"].as_f64().unwrap()).abs() < 1e-5,
        "ssim {ssim} vs {}",
        want["ssim"]
    );
    assert!((recon::similarity::ssim(&a, &a) - 1.0).abs() < 1e-6);
    let sums = |i: &image::RgbImage| -> Vec<f32> {
        i.pixels()
            .map(|p| p.0.iter().map(|&v| v as f32).sum())
            .collect()
    };
    let rho = recon::similarity::spearman(&sums(&a), &sums(&b));
    assert!(
        (rho as f64 - want["spearman"].as_f64().unwrap()).abs() < 1e-5,
        "spearman {rho} vs {}",
        want["spearman"]
    );
}
