//! Training a network from its spec on the generated demo images: the true gradient of
//! every layer (the `gradient` rule of the same backward the reconstructions use, with each
//! image's own state), weight gradients as `im2col`/`gemm` products, softmax cross-entropy,
//! and candle-nn's AdamW on the weights.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;

use crate::data::synth;
use crate::error::{Error, Result};
use crate::model::kernels::{self, MatRef};
use crate::model::net::{host_vec, with_host, ForwardState, Layer, Net, Shape};
use crate::model::rule::Rule;
use crate::model::spec::Spec;
use crate::model::weights::{self, TensorMap};

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub seed: u64,
    pub steps: usize,
    pub batch: usize,
    /// Peak learning rate (cosine decay to 2% of it).
    pub lr: f64,
    pub weight_decay: f64,
}

/// What one step reports.
#[derive(Debug, Clone, Copy)]
pub struct StepStats {
    pub step: usize,
    pub loss: f32,
    /// Accuracy on the step's batch (training mode).
    pub acc: f32,
}

/// Per layer: the gradients of its weights and biases (`None` for layers without any).
pub type ParamGrads = Vec<Option<(Vec<f32>, Vec<f32>)>>;

/// Weight and bias gradients of every conv/linear layer (in layer order), backpropagating
/// `dtop` (the loss gradient at the output of layer `top`) with each image's own state,
/// through chains and graphs alike (where a tensor feeds several layers, their gradients
/// are summed). Layers holding other weights (an unfolded BatchNorm) are an error.
pub fn param_grads(
    net: &Net,
    state: &ForwardState,
    top: usize,
    dtop: Tensor,
) -> Result<ParamGrads> {
    let mut out: ParamGrads = vec![None; net.layers.len()];
    // per tensor (0: the input, i + 1: layer i's output): the gradient gathered so far
    let mut pending: Vec<Option<Tensor>> = vec![None; net.layers.len() + 1];
    pending[top + 1] = Some(dtop);
    for i in (0..=top).rev() {
        let Some(g) = pending[i + 1].take() else {
            continue; // the layer does not lead to the top
        };
        let x = state.tensor(net.inputs[i][0]);
        if x.elem_count() == 0 {
            return Err(Error::Input(
                "weight gradients need every layer's input: run Net::forward_full or forward_train"
                    .into(),
            ));
        }
        match &net.layers[i] {
            Layer::Conv(c) => out[i] = Some(conv_grads(net, i, c, x, &g)?),
            Layer::Linear(l) => out[i] = Some(linear_grads(l, x, &g)?),
            Layer::Affine { .. } => {
                return Err(Error::Input(format!(
                    "training does not update BatchNorm layers (`{}`); train without BatchNorm",
                    net.spec.layers[i].name
                )))
            }
            _ => {}
        }
        if net.inputs[i].iter().all(|&t| t == 0) {
            continue; // nothing to pass below the input
        }
        let grads = net.backward_node(i, state, None, &g, Rule::Gradient)?;
        for (&t, gt) in net.inputs[i].iter().zip(grads) {
            if t > 0 {
                pending[t] = Some(match pending[t].take() {
                    Some(p) => (p + gt)?,
                    None => gt,
                });
            }
        }
    }
    Ok(out)
}

/// Weight and bias gradients of a linear layer for input rows `x` and output gradient `g`.
fn linear_grads(
    l: &crate::model::net::Linear,
    x: &Tensor,
    g: &Tensor,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (n, fout) = (g.dims()[0], g.dims()[1]);
    let fin = l.w.dims()[1];
    let gv = host_vec(g)?;
    let xv = host_vec(&x.reshape((n, fin))?)?;
    let mut dw = vec![0f32; fout * fin];
    kernels::sgemm(
        &mut dw,
        fout,
        fin,
        n,
        MatRef::transposed(&gv, fout),
        MatRef::rows(&xv, fin),
        false,
    );
    let mut db = vec![0f32; fout];
    for r in 0..n {
        for (d, v) in db.iter_mut().zip(&gv[r * fout..(r + 1) * fout]) {
            *d += v;
        }
    }
    Ok((dw, db))
}

