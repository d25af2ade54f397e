//! The `gradient` rule is the true gradient: on a graph that uses every op with a
//! backward (residual adds, concatenations, an unfolded BatchNorm, every activation of
//! reference section 8 and a per-channel PReLU, pooling with and without the padding in the
//! divisor, depthwise, dilated and non-square convolutions with uneven padding, and
//! broadcasting sub, div and mul of activations and constants, a squeeze-and-excitation
//! gate among them), a reconstruction under
//! `gradient` equals central finite differences of the forward pass (float64 sums of a
//! float32 net, so the bar is loose: 2% of the gradient's range).

use candle_core::{Device, Tensor};
use treevis::model::{weights, LoadedSpec, Model, Spec, WeightsSource};
use treevis::recon::{self, MultMode, Options, Path, Rule};

const SPEC: &str = r#"
name = "opzoo"
[input]
size = [12, 12]
color = "rgb"
scale = 1.0
mean = [0.0, 0.0, 0.0]

# an exporter's normalisation inside the graph: (x - mean) / std per channel
[[layers]]
name = "norm_sub"
type = "sub"
constant = "right"
[[layers]]
name = "norm_div"
type = "div"
constant = "right"
# a 2x3 kernel, padded 0 above, 1 below and 1 on each side: 12x12 stays 12x12
[[layers]]
name = "stem"
type = "conv"
out = 6
kernel = [2, 3]
pad = [0, 1, 1, 1]
[[layers]]
name = "stem_act"
type = "leaky_relu"
alpha = 0.1

# a residual block: branch (depthwise conv, BN, hardswish, conv) + skip
[[layers]]
name = "dw"
type = "conv"
kernel = 3
pad = 2
dilation = 2
depthwise = true
out = 6
[[layers]]
name = "dw_bn"
type = "batchnorm"
[[layers]]
name = "dw_act"
type = "hardswish"
[[layers]]
name = "dw_prelu"
type = "prelu"
[[layers]]
name = "pw"
type = "conv"
out = 6
kernel = 1
bias_term = false
# a per-channel layer scale (constant on the left), divided by a positive gate of the skip
[[layers]]
name = "ls"
type = "mul"
constant = "left"
[[layers]]
name = "skip_gate"
type = "sigmoid"
inputs = ["stem_act"]
[[layers]]
name = "skip_gate_shift"
type = "add"
constant = "right"
[[layers]]
name = "ratio"
type = "div"
inputs = ["ls", "skip_gate_shift"]
[[layers]]
name = "sum"
type = "add"
inputs = ["ratio", "stem_act"]
# a BatchNorm that cannot be folded (after an add)
[[layers]]
name = "sum_bn"
type = "batchnorm"
[[layers]]
name = "block"
type = "silu"
# squeeze and excitation: the block scaled by a per-channel gate of its mean
[[layers]]
name = "se_pool"
type = "adaptive_avgpool"
output = [1, 1]
[[layers]]
name = "se_fc"
type = "conv"
out = 6
kernel = 1
[[layers]]
name = "se_gate"
type = "hardsigmoid"
[[layers]]
name = "se"
type = "mul"
inputs = ["block", "se_gate"]

# an inception-like split: three branches concatenated
[[layers]]
name = "b1"
type = "conv"
out = 4
kernel = 1
inputs = ["se"]
[[layers]]
name = "b1_act"
type = "gelu"
[[layers]]
name = "b2"
type = "conv"
out = 3
kernel = 3
pad = 1
inputs = ["se"]
[[layers]]
name = "b2_act"
type = "clip"
min = 0.0
max = 0.8
[[layers]]
name = "b3"
type = "avgpool"
kernel = 3
pad = 1
count_include_pad = false
inputs = ["se"]
[[layers]]
name = "b3_act"
type = "tanh"
[[layers]]
name = "cat"
type = "concat"
inputs = ["b1_act", "b2_act", "b3_act"]
[[layers]]
name = "gate"
type = "sigmoid"
[[layers]]
name = "pool"
type = "maxpool"
kernel = 2
stride = 2
[[layers]]
name = "hs"
type = "hardsigmoid"
[[layers]]
name = "gap"
type = "adaptive_avgpool"
output = [2, 2]
[[layers]]
name = "flat"
type = "flatten"
[[layers]]
name = "drop"
type = "dropout"
[[layers]]
name = "same"
type = "identity"
[[layers]]
name = "fc"
type = "linear"
out = 5

[[blobs]]
name = "fc"
layer = "fc"
[[blobs]]
name = "cat"
layer = "cat"
[[blobs]]
name = "block"
layer = "block"
"#;

