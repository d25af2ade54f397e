//! The tensor-op backend stays on its device: on `cpu-generic` (the code a GPU runs) a
//! forward pass and a batched backward pass make no host copies beyond what they must
//! (counted by `treevis::model::transfer`, per thread): no download inside a forward pass,
//! one read-back of a few numbers per backward sweep, and analyses (children, parents,
//! ablation) read back numbers, never an activation map.

use candle_core::{Device, Tensor};
use treevis::model::transfer::{counts, Counts};
use treevis::model::{Model, Placement, WeightsSource};
use treevis::recon::{self, MultMode, Options, Path, Rule};

/// The net at a small input size (the zoo's at 96 px), so that the test runs in seconds.
fn load(spec: &str, place: Placement) -> Model {
    let mut m = treevis::catalog::load(spec, &WeightsSource::Random(1), place).unwrap();
    if m.spec().input.size[0] > 96
        && !m
            .net
            .spec
            .layers
            .iter()
            .any(|l| l.kind.type_name() == "linear")
    {
        m.net = m.net.resized(96, 96).unwrap();
    }
    m
}

fn input(m: &Model) -> Tensor {
    let treevis::model::Shape::Spatial { h, w, .. } = m.net.input else {
        unreachable!("nets take images")
    };
    Tensor::rand(0f32, 1.0, (2, 3, h, w), &Device::Cpu).unwrap()
}

/// What `f` transferred on this thread.
fn during<T>(f: impl FnOnce() -> T) -> (T, Counts) {
    let before = counts();
    let out = f();
    (out, counts() - before)
}

/// A path of depth two under the most active unit of the top conv blob, and its children.
fn paths(m: &Model, state: &treevis::model::ForwardState) -> Vec<Path> {
    let rows = recon::overview(m, state, 0, 2).unwrap();
    let mut out = recon::overview_paths(&rows);
    let deep = rows
        .iter()
        .find(|r| {
            m.net
                .blobs
                .iter()
                .any(|b| b.name == r.blob && b.below.is_some() && b.shape.plane() > 1)
        })
        .unwrap();
    let root = Path::root(&deep.blob, deep.units[0].channel);
    let kids = recon::children(m, state, 0, &opts(), std::slice::from_ref(&root), 2).unwrap();
    out.extend(kids[0].iter().map(|c| c.path.clone()));
    out
}

fn opts() -> Options {
    Options {
        rule: Rule::Guided,
        mult: MultMode::Auto,
    }
}

#[test]
fn passes_stay_on_the_device() {
    // chains with LRN, residual, branching and depthwise nets
    for spec in [
        "demo",
        "caffenet",
        "demo-resnet",
        "squeezenet1_1",
        "mobilenet_v2",
    ] {
        let m = load(spec, Placement::cpu_generic());
        let x = input(&m);
        // the first pass builds the backend's constants (window tables: uploads)
        let state = m.net.forward(&x).unwrap();
        let ps = paths(&m, &state);
        recon::reconstruct(&m, &state, 0, &opts(), &ps).unwrap();

        let (state, fwd) = during(|| m.net.forward(&x).unwrap());
        assert_eq!(fwd, Counts::default(), "{spec}: forward pass transfers");

        let (out, bwd) = during(|| recon::reconstruct(&m, &state, 1, &opts(), &ps).unwrap());
        assert_eq!(out.len(), ps.len());
        assert_eq!(bwd.downloads, 1, "{spec}: one read-back per sweep");
        // one number per start and per filter: seeds' activations and filters' masses
        assert!(
            bwd.download_bytes <= 4 * 2 * ps.len() as u64,
            "{spec}: {bwd:?}"
        );
        // row indices and filter channels only
        assert!(bwd.upload_bytes <= 64 * ps.len() as u64, "{spec}: {bwd:?}");
        assert!(out
            .iter()
            .all(|r| r.grad.device().same_device(&m.net.device)));

        // an analysis reads back numbers, never a map of the blob it ranks
        let root = ps.last().unwrap().clone();
        let largest_map = m.net.blobs.iter().map(|b| b.shape.numel()).max().unwrap() as u64 * 4;
        let (_, kids) =
            during(|| recon::children(&m, &state, 0, &opts(), std::slice::from_ref(&root), 5));
        assert!(
            kids.download_bytes < largest_map,
            "{spec}: children {kids:?}"
        );
        let (_, par) = during(|| recon::parents(&m, &state, 0, &opts(), &root, 3).unwrap());
        assert!(par.download_bytes < largest_map, "{spec}: parents {par:?}");
        eprintln!(
            "{spec}: forward {fwd:?}\n  backward {bwd:?}\n  children {kids:?}\n  parents {par:?}"
        );
    }
}

/// The counter sees the CPU kernels read their tensors on the host: what makes the zero
/// above a measurement rather than a counter that never moves.
#[test]
fn the_cpu_kernels_read_on_the_host() {
    let m = load("demo", Placement::cpu());
    let x = input(&m);
    let (_, fwd) = during(|| m.net.forward(&x).unwrap());
    assert!(fwd.downloads > 0 && fwd.uploads > 0, "{fwd:?}");
}
