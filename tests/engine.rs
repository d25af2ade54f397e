//! Engine properties on the committed tiny net: `.pth` loading, the `gradient` rule against
//! finite differences of the real forward pass, batched passes equal to one-at-a-time ones,
//! and linearity in the seed.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use treevis::model::{Model, WeightsSource};
use treevis::recon::{self, MultMode, Options, Path, Rule};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn tiny() -> Model {
    treevis::catalog::load("tiny", &WeightsSource::Default, &Device::Cpu).unwrap()
}

fn input() -> Tensor {
    let refs =
        candle_core::safetensors::load(golden("tiny.ref.safetensors"), &Device::Cpu).unwrap();
    refs["input"].clone()
}

fn vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn pth_weights_equal_safetensors_weights() {
    let a = treevis::model::weights::read_weights(&golden("tiny.weights.safetensors")).unwrap();
    let b = treevis::model::weights::read_weights(&golden("tiny.pth")).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert_eq!(vec(t), vec(&b[k]), "{k}");
    }
    // and the model built from it computes the same labels
    let m = treevis::catalog::load(
        "tiny",
        &WeightsSource::File(golden("tiny.pth")),
        &Device::Cpu,
    )
    .unwrap();
    let s = m.net.forward(&input().unsqueeze(0).unwrap()).unwrap();
    let s0 = tiny().net.forward(&input().unsqueeze(0).unwrap()).unwrap();
    assert_eq!(
        vec(s.outputs.last().unwrap()),
        vec(s0.outputs.last().unwrap())
    );
}

