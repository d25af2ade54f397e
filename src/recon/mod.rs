//! Reconstructions, children and overviews (sections 3-5 of the reconstruction reference) and
//! labels of one image's forward state: the API every front end calls. Pure numerics.

pub mod batch;
pub mod children;
pub mod display;
pub mod parents;
pub mod path;
pub mod sanity;
pub mod similarity;
pub mod tree;

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

pub use batch::{Job, Outcome, Start, Stop};
pub use children::{
    ablate, check_children_path, children, children_ranked, expand, Child, EdgeTerm, Ranking, Sign,
};
pub use parents::{parents, Parent};
pub use path::{Node, Path};

use crate::error::{Error, Result};
pub use crate::model::rule::Rule;
use crate::model::{transfer, ForwardState, Model, Net, Shape};

/// How a filtered gradient is rescaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MultMode {
    /// `sum|g| / sum|g[c]|`: the filtered gradient keeps the unfiltered one's magnitude.
    #[default]
    Auto,
    /// The blob's multiplier from the spec.
    Manual,
}

impl MultMode {
    pub fn name(self) -> &'static str {
        match self {
            MultMode::Auto => "auto",
            MultMode::Manual => "manual",
        }
    }
}

/// Options every reconstruction takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Options {
    pub rule: Rule,
    pub mult: MultMode,
}

impl Options {
    /// `guided auto`: the rule and the multiplier mode, as captions show them.
    pub fn caption(&self) -> String {
        format!("{} {}", self.rule.name(), self.mult.name())
    }
}

/// The blob of a resolved path's last node.
pub(crate) fn last_blob(nodes: &[(usize, usize)]) -> Result<usize> {
    nodes
        .last()
        .map(|n| n.0)
        .ok_or_else(|| Error::internal("an empty resolved path"))
}

/// A path resolved against a net: `(blob index, channel)` per node.
pub fn resolve_path(net: &Net, path: &Path) -> Result<Vec<(usize, usize)>> {
    if path.is_empty() {
        return Err(Error::path(path, "empty path"));
    }
    let mut out = Vec::with_capacity(path.len());
    for node in path.nodes() {
        let bi = net.blob_index(&node.blob).ok_or_else(|| {
            let names: Vec<_> = net.blobs.iter().map(|b| b.name.as_str()).collect();
            Error::path(
                path,
                format!(
                    "unknown blob `{}` (blobs of {}: {})",
                    node.blob,
                    net.spec.name,
                    names.join(", ")
                ),
            )
        })?;
        let n = net.blobs[bi].shape.channels();
        if node.channel >= n {
            return Err(Error::path(
                path,
                format!(
                    "channel {} is out of range: blob `{}` has {n} channels (0..{})",
                    node.channel,
                    node.blob,
                    n - 1
                ),
            ));
        }
        if let Some(&(prev, _)) = out.last() as Option<&(usize, usize)> {
            if net.blobs[bi].tap >= net.blobs[prev].tap {
                return Err(Error::path(
                    path,
                    format!(
                        "`{}` is not below `{}`: a path goes down the net",
                        node.blob, net.blobs[prev].name
                    ),
                ));
            }
        }
        out.push((bi, node.channel));
    }
    Ok(out)
}

/// Channel `channel` of blob `blob` for image `img`, flattened (`[plane]`), on the device.
pub(crate) fn channel_plane(
    net: &Net,
    state: &ForwardState,
    img: usize,
    blob: usize,
    channel: usize,
) -> Result<Tensor> {
    let b = &net.blobs[blob];
    let plane = b.shape.plane();
    Ok(state
        .output(b.layer, &b.name)?
        .get(img)?
        .flatten_all()?
        .narrow(0, channel * plane, plane)?)
}

/// The first maximum of a channel, as one-element device tensors: its index in the plane
/// (`u32`) and its value.
pub(crate) fn seed_at(
    net: &Net,
    state: &ForwardState,
    img: usize,
    blob: usize,
    channel: usize,
) -> Result<(Tensor, Tensor)> {
    let act = channel_plane(net, state, img, blob, channel)?;
    crate::model::tensorops::first_max(&net.cache, &act)
}

/// Index (within the blob of one image) and value of channel `channel`'s maximum: the
/// spatial argmax for conv blobs (first on ties, row-major), the unit for fc blobs.
pub fn argmax_in_channel(
    net: &Net,
    state: &ForwardState,
    img: usize,
    blob: usize,
    channel: usize,
) -> Result<(usize, f32)> {
    let plane = net.blobs[blob].shape.plane();
    let (at, value) = seed_at(net, state, img, blob, channel)?;
    // one read-back of two numbers (a plane index is exact as f32)
    let both = transfer::download::<f32>(&Tensor::cat(&[&at.to_dtype(DType::F32)?, &value], 0)?)?;
    match both[..] {
        [i, v] => Ok((channel * plane + i as usize, v)),
        _ => Err(Error::internal("an argmax of an empty channel")),
    }
}