fn model() -> Model {
    let spec = Spec::from_toml(SPEC, "opzoo").unwrap();
    let mut w = weights::random_weights(&spec, 7).unwrap();
    // constants and slopes that differ per channel (random weights give scalars)
    let t = |v: &[f32], dims: &[usize]| Tensor::from_vec(v.to_vec(), dims, &Device::Cpu).unwrap();
    w.insert("norm_sub.constant".into(), t(&[0.1, -0.2, 0.3], &[3, 1, 1]));
    w.insert("norm_div.constant".into(), t(&[0.5, 2.0, 1.25], &[3, 1, 1]));
    w.insert(
        "dw_prelu.weight".into(),
        t(&[0.1, 0.3, -0.2, 0.5, 0.0, 0.8], &[6]),
    );
    w.insert(
        "ls.constant".into(),
        t(&[1.5, -0.5, 0.7, 1.0, 2.0, 0.3], &[6, 1, 1]),
    );
    w.insert("skip_gate_shift.constant".into(), t(&[0.5], &[1]));
    let loaded = LoadedSpec { spec, dir: None };
    Model::from_parts(loaded, w, "random:7".into(), None, &Device::Cpu).unwrap()
}

fn input(seed: u64) -> Vec<f32> {
    let mut r = weights::SplitMix::new(seed);
    (0..3 * 12 * 12).map(|_| r.next_sym()).collect()
}

fn forward(m: &Model, x: &[f32]) -> treevis::model::ForwardState {
    let t = Tensor::from_vec(x.to_vec(), (1, 3, 12, 12), &Device::Cpu).unwrap();
    m.net.forward_full(&t).unwrap()
}

fn blob_value(m: &Model, x: &[f32], blob: &str, flat_index: usize) -> f64 {
    let s = forward(m, x);
    let b = &m.net.blobs[m.net.blob_index(blob).unwrap()];
    let v = s.outputs[b.layer]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    v[flat_index] as f64
}

#[test]
fn gradient_rule_matches_finite_differences_through_every_op() {
    let m = model();
    // the BN after the add stays an affine layer; the one after the depthwise conv folds
    let kinds: Vec<&str> = m
        .net
        .spec
        .layers
        .iter()
        .map(|l| l.kind.type_name())
        .collect();
    assert!(kinds.contains(&"concat") && kinds.contains(&"add"));
    let x = input(3);
    let state = forward(&m, &x);
    let opts = Options {
        rule: Rule::Gradient,
        mult: MultMode::Auto,
    };
    let mut checked = 0;
    for (blob, channel) in [("fc", 2usize), ("cat", 1), ("cat", 9), ("block", 1)] {
        let p: Path = format!("{blob}:{channel}").parse().unwrap();
        let r = recon::reconstruct(&m, &state, 0, &opts, std::slice::from_ref(&p))
            .unwrap()
            .remove(0);
        let g = r.grad.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        // the seed: mult * activation at the channel's argmax, after the blob's activation
        let bi = m.net.blob_index(blob).unwrap();
        let (idx, act) = recon::argmax_in_channel(&m.net, &state, 0, bi, channel).unwrap();
        let b = &m.net.blobs[bi];
        // the seed sits at the blob's pre-activation for blobs on an activation
        let pre = b.tap != b.layer + 1;
        let range = g.iter().fold(0f32, |a, v| a.max(v.abs()));
        assert!(range > 0.0, "{blob}: zero gradient");
        for k in (0..g.len()).step_by(23) {
            // several steps: a kink (a max-pool switch, a clip bound) near the input spoils
            // one step's difference, a wrong gradient spoils them all
            let mut best = f64::INFINITY;
            let mut seen = vec![];
            for h in [1e-2f32, 3e-3, 1e-3] {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp[k] += h;
                xm[k] -= h;
                let fd = if pre {
                    // the seed sits at the activation's input
                    let read = |xs: &[f32]| {
                        forward(&m, xs)
                            .tensor(b.tap)
                            .flatten_all()
                            .unwrap()
                            .to_vec1::<f32>()
                            .unwrap()[idx] as f64
                    };
                    (read(&xp) - read(&xm)) / (2.0 * h as f64)
                } else {
                    (blob_value(&m, &xp, blob, idx) - blob_value(&m, &xm, blob, idx))
                        / (2.0 * h as f64)
                };
                let want = fd * (b.mult * act) as f64;
                best = best.min((g[k] as f64 - want).abs());
                seen.push(want);
            }
            assert!(
                best <= 0.02 * range as f64,
                "{blob}:{channel} input {k}: {} vs finite differences {seen:?} (range {range})",
                g[k]
            );
            checked += 1;
        }
    }
    assert!(checked > 50);
}

#[test]
fn a_blob_inside_a_branch_is_refused() {
    let text = SPEC.replace(
        "name = \"block\"\nlayer = \"block\"",
        "name = \"b1\"\nlayer = \"b1_act\"",
    );
    let spec = Spec::from_toml(&text, "opzoo").unwrap();
    let w = weights::random_weights(&spec, 7).unwrap();
    let e = Model::from_parts(
        LoadedSpec { spec, dir: None },
        w,
        "r".into(),
        None,
        &Device::Cpu,
    )
    .err()
    .expect("refused")
    .to_string();
    assert!(e.contains("b1") && e.contains("branch"), "{e}");
    let _ = WeightsSource::Default;
}
