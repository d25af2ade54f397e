//! Children of a node (reference sections 4 and 9): signed weights and shares, the terms of
//! each consumer edge a child reaches its parent through, and ablation of a child channel.

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use super::batch::{self, Job, Outcome, Start, Stop};
use super::{argmax_in_channel, last_blob, resolve_path, seed_job, top_k, Options, Path, Recon};
use crate::error::{Error, Result};
use crate::model::net::Layer;
use crate::model::{transfer, ForwardState, Model, Net};

/// Which children a ranking lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sign {
    /// The `k` largest `|s_j|` (cnn_treevis's ranking).
    #[default]
    Abs,
    /// The `k` largest positive `s_j`: the children that excite the parent.
    Pos,
    /// The `k` most negative `s_j`: the children that inhibit it.
    Neg,
}

impl Sign {
    pub const ALL: [Sign; 3] = [Sign::Abs, Sign::Pos, Sign::Neg];

    pub fn name(self) -> &'static str {
        match self {
            Sign::Abs => "abs",
            Sign::Pos => "pos",
            Sign::Neg => "neg",
        }
    }

    /// What the ranking lists, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Sign::Abs => "strongest",
            Sign::Pos => "excitatory",
            Sign::Neg => "inhibitory",
        }
    }
}

impl std::fmt::Display for Sign {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Sign {
    type Err = Error;
    fn from_str(s: &str) -> Result<Sign> {
        Sign::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| Error::Input(format!("unknown sign `{s}` (abs, pos, neg)")))
    }
}

/// How children are chosen and what is computed for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ranking {
    pub k: usize,
    pub sign: Sign,
    /// Also the term of each consumer edge (where the child blob has several).
    pub via: bool,
}

impl Ranking {
    /// The seed's ranking: top `k` by `|s_j|`.
    pub fn abs(k: usize) -> Ranking {
        Ranking {
            k,
            sign: Sign::Abs,
            via: false,
        }
    }
}

/// The part of a child's signed weight that goes through one consumer of the child blob.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeTerm {
    /// The consuming layer (e.g. a residual block's first convolution, or its Add: the skip).
    pub edge: String,
    pub value: f32,
    /// Whether the edge is a residual block's skip: it reaches an Add through no
    /// activation (directly, or through a downsampling convolution).
    #[serde(default)]
    pub skip: bool,
}

/// Whether consumer layer `l` starts a skip connection: following its single consumers
/// reaches an Add before any activation (a few layers at most).
fn is_skip(net: &Net, l: usize) -> bool {
    let mut i = l;
    for _ in 0..8 {
        match &net.layers[i] {
            Layer::Add => return true,
            layer if layer.is_activation() => return false,
            _ => {}
        }
        match net.consumers[i + 1].as_slice() {
            [j] => i = *j,
            _ => return false,
        }
    }
    false
}

/// One child of a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Child {
    pub blob: String,
    pub channel: usize,
    /// `|s_j|`, the seed's weight.
    pub weight: f32,
    pub path: Path,
    /// The signed weight `s_j = mean_(y,x) a_j g_j`: positive excites the parent.
    #[serde(default)]
    pub value: f32,
    /// `|s_j| / sum_i |s_i|` over every channel of the blob (0 when all are 0).
    #[serde(default)]
    pub share: f32,
    /// One term per consumer edge of the child blob, summing to `value` (asked for, and
    /// only where the blob has several consumers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub via: Vec<EdgeTerm>,
    /// Ablation: the parent's activation minus its activation with this channel zeroed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<f32>,
}

/// The blob holding the children of a path's last node.
pub(crate) fn below_of(net: &Net, path: &Path, last: usize) -> Result<usize> {
    net.blobs[last].below.ok_or_else(|| {
        Error::path(
            path,
            format!(
                "blob `{}` is the lowest of the tree: no children",
                net.blobs[last].name
            ),
        )
    })
}

/// Checks that `path` can have children: it resolves, and its last blob has a blob below.
pub fn check_children_path(net: &Net, path: &Path) -> Result<()> {
    let nodes = resolve_path(net, path)?;
    below_of(net, path, last_blob(&nodes)?).map(|_| ())
}