/// The legacy (pre-1.6) format of the 2017 torchvision checkpoints, with a transposed
/// (non-contiguous) tensor and one pickled through PyTorch 0.3's `_rebuild_tensor`.
#[test]
fn legacy_pth_weights_equal_safetensors_weights() {
    let a = treevis::model::weights::read_weights(&golden("tiny.weights.safetensors")).unwrap();
    let b = treevis::model::weights::read_weights(&golden("tiny_legacy.pth")).unwrap();
    assert_eq!(a.len(), b.len());
    for (k, t) in &a {
        assert_eq!(t.dims(), b[k].dims(), "{k}");
        assert_eq!(vec(t), vec(&b[k]), "{k}");
    }
    // truncated anywhere: an error, not a panic
    let bytes = std::fs::read(golden("tiny_legacy.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [20, bytes.len() / 3, bytes.len() - 5] {
        let p = dir.path().join(format!("cut{cut}.pth"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = treevis::model::weights::read_weights(&p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("legacy PyTorch .pth"), "{cut}: {e}");
    }
}

#[test]
fn a_pickle_that_would_run_code_is_refused() {
    let _ = std::fs::remove_file("/tmp/treevis-pwned");
    let e = treevis::model::weights::read_weights(&golden("evil.pth"));
    assert!(e.is_err(), "evil.pth loaded");
    assert!(
        !std::path::Path::new("/tmp/treevis-pwned").exists(),
        "the pickle ran code"
    );
}

/// Root-only reconstructions under the `gradient` rule are the true gradient of the seeded
/// element times its seed (`mult * activation`): compare with central differences of the
/// forward pass at the pixels with the largest gradient.
#[test]
fn gradient_rule_matches_finite_differences() {
    let m = tiny();
    let x = input();
    let s = m.net.forward(&x.unsqueeze(0).unwrap()).unwrap();
    let opts = Options {
        rule: Rule::Gradient,
        mult: MultMode::Auto,
    };
    for blob in ["fc6", "fc5", "conv3", "conv1"] {
        let bi = m.net.blob_index(blob).unwrap();
        let b = &m.net.blobs[bi];
        let rows = recon::overview(&m, &s, 0, 1).unwrap();
        let ch = rows.iter().find(|r| r.blob == blob).unwrap().units[0].channel;
        let (idx, act0) = recon::argmax_in_channel(&m.net, &s, 0, bi, ch).unwrap();
        let g =
            vec(&recon::reconstruct(&m, &s, 0, &opts, &[Path::root(blob, ch)]).unwrap()[0].grad);
        // the piecewise-linear pieces: ReLU signs and max-pool switches
        let pieces = |st: &treevis::model::ForwardState| -> (Vec<bool>, Vec<Vec<u32>>) {
            let mut signs = Vec::new();
            for (i, l) in m.spec().layers.iter().enumerate() {
                if l.kind.type_name() == "relu" {
                    signs.extend(vec(&st.outputs[i]).iter().map(|v| *v > 0.0));
                }
            }
            (
                signs,
                st.switches
                    .iter()
                    .flatten()
                    .map(|k| k.to_host().unwrap())
                    .collect(),
            )
        };
        let base = pieces(&s);
        let eval = |xv: &[f32]| {
            let t = Tensor::from_vec(xv.to_vec(), x.dims(), &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let st = m.net.forward(&t).unwrap();
            // the seed is `mult * activation`: the reconstruction is d(seed * unit)/d(input)
            (
                (vec(&st.outputs[b.layer])[idx] * b.mult * act0) as f64,
                pieces(&st),
            )
        };
        let x0 = vec(&x);
        let mut order: Vec<usize> = (0..g.len()).collect();
        order.sort_by(|&i, &j| g[j].abs().total_cmp(&g[i].abs()));
        // large enough to rise above float32 noise; the pieces check keeps it honest
        let eps = 5e-3f32;
        let mut checked = 0;
        for &i in order.iter().take(40) {
            let (mut xp, mut xm) = (x0.clone(), x0.clone());
            xp[i] += eps;
            xm[i] -= eps;
            let ((vp, pp), (vm, pm)) = (eval(&xp), eval(&xm));
            if pp != base || pm != base {
                continue; // a ReLU or a switch flips within eps: not differentiable here
            }
            let num = (vp - vm) / (2.0 * eps as f64);
            let err = (num - g[i] as f64).abs() / (g[i].abs() as f64).max(1e-3);
            assert!(
                err < 2e-2,
                "{blob}:{ch} pixel {i}: numeric {num} vs analytic {}",
                g[i]
            );
            checked += 1;
        }
        assert!(checked >= 8, "{blob}: only {checked} smooth pixels");
    }
}

/// A batched pass (all paths and children together, shared prefixes) gives exactly what
/// one pass per path gives.
#[test]
fn batched_equals_one_at_a_time() {
    let m = tiny();
    let s = m.net.forward(&input().unsqueeze(0).unwrap()).unwrap();
    let paths: Vec<Path> = [
        "fc6:1",
        "fc6:1/fc5:22",
        "fc6:1/fc5:22/conv4:8",
        "conv4:3/conv3:1",
        "conv4:3/conv3:2",
        "conv2:5",
        "conv1:0",
        "conv4:3",
    ]
    .iter()
    .map(|p| p.parse().unwrap())
    .collect();
    for rule in Rule::ALL {
        for mult in [MultMode::Auto, MultMode::Manual] {
            let opts = Options { rule, mult };
            let batched = recon::reconstruct(&m, &s, 0, &opts, &paths).unwrap();
            for (p, b) in paths.iter().zip(&batched) {
                let single = recon::reconstruct(&m, &s, 0, &opts, std::slice::from_ref(p))
                    .unwrap()
                    .remove(0);
                let (a, c) = (vec(&b.grad), vec(&single.grad));
                let scale = c.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-30);
                let diff = a
                    .iter()
                    .zip(&c)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    diff / scale < 1e-5,
                    "{p} {rule:?} {mult:?}: {}",
                    diff / scale
                );
            }
            // expand (children + their reconstructions from the shared gradient) equals
            // children followed by separate reconstructions
            let root: Path = "conv4:3".parse().unwrap();
            let ex = recon::expand(&m, &s, 0, &opts, &root, 3).unwrap();
            let kids = recon::children(&m, &s, 0, &opts, std::slice::from_ref(&root), 3)
                .unwrap()
                .remove(0);
            assert_eq!(ex.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>(), kids);
            for (c, r) in &ex {
                let single = recon::reconstruct(&m, &s, 0, &opts, std::slice::from_ref(&c.path))
                    .unwrap()
                    .remove(0);
                let (a, b) = (vec(&r.grad), vec(&single.grad));
                let scale = b.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-30);
                assert!(
                    a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 * scale),
                    "{}",
                    c.path
                );
            }
        }
    }
}