fn conv_grads(
    net: &Net,
    i: usize,
    c: &crate::model::net::Conv,
    x: &Tensor,
    g: &Tensor,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (
        Shape::Spatial { c: cin, h, w },
        Shape::Spatial {
            c: cout,
            h: oh,
            w: ow,
        },
    ) = (net.shape_at(net.inputs[i][0]), net.shapes[i])
    else {
        unreachable!("conv shapes are spatial")
    };
    let n = x.dims()[0];
    let geo = crate::model::net::geom(c, net.shape_at(net.inputs[i][0]), net.shapes[i]);
    let ohw = oh * ow;
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let kk = cin_g * geo.window();
    let chunk = crate::model::net::images_per_product(kk, ohw, n);
    let mut dw = vec![0f32; cout * kk];
    let gv = host_vec(g)?;
    with_host(x, |xs| {
        for i0 in (0..n).step_by(chunk) {
            let m = chunk.min(n - i0);
            for grp in 0..c.groups {
                let cols = kernels::im2col(
                    &xs[(i0 * cin + grp * cin_g) * h * w..],
                    m,
                    cin * h * w,
                    cin_g,
                    &geo,
                );
                let gg = kernels::gather_group(
                    &gv,
                    i0..i0 + m,
                    cout,
                    grp * cout_g..(grp + 1) * cout_g,
                    ohw,
                );
                let dst = &mut dw[grp * cout_g * kk..(grp + 1) * cout_g * kk];
                kernels::sgemm(
                    dst,
                    cout_g,
                    kk,
                    m * ohw,
                    MatRef::rows(&gg, m * ohw),
                    MatRef::transposed(&cols, m * ohw),
                    true,
                );
            }
        }
    })?;
    let db: Vec<f32> = (0..cout)
        .into_par_iter()
        .map(|o| {
            (0..n)
                .map(|r| gv[(r * cout + o) * ohw..][..ohw].iter().sum::<f32>())
                .sum()
        })
        .collect();
    Ok((dw, db))
}

/// Softmax cross-entropy of `logits` (`[n, classes]`) against `labels`: loss, accuracy and
/// the gradient at the logits.
pub fn softmax_xent(logits: &[f32], labels: &[usize], classes: usize) -> (f32, f32, Vec<f32>) {
    let n = labels.len();
    let mut grad = vec![0f32; n * classes];
    let (mut loss, mut correct) = (0f64, 0usize);
    for (r, &y) in labels.iter().enumerate() {
        let row = &logits[r * classes..(r + 1) * classes];
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
        let s: f32 = e.iter().sum();
        loss -= ((e[y] / s) as f64).ln();
        let arg = (0..classes)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap_or(0);
        correct += (arg == y) as usize;
        for k in 0..classes {
            grad[r * classes + k] = (e[k] / s - (k == y) as u8 as f32) / n as f32;
        }
    }
    ((loss / n as f64) as f32, correct as f32 / n as f32, grad)
}

/// A preprocessed batch of demo images `[n, 3, S, S]` with their classes.
pub fn demo_batch(
    spec: &Spec,
    seed: u64,
    indices: std::ops::Range<u64>,
) -> Result<(Tensor, Vec<usize>)> {
    let items: Vec<(Vec<f32>, usize)> = indices
        .into_par_iter()
        .map(|i| {
            let (img, class) = synth::generate(seed, i);
            Ok((crate::data::preprocess_vec(&spec.input, None, &img)?, class))
        })
        .collect::<Result<_>>()?;
    let n = items.len();
    let [h, w] = spec.input.size;
    let mut v = Vec::with_capacity(n * 3 * h * w);
    let mut labels = Vec::with_capacity(n);
    for (x, c) in items {
        v.extend_from_slice(&x);
        labels.push(c);
    }
    Ok((Tensor::from_vec(v, (n, 3, h, w), &Device::Cpu)?, labels))
}

