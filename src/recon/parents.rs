//! Parents of a neuron (reference section 9): the units of the blob above whose
//! reconstructions reach it most, for drilling up the hierarchy.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::batch::{self, Job, Start, Stop};
use super::{last_blob, resolve_path, top_k, Options, Path};
use crate::error::{Error, Result};
use crate::model::{transfer, ForwardState, Model, Net};

/// One parent of a neuron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    pub blob: String,
    pub channel: usize,
    /// `w_p = |mean_(y,x) a_c g_c|`, `g` the gradient of unit `p` seeded alone.
    pub weight: f32,
    /// `w_p / sum_q w_q` over every unit of the blob above.
    pub share: f32,
    /// The parent as a root path.
    pub path: Path,
}

/// Seeds per batched pass: each job keeps a gradient of the child blob's size.
const PARENTS_BATCH: usize = 128;

/// The blob whose children live in blob `b`, if any.
pub fn above(net: &Net, b: usize) -> Option<usize> {
    net.blobs.iter().position(|x| x.below == Some(b))
}

/// The top `k` parents of `path`'s last node `(b, c)`: every unit `p` of the blob above is
/// seeded alone and backpropagated to the gradient `g` at `b` (in batches that share the
/// sweep), weighted `|mean a_c g_c|`; units of weight 0 are not parents.
pub fn parents(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    path: &Path,
    k: usize,
) -> Result<Vec<Parent>> {
    let net = &model.net;
    let nodes = resolve_path(net, path)?;
    let b = last_blob(&nodes)?;
    let c = nodes[nodes.len() - 1].1;
    let u = above(net, b).ok_or_else(|| {
        Error::path(
            path,
            format!(
                "blob `{}` is the top of the tree: no blob above it has parents to show",
                net.blobs[b].name
            ),
        )
    })?;
    let blob = &net.blobs[b];
    let plane = blob.shape.plane();
    let a_c = super::channel_plane(net, state, img, b, c)?;
    let units = net.blobs[u].shape.channels();
    // a unit whose seed is 0 (inactive: its maximum is 0) sends no gradient: weight 0
    let top = &net.blobs[u];
    let maxima = state
        .output(top.layer, &top.name)?
        .get(img)?
        .reshape((units, top.shape.plane()))?
        .max(1)?;
    let maxima = transfer::download::<f32>(&maxima)?;
    let live: Vec<usize> = (0..units).filter(|&p| maxima[p] != 0.0).collect();
    let mut w = vec![0f32; units];
    for chunk in live.chunks(PARENTS_BATCH) {
        let jobs: Vec<Job> = chunk
            .iter()
            .map(|&p| Job {
                start: Start::Seed {
                    blob: u,
                    channel: p,
                },
                filters: vec![],
                stop: Stop::Blob(b),
            })
            .collect();
        // `|mean a_c g_c|` of every job on the device, read back as one number per unit
        let planes = batch::run(net, state, img, opts, &jobs)?
            .iter()
            .map(|o| Ok(o.grad.flatten_all()?.narrow(0, c * plane, plane)?))
            .collect::<Result<Vec<_>>>()?;
        let dots = Tensor::stack(&planes, 0)?
            .broadcast_mul(&a_c)?
            .sum(1)?
            .affine(1.0 / plane as f64, 0.0)?
            .abs()?;
        for (&p, v) in chunk.iter().zip(transfer::download::<f32>(&dots)?) {
            w[p] = v;
        }
    }
    let total: f64 = w.iter().map(|&v| v as f64).sum();
    let name = &net.blobs[u].name;
    Ok(top_k(&w, k)
        .into_iter()
        .filter(|&p| w[p] > 0.0)
        .map(|p| Parent {
            blob: name.clone(),
            channel: p,
            weight: w[p],
            share: if total > 0.0 {
                (w[p] as f64 / total) as f32
            } else {
                0.0
            },
            path: Path::root(name, p),
        })
        .collect())
}