#[test]
fn reconstructions_are_linear_in_the_multiplier_and_inactive_roots_say_so() {
    let m = tiny();
    let s = m.net.forward(&input().unsqueeze(0).unwrap()).unwrap();
    let opts = Options::default();
    // find a conv channel that never fires on this image, if any, else skip that half
    let rows = recon::overview(&m, &s, 0, 64).unwrap();
    let dead = rows
        .iter()
        .flat_map(|r| r.units.iter().map(move |u| (r.blob.clone(), u.clone())))
        .find(|(_, u)| u.activation == 0.0);
    if let Some((blob, u)) = dead {
        let r = recon::reconstruct(&m, &s, 0, &opts, &[Path::root(&blob, u.channel)])
            .unwrap()
            .remove(0);
        assert!(vec(&r.grad).iter().all(|v| *v == 0.0));
        assert!(r.note.unwrap().contains("not active"));
    }
    // a filter at a channel with no gradient gives zeros and a note, never NaN
    let kids = recon::children(&m, &s, 0, &opts, &["conv4:3".parse().unwrap()], 16)
        .unwrap()
        .remove(0);
    if let Some(zero) = kids.iter().find(|c| c.weight == 0.0) {
        let r = recon::reconstruct(&m, &s, 0, &opts, std::slice::from_ref(&zero.path))
            .unwrap()
            .remove(0);
        assert!(vec(&r.grad).iter().all(|v| v.is_finite()));
    }
    // seed multiplier scales the raw gradient linearly (root-only)
    let mut spec_m = treevis::model::LoadedSpec::resolve("tiny").unwrap().spec;
    spec_m.blobs.iter_mut().for_each(|b| b.mult *= 3.0);
    let text = toml::to_string(&spec_m).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tiny3.toml");
    std::fs::write(&f, text).unwrap();
    let m3 = treevis::catalog::load(
        f.to_str().unwrap(),
        &WeightsSource::File(golden("tiny.weights.safetensors")),
        &Device::Cpu,
    )
    .unwrap();
    let p = Path::root("conv3", 1);
    let a = vec(&recon::reconstruct(&m, &s, 0, &opts, std::slice::from_ref(&p)).unwrap()[0].grad);
    let b = vec(&recon::reconstruct(&m3, &s, 0, &opts, std::slice::from_ref(&p)).unwrap()[0].grad);
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| (3.0 * x - y).abs() <= 1e-5 * 3.0 * scale));
}