/// Per channel of blob `b`: `mean_(y,x) a_j g_j` for the gradient `g` (one row, or the
/// blob's shape) and the blob's activation of image `img`.
pub(crate) fn signed_means(
    net: &Net,
    state: &ForwardState,
    img: usize,
    b: usize,
    g: &Tensor,
) -> Result<Vec<f32>> {
    let blob = &net.blobs[b];
    let a = state.output(blob.layer, &blob.name)?.get(img)?;
    let plane = blob.shape.plane();
    let prod = (a.flatten_all()? * g.flatten_all()?)?.reshape((blob.shape.channels(), plane))?;
    transfer::download(&(prod.sum(1)? / plane as f64)?)
}

/// Channels of `s` ranked by `sign`, top `k`, ties to the lower channel; `pos` and `neg`
/// list only channels of that sign.
pub fn rank_signed(s: &[f32], sign: Sign, k: usize) -> Vec<usize> {
    match sign {
        Sign::Abs => top_k(&s.iter().map(|v| v.abs()).collect::<Vec<_>>(), k),
        Sign::Pos => top_k(s, k).into_iter().filter(|&j| s[j] > 0.0).collect(),
        Sign::Neg => top_k(&s.iter().map(|v| -v).collect::<Vec<_>>(), k)
            .into_iter()
            .filter(|&j| s[j] < 0.0)
            .collect(),
    }
}

/// Children from the signed weights `s` of blob `below`.
pub(crate) fn ranked(net: &Net, path: &Path, below: usize, s: &[f32], r: &Ranking) -> Vec<Child> {
    let total: f64 = s.iter().map(|v| v.abs() as f64).sum();
    let name = &net.blobs[below].name;
    rank_signed(s, r.sign, r.k)
        .into_iter()
        .map(|j| Child {
            blob: name.clone(),
            channel: j,
            weight: s[j].abs(),
            path: path.child(name, j),
            value: s[j],
            share: if total > 0.0 {
                (s[j].abs() as f64 / total) as f32
            } else {
                0.0
            },
            via: vec![],
            drop: None,
        })
        .collect()
}

/// Children (top `k` by `|s_j|`) of each of `paths`, in one batched pass.
pub fn children(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    paths: &[Path],
    k: usize,
) -> Result<Vec<Vec<Child>>> {
    children_ranked(model, state, img, opts, paths, &Ranking::abs(k))
}

/// The consumer layers of blob `below`'s tensor that can carry gradient from its parent
/// (those whose output is not above the parent's tap), when there are several.
fn edges(net: &Net, below: usize, parent_tap: usize) -> Vec<usize> {
    let t = net.blobs[below].layer + 1;
    let users: Vec<usize> = net.consumers[t]
        .iter()
        .copied()
        .filter(|&l| l < parent_tap)
        .collect();
    if users.len() > 1 {
        users
    } else {
        vec![]
    }
}

/// Children of each of `paths` by `r`, in one batched pass (with the per-edge terms when
/// asked for: one more capture per consumer edge, on the same rows).
pub fn children_ranked(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    paths: &[Path],
    r: &Ranking,
) -> Result<Vec<Vec<Child>>> {
    Ok(children_with_grads(model, state, img, opts, paths, r)?
        .into_iter()
        .map(|(c, _)| c)
        .collect())
}

/// The jobs one path's children take, added to a batch: the gradient at the blob below
/// and, for per-edge terms, one capture per consumer edge on the same rows.
pub(crate) struct ChildJobs {
    path: Path,
    rank: Ranking,
    below: usize,
    users: Vec<usize>,
    /// Index of the first of these jobs in the batch.
    first: usize,
}