/// Accuracy of `net` on demo images `indices` of `seed` (forward only, batches of 64).
pub fn evaluate(net: &Net, seed: u64, indices: std::ops::Range<u64>) -> Result<f32> {
    let top = net.blobs[0].layer;
    let classes = net.blobs[0].shape.channels();
    let (mut correct, mut total) = (0usize, 0usize);
    let mut i = indices.start;
    while i < indices.end {
        let j = (i + 64).min(indices.end);
        let (x, labels) = demo_batch(&net.spec, seed, i..j)?;
        let s = net.forward_until(&x, top)?;
        let logits = host_vec(&s.outputs[top])?;
        for (r, &y) in labels.iter().enumerate() {
            let row = &logits[r * classes..(r + 1) * classes];
            let arg = (0..classes)
                .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                .unwrap_or(0);
            correct += (arg == y) as usize;
        }
        total += labels.len();
        i = j;
    }
    Ok(correct as f32 / total.max(1) as f32)
}

/// Trains `spec` from deterministic random weights on generated demo images; training
/// images are indices `0..steps*batch` of `opts.seed`. Calls `on_step` after every step.
pub fn train(
    spec: &Spec,
    opts: &TrainOptions,
    mut on_step: impl FnMut(&StepStats),
) -> Result<TensorMap> {
    let init = weights::random_weights(spec, opts.seed)?;
    let mut names: Vec<String> = init.keys().cloned().collect();
    names.sort();
    let vars: Vec<(String, Var)> = names
        .iter()
        .map(|n| Ok((n.clone(), Var::from_tensor(&init[n])?)))
        .collect::<Result<_>>()?;
    let shared: TensorMap = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let mut net = Net::build(
        spec.clone(),
        shared,
        &Device::Cpu,
        std::path::Path::new("training"),
    )?;
    // the optimiser updates the shared `Var`s in place
    net.convs = crate::model::net::ConvPath::Direct;
    let classes = net.blobs[0].shape.channels();
    if classes != synth::CLASSES.len() {
        return Err(Error::Shape(format!(
            "the top blob has {classes} units but the demo data has {} classes",
            synth::CLASSES.len()
        )));
    }
    let top = net.blobs[0].layer;
    let params = ParamsAdamW {
        lr: opts.lr,
        weight_decay: opts.weight_decay,
        ..Default::default()
    };
    let mut opt = AdamW::new(vars.iter().map(|(_, v)| v.clone()).collect(), params)?;
    // which layer each variable belongs to
    let owner: Vec<(usize, bool)> = names
        .iter()
        .map(|n| {
            let (layer, kind) = n.rsplit_once('.').unwrap_or((n, ""));
            let li = spec.layer_index(layer).ok_or_else(|| Error::Spec {
                origin: spec.name.clone(),
                msg: format!(
                    "training needs weight names `<layer>.weight`/`.bias`; `{n}` names no layer"
                ),
            })?;
            Ok((li, kind == "weight"))
        })
        .collect::<Result<_>>()?;
    let batch = opts.batch as u64;
    for step in 0..opts.steps {
        let t = step as f64 / opts.steps.max(1) as f64;
        opt.set_learning_rate(
            opts.lr * (0.02 + 0.98 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())),
        );
        let (x, labels) = demo_batch(
            spec,
            opts.seed,
            step as u64 * batch..(step as u64 + 1) * batch,
        )?;
        let state = net.forward_train(
            &x,
            opts.seed ^ (step as u64).wrapping_mul(0x51_7CC1_B727_220A),
        )?;
        let logits = host_vec(&state.outputs[top])?;
        let (loss, acc, dl) = softmax_xent(&logits, &labels, classes);
        if !loss.is_finite() {
            return Err(Error::Input(format!(
                "training diverged at step {step} (loss {loss}); lower --lr"
            )));
        }
        let dtop = Tensor::from_vec(dl, (labels.len(), classes), &Device::Cpu)?;
        let grads = param_grads(&net, &state, top, dtop)?;
        let mut store = Tensor::zeros((), DType::F32, &Device::Cpu)?.backward()?;
        for ((_, var), &(li, is_w)) in vars.iter().zip(&owner) {
            let (dw, db) = grads[li].as_ref().ok_or_else(|| {
                crate::error::Error::internal("a parameter layer without its gradient")
            })?;
            let g = if is_w { dw } else { db };
            store.insert(
                var.as_tensor(),
                Tensor::from_vec(g.clone(), var.shape(), &Device::Cpu)?,
            );
        }
        opt.step(&store)?;
        on_step(&StepStats { step, loss, acc });
    }
    Ok(vars
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect())
}