/// Weight gradients of the trainer against finite differences of the cross-entropy loss,
/// for a conv (grouped, dilated), an LRN-fed conv and a linear layer of the tiny net.
#[test]
fn training_gradients_match_finite_differences() {
    use treevis::model::weights::read_weights;
    use treevis::train::{param_grads, softmax_xent};
    let base = read_weights(&golden("tiny.weights.safetensors")).unwrap();
    let spec = treevis::model::LoadedSpec::resolve("tiny").unwrap().spec;
    let refs =
        candle_core::safetensors::load(golden("tiny.ref.safetensors"), &Device::Cpu).unwrap();
    // a batch of two images: the fixture input and a scaled copy
    let x0 = refs["input"].unsqueeze(0).unwrap();
    let x = Tensor::cat(&[&x0, &(&x0 * 0.7).unwrap()], 0).unwrap();
    let labels = [3usize, 7];
    let build = |map: &treevis::model::weights::TensorMap| {
        treevis::model::Net::build(
            spec.clone(),
            map.clone(),
            &Device::Cpu,
            std::path::Path::new("t"),
        )
        .unwrap()
    };
    let net = build(&base);
    let top = net.blobs[0].layer;
    let loss_and_pieces = |net: &treevis::model::Net| {
        let s = net.forward(&x).unwrap();
        let (loss, _, _) = softmax_xent(&vec(&s.outputs[top]), &labels, 10);
        let mut signs = Vec::new();
        for (i, l) in net.spec.layers.iter().enumerate() {
            if l.kind.type_name() == "relu" {
                signs.extend(vec(&s.outputs[i]).iter().map(|v| *v > 0.0));
            }
        }
        (loss as f64, signs, switches_of(&s))
    };
    let s = net.forward_full(&x).unwrap();
    let (_, _, dl) = softmax_xent(&vec(&s.outputs[top]), &labels, 10);
    let grads = param_grads(
        &net,
        &s,
        top,
        Tensor::from_vec(dl, (2, 10), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let (_, bsigns, bsw) = loss_and_pieces(&net);
    let mut checked = 0;
    for (layer, li) in [("conv1", 0usize), ("conv2", 4), ("conv4", 9), ("fc5", 14)] {
        assert_eq!(spec.layers[li].name, layer);
        let (dw, db) = grads[li].as_ref().unwrap();
        let w = vec(&base[&format!("{layer}.weight")]);
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by(|&i, &j| dw[j].abs().total_cmp(&dw[i].abs()));
        for &k in order.iter().take(6) {
            let eps = 2e-3f32;
            let mut lp = [0f64; 2];
            let mut smooth = true;
            for (si, sgn) in [1.0f32, -1.0].iter().enumerate() {
                let mut map = base.clone();
                let mut wv = w.clone();
                wv[k] += sgn * eps;
                map.insert(
                    format!("{layer}.weight"),
                    Tensor::from_vec(wv, base[&format!("{layer}.weight")].dims(), &Device::Cpu)
                        .unwrap(),
                );
                let (l, signs, sw) = loss_and_pieces(&build(&map));
                smooth &= signs == bsigns && sw == bsw;
                lp[si] = l;
            }
            if !smooth {
                continue;
            }
            let num = (lp[0] - lp[1]) / (2.0 * eps as f64);
            let err = (num - dw[k] as f64).abs() / (dw[k].abs() as f64).max(1e-4);
            assert!(
                err < 5e-2,
                "{layer} weight {k}: numeric {num} vs analytic {}",
                dw[k]
            );
            checked += 1;
        }
        // bias: the gradient of a bias is the sum of its output gradient
        assert!(db.iter().any(|v| *v != 0.0), "{layer}: zero bias gradient");
    }
    assert!(checked >= 12, "only {checked} smooth checks");
}

/// Weight gradients of the trainer on a graph (demo-resnet: residual adds, a strided 1x1
/// projection beside a 3x3 branch) against finite differences of the cross-entropy loss:
/// where a tensor feeds both a block's branch and its skip, the two gradients are summed.
#[test]
fn training_gradients_through_a_residual_graph_match_finite_differences() {
    use treevis::model::weights::random_weights;
    use treevis::train::{demo_batch, param_grads, softmax_xent};
    let spec = treevis::model::LoadedSpec::resolve("demo-resnet")
        .unwrap()
        .spec;
    let base = random_weights(&spec, 11).unwrap();
    let build = |map: &treevis::model::weights::TensorMap| {
        treevis::model::Net::build(
            spec.clone(),
            map.clone(),
            &Device::Cpu,
            std::path::Path::new("t"),
        )
        .unwrap()
    };
    let net = build(&base);
    assert!(!net.is_chain());
    let top = net.blobs[0].layer;
    let (x, labels) = demo_batch(&spec, 3, 0..2).unwrap();
    let loss_and_switches = |net: &treevis::model::Net| {
        let s = net.forward_full(&x).unwrap();
        let (loss, _, _) = softmax_xent(&vec(&s.outputs[top]), &labels, 11);
        (loss as f64, switches_of(&s))
    };
    let s = net.forward_full(&x).unwrap();
    let (_, _, dl) = softmax_xent(&vec(&s.outputs[top]), &labels, 11);
    let grads = param_grads(
        &net,
        &s,
        top,
        Tensor::from_vec(dl, (2, 11), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let (_, bsw) = loss_and_switches(&net);
    let mut checked = 0;
    // conv1 and layer1.conv1 sit below a fan-out (maxpool feeds layer1's branch and skip;
    // layer1.relu feeds layer2's branch and projection)
    for layer in [
        "conv1",
        "layer1.conv1",
        "layer2.downsample",
        "layer3.conv2",
        "fc",
    ] {
        let li = net.spec.layer_index(layer).unwrap();
        let (dw, db) = grads[li].as_ref().unwrap();
        let w = vec(&base[&format!("{layer}.weight")]);
        let mut order: Vec<usize> = (0..w.len()).collect();
        order.sort_by(|&i, &j| dw[j].abs().total_cmp(&dw[i].abs()));
        for &k in order.iter().take(4) {
            let eps = 1e-3f32;
            let mut lp = [0f64; 2];
            let mut same_switches = true;
            for (si, sgn) in [1.0f32, -1.0].iter().enumerate() {
                let mut map = base.clone();
                let mut wv = w.clone();
                wv[k] += sgn * eps;
                let dims = base[&format!("{layer}.weight")].dims().to_vec();
                map.insert(
                    format!("{layer}.weight"),
                    Tensor::from_vec(wv, dims, &Device::Cpu).unwrap(),
                );
                let (l, sw) = loss_and_switches(&build(&map));
                same_switches &= sw == bsw;
                lp[si] = l;
            }
            if !same_switches {
                continue;
            }
            let num = (lp[0] - lp[1]) / (2.0 * eps as f64);
            let err = (num - dw[k] as f64).abs() / (dw[k].abs() as f64).max(1e-4);
            assert!(
                err < 5e-2,
                "{layer} weight {k}: numeric {num} vs analytic {}",
                dw[k]
            );
            checked += 1;
        }
        assert!(db.iter().any(|v| *v != 0.0), "{layer}: zero bias gradient");
    }
    assert!(
        checked >= 12,
        "only {checked} checks with unchanged pooling switches"
    );
}

/// The inference forward (a feature-cache scan) gives the same blobs as the backward-ready
/// one, keeps none of the rest, and refuses a backward pass with a clear error.
#[test]
fn an_inference_forward_keeps_the_blobs_only() {
    let m = treevis::catalog::load("demo-resnet", &WeightsSource::Default, &Device::Cpu).unwrap();
    let (x, _) = treevis::train::demo_batch(m.spec(), 5, 0..3).unwrap();
    let full = m.net.forward(&x).unwrap();
    let lean = m.net.forward_blobs(&x).unwrap();
    // `forward_full` keeps every output, so no layer is merged into another there; the
    // other two run a residual Add's convolution onto its other term where they keep
    // nothing between them (the same sum, rounded in another order)
    let all = m.net.forward_full(&x).unwrap();
    for b in &m.net.blobs {
        let want = vec(all.output(b.layer, &b.name).unwrap());
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (pass, s) in [("backward-ready", &full), ("inference", &lean)] {
            let got = vec(s.output(b.layer, &b.name).unwrap());
            assert_eq!(got.len(), want.len());
            let d = want
                .iter()
                .zip(&got)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(d <= 1e-5 * scale, "{pass} {}: {d} of {scale}", b.name);
        }
    }
    let kept =
        |s: &treevis::model::ForwardState| s.outputs.iter().filter(|t| t.elem_count() > 0).count();
    assert!(
        kept(&lean) < kept(&full),
        "{} vs {}",
        kept(&lean),
        kept(&full)
    );
    assert!(lean.switches.iter().all(Option::is_none));
    let p: Path = "layer2:0".parse().unwrap();
    let opts = Options {
        rule: Rule::Guided,
        mult: MultMode::Auto,
    };
    let e = recon::reconstruct(&m, &lean, 0, &opts, &[p])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("forward_blobs"), "{e}");
}

/// A forward state's max-pool switches, in host memory.
fn switches_of(s: &treevis::model::ForwardState) -> Vec<Option<Vec<u32>>> {
    s.switches
        .iter()
        .map(|k| k.as_ref().map(|k| k.to_host().unwrap()))
        .collect()
}

/// Batched passes that fail as on a full GPU are halved and retried: every job of the
/// batch is answered with what an unhindered scheduler answers (reconstructions to within
/// a level of round-off), later batches start at the size that worked, and a device on
/// which not even one row fits answers the jobs with an error that says so, and lives on.
#[test]
fn failed_allocations_halve_the_engines_batches_and_every_job_is_answered() {
    use treevis::engine::{JobKey, Output, Scheduler};
    use treevis::memory::{Faults, Stage};
    use treevis::recon::display::Display;
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("a.png");
    treevis::data::pattern_image(40, 40).save(&img).unwrap();
    let recon = |p: &str| JobKey::Recon {
        image: img.clone(),
        path: p.parse().unwrap(),
        opts: Options::default(),
        display: Display::Norm,
    };
    let kids = |p: &str| JobKey::Children {
        image: img.clone(),
        path: p.parse().unwrap(),
        opts: Options::default(),
        rank: recon::Ranking::abs(3),
        ablate: false,
    };
    let mut keys: Vec<JobKey> = (0..7).map(|c| recon(&format!("conv3:{c}"))).collect();
    keys.extend((0..5).map(|c| kids(&format!("conv4:{c}"))));
    let run = |s: &mut Scheduler| {
        assert!(s.want(keys.clone()).is_empty());
        let mut out = Vec::new();
        while s.has_work() {
            out.extend(s.step());
        }
        out
    };
    let mut plain = Scheduler::new(tiny(), 1 << 20);
    assert!(
        plain.max_batch >= 12,
        "the tiny net's rows fit: {}",
        plain.max_batch
    );
    let want = run(&mut plain);
    let faults = Faults::default().above(Stage::Rows, 3);
    let mut s = Scheduler::new(tiny(), 1 << 20).with_faults(faults.clone());
    let got = run(&mut s);
    assert!(faults.fired(Stage::Rows) > 0);
    assert_eq!(s.max_batch, 3, "7 halved to 3, and kept");
    // the reconstructions in one step (three passes), then the children in groups of 3
    assert_eq!((plain.status.batches, s.status.batches), (2, 3));
    assert_eq!(got.len(), keys.len());
    for (k, o) in &got {
        let (_, w) = want.iter().find(|(wk, _)| wk == k).unwrap();
        match (o, w) {
            (Output::Image(a), Output::Image(b)) => {
                assert_eq!(a.dimensions(), b.dimensions());
                let most = a.iter().zip(b.iter()).map(|(x, y)| x.abs_diff(*y)).max();
                assert!(most <= Some(1), "{k:?}: {most:?}");
            }
            (Output::Children(a), Output::Children(b)) => {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(x.path, y.path, "{k:?}");
                    assert!((x.weight - y.weight).abs() <= 1e-4 * y.weight.abs().max(1.0));
                }
            }
            other => panic!("{k:?}: {other:?}"),
        }
    }
    // not even one row fits: answered as failed, and the scheduler goes on
    let mut s =
        Scheduler::new(tiny(), 1 << 20).with_faults(Faults::default().above(Stage::Rows, 0));
    let labels = JobKey::Labels { image: img.clone() };
    s.want(vec![recon("conv3:1"), recon("conv3:2"), labels.clone()]);
    let mut out = Vec::new();
    while s.has_work() {
        out.extend(s.step());
    }
    assert_eq!(out.len(), 3);
    for (k, o) in &out {
        match o {
            Output::Failed(m) => {
                assert!(
                    k != &labels && m.contains("out of memory even for one gradient row"),
                    "{m}"
                )
            }
            Output::Labels(_) => assert_eq!(k, &labels),
            other => panic!("{k:?}: {other:?}"),
        }
    }
}