impl ChildJobs {
    /// Adds the jobs of path `p` (resolved to `nodes`) to `jobs`.
    pub(crate) fn add(
        net: &Net,
        p: &Path,
        nodes: &[(usize, usize)],
        r: &Ranking,
        jobs: &mut Vec<Job>,
    ) -> Result<ChildJobs> {
        let last = last_blob(nodes)?;
        let below = below_of(net, p, last)?;
        let users = if r.via {
            edges(net, below, net.blobs[last].tap)
        } else {
            vec![]
        };
        let first = jobs.len();
        jobs.push(seed_job(nodes, Stop::Blob(below)));
        for &l in &users {
            jobs.push(seed_job(nodes, Stop::Tensor(l + 1)));
        }
        Ok(ChildJobs {
            path: p.clone(),
            rank: *r,
            below,
            users,
            first,
        })
    }

    /// The path's children from the batch's outcomes `out`, and the gradient at the blob
    /// below.
    pub(crate) fn children(
        &self,
        net: &Net,
        state: &ForwardState,
        img: usize,
        opts: &Options,
        out: &[Outcome],
    ) -> Result<(Vec<Child>, Tensor)> {
        let g = &out
            .get(self.first)
            .ok_or_else(|| Error::internal("a children job without its outcome"))?
            .grad;
        let s = signed_means(net, state, img, self.below, g)?;
        let mut kids = ranked(net, &self.path, self.below, &s, &self.rank);
        if !self.users.is_empty() {
            let at_users: Vec<&Tensor> = out[self.first + 1..self.first + 1 + self.users.len()]
                .iter()
                .map(|o| &o.grad)
                .collect();
            let terms = edge_terms(net, state, img, opts, self.below, &self.users, &at_users)?;
            for c in &mut kids {
                c.via = self
                    .users
                    .iter()
                    .zip(&terms)
                    .map(|(&l, t)| EdgeTerm {
                        edge: net.spec.layers[l].name.clone(),
                        value: t[c.channel],
                        skip: is_skip(net, l),
                    })
                    .collect();
            }
        }
        Ok((kids, g.clone()))
    }
}

fn children_with_grads(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    paths: &[Path],
    r: &Ranking,
) -> Result<Vec<(Vec<Child>, Tensor)>> {
    let net = &model.net;
    let mut jobs = Vec::with_capacity(paths.len());
    let plans = paths
        .iter()
        .map(|p| ChildJobs::add(net, p, &resolve_path(net, p)?, r, &mut jobs))
        .collect::<Result<Vec<_>>>()?;
    let out = batch::run(net, state, img, opts, &jobs)?;
    plans
        .iter()
        .map(|plan| plan.children(net, state, img, opts, &out))
        .collect()
}

/// Per consumer edge `users[e]` of blob `below`, the per-channel terms `mean_(y,x) a_j
/// phi_j g_(e,j)`: `g_e` is what edge `e` sends back to the blob (its layer's backward
/// of the gradient `at_users[e]` at its output) and `phi` the factor the blob's own
/// activation rule applies to their sum (every rule is `g -> phi(x, sign g) * g`), so the
/// terms add up to the signed weights.
fn edge_terms(
    net: &Net,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    below: usize,
    users: &[usize],
    at_users: &[&Tensor],
) -> Result<Vec<Vec<f32>>> {
    let blob = &net.blobs[below];
    let t = blob.layer + 1;
    let mut sent = Vec::with_capacity(users.len());
    for (&l, g) in users.iter().zip(at_users) {
        let g = g.reshape(net.shape_at(l + 1).dims(1))?;
        let grads = net.backward_node(l, state, Some(img), &g, opts.rule)?;
        let mut sum: Option<Tensor> = None;
        for (&input, gi) in net.inputs[l].iter().zip(grads) {
            if input == t {
                sum = Some(match sum {
                    Some(s) => (s + gi)?,
                    None => gi,
                });
            }
        }
        sent.push(sum.ok_or_else(|| Error::internal("an edge that does not take its blob"))?);
    }
    let mut total = sent[0].clone();
    for g in &sent[1..] {
        total = (total + g)?;
    }
    let phi = if blob.tap == t {
        None
    } else {
        // the rule's factor at the sign of the summed gradient: probe with +-1
        let probe = total.ge(0f32)?.to_dtype(DType::F32)?.affine(2.0, -1.0)?;
        let back = net.backward_layer(blob.layer, state, Some(img), &probe, opts.rule)?;
        Some((back * probe)?)
    };
    sent.iter()
        .map(|g| {
            let g = match &phi {
                Some(phi) => (g * phi)?,
                None => g.clone(),
            };
            signed_means(net, state, img, below, &g)
        })
        .collect()
}