/// Indices of the `k` largest values, largest first, ties to the lower index.
pub fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[j].total_cmp(&v[i]).then(i.cmp(&j)));
    order.truncate(k);
    order
}

/// A reconstruction: the gradient at the input `[3, H, W]` (raw, in preprocessed units).
#[derive(Debug, Clone)]
pub struct Recon {
    pub path: Path,
    pub grad: Tensor,
    pub note: Option<String>,
}

pub(crate) fn seed_job(nodes: &[(usize, usize)], stop: Stop) -> Job {
    Job {
        start: Start::Seed {
            blob: nodes[0].0,
            channel: nodes[0].1,
        },
        filters: nodes[1..].to_vec(),
        stop,
    }
}

/// Reconstructions of `paths` for image `img`, in one batched backward pass.
pub fn reconstruct(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    paths: &[Path],
) -> Result<Vec<Recon>> {
    let net = &model.net;
    let jobs = paths
        .iter()
        .map(|p| Ok(seed_job(&resolve_path(net, p)?, Stop::Data)))
        .collect::<Result<Vec<_>>>()?;
    let out = batch::run(net, state, img, opts, &jobs)?;
    Ok(paths
        .iter()
        .zip(out)
        .map(|(p, o)| Recon {
            path: p.clone(),
            grad: o.grad,
            note: o.note,
        })
        .collect())
}

/// Every backward rule and multiplier mode, in the order a comparison shows them.
pub fn all_options() -> Vec<Options> {
    Rule::ALL
        .into_iter()
        .flat_map(|rule| {
            [MultMode::Auto, MultMode::Manual]
                .into_iter()
                .map(move |mult| Options { rule, mult })
        })
        .collect()
}

/// Reconstructions of `path` under each of `options`: one batched pass per rule and
/// mode (a comparison of the rules on one node).
pub fn compare(
    model: &Model,
    state: &ForwardState,
    img: usize,
    options: &[Options],
    path: &Path,
) -> Result<Vec<(Options, Recon)>> {
    options
        .iter()
        .map(|o| {
            let r = reconstruct(model, state, img, o, std::slice::from_ref(path))?.remove(0);
            Ok((*o, r))
        })
        .collect()
}

/// One unit of an overview row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    pub channel: usize,
    pub activation: f32,
    /// Where the activation ranks among the channel's maxima over the feature cache's
    /// dataset (0..1), when a cache is in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<f32>,
}

impl Unit {
    /// ` p97` when the unit is ranked (above 97% of the dataset's images), else nothing.
    pub fn percentile_label(&self) -> String {
        self.rank
            .map(|r| format!(" p{:.0}", (r * 100.0).floor().min(99.0)))
            .unwrap_or_default()
    }
}

/// The top units of one blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlobUnits {
    pub blob: String,
    pub units: Vec<Unit>,
}

/// For each blob (top first), the `top` channels by spatial max activation (ties to the
/// lower channel).
pub fn overview(
    model: &Model,
    state: &ForwardState,
    img: usize,
    top: usize,
) -> Result<Vec<BlobUnits>> {
    let net = &model.net;
    net.blobs
        .iter()
        .map(|b| {
            let a = state.output(b.layer, &b.name)?.get(img)?;
            let m = match b.shape {
                Shape::Spatial { c, h, w } => a.reshape((c, h * w))?.max(1)?,
                Shape::Flat(_) => a,
            };
            let v = transfer::download::<f32>(&m)?;
            Ok(BlobUnits {
                blob: b.name.clone(),
                units: top_k(&v, top)
                    .into_iter()
                    .map(|c| Unit {
                        channel: c,
                        activation: v[c],
                        rank: None,
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The overview's paths (root-only), in overview order.
pub fn overview_paths(rows: &[BlobUnits]) -> Vec<Path> {
    rows.iter()
        .flat_map(|r| r.units.iter().map(|u| Path::root(&r.blob, u.channel)))
        .collect()
}

/// A class with its probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub index: usize,
    pub name: String,
    pub prob: f32,
}

/// Top `k` classes: softmax of the top blob (the logits).
pub fn labels(model: &Model, state: &ForwardState, img: usize, k: usize) -> Result<Vec<Label>> {
    let top = &model.net.blobs[0];
    let logits = state
        .output(top.layer, &top.name)?
        .get(img)?
        .flatten_all()?;
    let probs = candle_nn::ops::softmax_last_dim(&logits.unsqueeze(0)?)?.squeeze(0)?;
    let v = transfer::download::<f32>(&probs)?;
    Ok(top_k(&v, k)
        .into_iter()
        .map(|i| Label {
            index: i,
            name: model
                .labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}")),
            prob: v[i],
        })
        .collect())
}