/// Children of `path` and their reconstructions: the path's gradient at the blob below is
/// computed once and each child's reconstruction continues from it.
pub fn expand(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    path: &Path,
    k: usize,
) -> Result<Vec<(Child, Recon)>> {
    let net = &model.net;
    let (kids, g) = children_with_grads(
        model,
        state,
        img,
        opts,
        std::slice::from_ref(path),
        &Ranking::abs(k),
    )?
    .remove(0);
    let Some(first) = kids.first() else {
        return Ok(vec![]);
    };
    let below = net
        .blob_index(&first.blob)
        .ok_or_else(|| Error::internal(format!("child blob `{}` is gone", first.blob)))?;
    let pos = net.blobs[below].tap;
    let jobs: Vec<Job> = kids
        .iter()
        .map(|c| Job {
            start: Start::Given {
                pos,
                grad: g.clone(),
                key: 0,
            },
            filters: vec![(below, c.channel)],
            stop: Stop::Data,
        })
        .collect();
    let out = batch::run(net, state, img, opts, &jobs)?;
    Ok(kids
        .into_iter()
        .zip(out)
        .map(|(c, o)| {
            let r = Recon {
                path: c.path.clone(),
                grad: o.grad,
                note: o.note,
            };
            (c, r)
        })
        .collect())
}

/// Children ablated in one forward pass from the child blob up.
const ABLATE_BATCH: usize = 16;

/// Ablation of each child of `path` (reference section 9): its channel of the child blob
/// is zeroed at every position, the net runs forward from there, and `drop` is the
/// parent's activation at its seed position minus the ablated one. Each batch of children
/// runs as one forward pass with an unablated row, so both sides share their round-off.
pub fn ablate(
    model: &Model,
    state: &ForwardState,
    img: usize,
    path: &Path,
    kids: &mut [Child],
) -> Result<()> {
    let net = &model.net;
    let nodes = resolve_path(net, path)?;
    let (parent, channel) = *nodes
        .last()
        .ok_or_else(|| Error::internal("an empty resolved path"))?;
    let below = below_of(net, path, parent)?;
    if let Some(c) = kids.iter().find(|c| c.blob != net.blobs[below].name) {
        return Err(Error::internal(format!(
            "child `{}` is not in blob `{}`",
            c.path, net.blobs[below].name
        )));
    }
    let (seed, _) = argmax_in_channel(net, state, img, parent, channel)?;
    let b = &net.blobs[below];
    let t = b.layer + 1;
    let x = state.output(b.layer, &b.name)?.get(img)?.unsqueeze(0)?;
    let channels = b.shape.channels();
    let top = &net.blobs[parent];
    for chunk in kids.chunks_mut(ABLATE_BATCH) {
        // row 0 as it is, row i + 1 with child i's channel zeroed: a per-channel mask
        let mut keep = vec![1f32; (chunk.len() + 1) * channels];
        for (i, c) in chunk.iter().enumerate() {
            keep[(i + 1) * channels + c.channel] = 0.0;
        }
        let mut dims = vec![chunk.len() + 1, channels];
        dims.resize(x.rank(), 1);
        let xb = x.broadcast_mul(&transfer::upload(keep, dims, &net.device)?)?;
        let s = net.forward_from(t, &xb, top.layer)?;
        let out = s.output(top.layer, &top.name)?;
        let at_seed = out
            .reshape((chunk.len() + 1, top.shape.numel()))?
            .narrow(1, seed, 1)?;
        let v = transfer::download::<f32>(&at_seed)?;
        for (i, c) in chunk.iter_mut().enumerate() {
            c.drop = Some(v[0] - v[i + 1]);
        }
    }
    Ok(())
}
