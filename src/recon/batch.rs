//! The batched backward pass: many seeds and paths of one image in one sweep down the net.
//!
//! Jobs are merged into a trie: jobs that share a start and a prefix of filters share one
//! gradient row until their paths part, where the row forks into one filtered row per
//! child. Each layer's backward then runs once for all rows alive at that depth (rows join
//! when the sweep reaches their root blob). A job ends at a capture point: the gradient at a
//! blob (for children) or at the input (a reconstruction).

use candle_core::{DType, Tensor};

use super::{MultMode, Options};
use crate::error::{Error, Result};
use crate::model::{transfer, ForwardState, Net};

/// Where a job's gradient starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// One-hot seed at the spatial argmax of `channel` of blob `blob` (index into
    /// `Net::blobs`), valued `mult * activation`.
    Seed { blob: usize, channel: usize },
    /// A gradient computed earlier (a single row, the shape of the position), at backward
    /// position `pos`; `key` identifies it so jobs with the same one share rows.
    Given { pos: usize, grad: Tensor, key: u64 },
}

/// Where a job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The gradient at the network input (a reconstruction).
    Data,
    /// The gradient at blob `i` (its ReLU rule applied).
    Blob(usize),
    /// The gradient at backward position (tensor) `t`, all its users' sum.
    Tensor(usize),
}

#[derive(Debug, Clone)]
pub struct Job {
    pub start: Start,
    /// Filters after the start, top first: `(blob index, channel)`.
    pub filters: Vec<(usize, usize)>,
    pub stop: Stop,
}

/// A job's result: one gradient row (no batch dimension) and, when it is zero for a
/// reason, the reason.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub grad: Tensor,
    pub note: Option<String>,
}

struct TrieNode {
    /// Blob and channel of a filter node (`None` for a start node).
    filter: Option<(usize, usize)>,
    parent: Option<usize>,
    pos: usize,
    children: Vec<usize>,
    captures: Vec<(usize, usize)>,
    /// Lowest backward position this node's row is still needed at.
    lowest: usize,
    note: Option<String>,
    /// What decides the node's note, kept on the device until the sweep ends: a start's
    /// seed value (0: not active) or a fork's gradient mass in its channel (0: none
    /// reaches it), as element `check` of the sweep's checks.
    check: Option<usize>,
    /// Blob and channel of a seed start.
    seed: Option<(usize, usize)>,
}

/// Floats one pending gradient may hold (256 MB): a batch of more rows than fit in it at the
/// net's largest tensor runs in groups, so that a 90-row overview of a ResNet-50 needs no
/// more memory than PyTorch's one-at-a-time loop.
const PENDING_BUDGET: usize = 1 << 26;

/// Runs `jobs` for image `img` of `state`; outcomes are in job order. Jobs run in groups
/// of as many rows as [`PENDING_BUDGET`] allows at the net's largest tensor (rows in one
/// group share their common prefixes).
pub fn run(
    net: &Net,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    jobs: &[Job],
) -> Result<Vec<Outcome>> {
    let largest = (0..=net.layers.len())
        .map(|t| net.shape_at(t).numel())
        .max()
        .unwrap_or(1)
        .max(1);
    run_in_groups(
        net,
        state,
        img,
        opts,
        jobs,
        (PENDING_BUDGET / largest).max(1),
    )
}

/// [`run`] with at most `per_group` rows in one pass.
fn run_in_groups(
    net: &Net,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    jobs: &[Job],
    per_group: usize,
) -> Result<Vec<Outcome>> {
    if jobs.len() <= per_group {
        return run_group(net, state, img, opts, jobs);
    }
    // even groups: 90 rows of room 83 run as 45 + 45, not 83 + 7
    let groups = jobs.len().div_ceil(per_group);
    let size = jobs.len().div_ceil(groups);
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(size) {
        out.extend(run_group(net, state, img, opts, chunk)?);
    }
    Ok(out)
}

fn run_group(
    net: &Net,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    jobs: &[Job],
) -> Result<Vec<Outcome>> {
    if img >= state.batch {
        return Err(Error::Input(format!(
            "image {img} is not in the forward batch of {}",
            state.batch
        )));
    }
    let mut nodes: Vec<TrieNode> = Vec::new();
    let mut roots: Vec<(usize, Start)> = Vec::new();
    for (ji, job) in jobs.iter().enumerate() {
        let start_pos = match &job.start {
            Start::Seed { blob, .. } => net.blobs[*blob].tap,
            Start::Given { pos, .. } => *pos,
        };
        let existing = roots
            .iter()
            .find(|(_, s)| same_start(s, &job.start))
            .map(|(i, _)| *i);
        let mut cur = match existing {
            Some(i) => i,
            None => {
                nodes.push(TrieNode {
                    filter: None,
                    parent: None,
                    pos: start_pos,
                    children: vec![],
                    captures: vec![],
                    lowest: start_pos,
                    note: None,
                    check: None,
                    seed: match job.start {
                        Start::Seed { blob, channel } => Some((blob, channel)),
                        Start::Given { .. } => None,
                    },
                });
                roots.push((nodes.len() - 1, job.start.clone()));
                nodes.len() - 1
            }
        };
        for &(b, c) in &job.filters {
            let pos = net.blobs[b].tap;
            if pos > nodes[cur].pos || (pos == nodes[cur].pos && nodes[cur].filter.is_some()) {
                return Err(Error::Input(format!(
                    "blob `{}` is not below the node before it in the path",
                    net.blobs[b].name
                )));
            }
            let found = nodes[cur]
                .children
                .iter()
                .copied()
                .find(|&ch| nodes[ch].filter == Some((b, c)));
            cur = match found {
                Some(ch) => ch,
                None => {
                    nodes.push(TrieNode {
                        filter: Some((b, c)),
                        parent: Some(cur),
                        pos,
                        children: vec![],
                        captures: vec![],
                        lowest: pos,
                        note: None,
                        check: None,
                        seed: None,
                    });
                    let id = nodes.len() - 1;
                    nodes[cur].children.push(id);
                    id
                }
            };
        }
        let stop_pos = match job.stop {
            Stop::Data => 0,
            Stop::Blob(b) => net.blobs[b].tap,
            Stop::Tensor(t) => t,
        };
        if stop_pos > nodes[cur].pos
            || (stop_pos == nodes[cur].pos
                && matches!(job.stop, Stop::Blob(_))
                && nodes[cur].filter.is_some())
        {
            return Err(Error::Input("a job stops above its last node".into()));
        }
        nodes[cur].captures.push((ji, stop_pos));
    }
    // lowest position each node is needed at (children were created after their parents)
    for i in (0..nodes.len()).rev() {
        let mut low = nodes[i].pos;
        for &(_, p) in &nodes[i].captures {
            low = low.min(p);
        }
        for &ch in &nodes[i].children {
            low = low.min(nodes[ch].lowest);
        }
        nodes[i].lowest = low;
    }

    let top = nodes.iter().map(|n| n.pos).max().unwrap_or(0);
    if top > state.outputs.len() {
        return Err(Error::Input(
            "the forward pass stopped below a requested blob; run it further".into(),
        ));
    }
    let mut results: Vec<Option<(Tensor, usize)>> = vec![None; jobs.len()];
    // one-element tensors the notes depend on, read back once at the end
    let mut checks: Vec<Tensor> = Vec::new();
    // the trie node of each gradient row; every pending tensor holds one row per entry
    let mut rows: Vec<usize> = Vec::new();
    let mut pending = Pending::new(net);
    for pos in (0..=top).rev() {
        // rows that start here
        let starting: Vec<&(usize, Start)> = roots
            .iter()
            .filter(|(id, _)| nodes[*id].pos == pos)
            .collect();
        if !starting.is_empty() {
            let shape = net.shape_at(pos);
            let mut parts = Vec::with_capacity(starting.len());
            for (id, start) in starting {
                let (row, check) = start_row(net, state, img, start, shape.numel())?;
                if let Some(c) = check {
                    nodes[*id].check = Some(checks.len());
                    checks.push(c);
                }
                parts.push(row.reshape(shape.dims(1))?);
                rows.push(*id);
            }
            pending.append(pos, rows.len(), parts)?;
        }
        // rows that fork into filtered children here
        let forks: Vec<(usize, usize)> = rows
            .iter()
            .enumerate()
            .flat_map(|(ri, &id)| {
                nodes[id]
                    .children
                    .iter()
                    .filter(|&&ch| nodes[ch].pos == pos)
                    .map(move |&ch| (ri, ch))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !forks.is_empty() {
            let g = pending.at(pos, rows.len())?;
            let new = filter_rows(net, &g, &forks, &mut nodes, &mut checks, opts)?;
            rows.extend(forks.iter().map(|&(_, ch)| ch));
            pending.append(pos, rows.len(), vec![new])?;
        }
        // captures here
        if rows
            .iter()
            .any(|&id| nodes[id].captures.iter().any(|&(_, p)| p == pos))
        {
            let g = pending.at(pos, rows.len())?;
            for (ri, &id) in rows.iter().enumerate() {
                for &(ji, p) in &nodes[id].captures {
                    if p == pos {
                        results[ji] = Some((g.get(ri)?, id));
                    }
                }
            }
        }
        // drop rows not needed below here
        let keep: Vec<u32> = (0..rows.len() as u32)
            .filter(|&ri| nodes[rows[ri as usize]].lowest < pos)
            .collect();
        if keep.len() < rows.len() {
            pending.keep(&keep)?;
            rows = keep.iter().map(|&ri| rows[ri as usize]).collect();
        }
        // the layer producing this tensor passes its gradient on to its inputs
        if pos > 0 {
            if let Some(g) = pending.take(pos) {
                let t0 = std::time::Instant::now();
                let layer = pos - 1;
                let grads = net.backward_node(layer, state, Some(img), &g, opts.rule)?;
                for (&t, gi) in net.inputs[layer].iter().zip(grads) {
                    pending.add(t, gi)?;
                }
                tracing::trace!(layer = %net.spec.layers[layer].name, rows = rows.len(), ms = t0.elapsed().as_secs_f64() * 1e3, "backward");
            }
        }
    }
    resolve_notes(net, &mut nodes, &checks)?;
    results
        .into_iter()
        .map(|r| {
            let (grad, id) = r.ok_or_else(|| Error::internal("a job produced no result"))?;
            Ok(Outcome {
                grad,
                note: nodes[id].note.clone(),
            })
        })
        .collect()
}

/// The nodes' notes from the sweep's checks (read back in one transfer): a seed that is
/// not active, a filter that no gradient reaches; a node inherits its parent's note.
fn resolve_notes(net: &Net, nodes: &mut [TrieNode], checks: &[Tensor]) -> Result<()> {
    let values: Vec<f32> = if checks.is_empty() {
        vec![]
    } else {
        transfer::download(&Tensor::cat(checks, 0)?)?
    };
    // parents come before their children
    for i in 0..nodes.len() {
        let inherited = nodes[i].parent.and_then(|p| nodes[p].note.clone());
        let own = match (nodes[i].check, nodes[i].filter, nodes[i].seed) {
            (Some(c), None, Some((b, chan))) if values[c] == 0.0 => Some(format!(
                "{}:{chan} is not active on this image (max activation {}), so its reconstruction is zero",
                net.blobs[b].name, values[c]
            )),
            (Some(c), Some((b, chan)), _) if values[c] == 0.0 => Some(format!(
                "no gradient reaches {}:{chan} along this path, so the filtered reconstruction is zero",
                net.blobs[b].name
            )),
            _ => None,
        };
        nodes[i].note = inherited.or(own);
    }
    Ok(())
}

fn same_start(a: &Start, b: &Start) -> bool {
    match (a, b) {
        (
            Start::Seed {
                blob: b1,
                channel: c1,
            },
            Start::Seed {
                blob: b2,
                channel: c2,
            },
        ) => b1 == b2 && c1 == c2,
        (
            Start::Given {
                key: k1, pos: p1, ..
            },
            Start::Given {
                key: k2, pos: p2, ..
            },
        ) => k1 == k2 && p1 == p2,
        _ => false,
    }
}

/// The gradients not yet passed on, per tensor, each with one row per live job row. A
/// tensor that no gradient reached holds none (it is zero).
struct Pending<'a> {
    net: &'a Net,
    grads: Vec<Option<Tensor>>,
}

impl<'a> Pending<'a> {
    fn new(net: &'a Net) -> Self {
        Pending {
            net,
            grads: vec![None; net.layers.len() + 1],
        }
    }

    /// The gradient at tensor `t` for all `rows` rows (zeros when none reached it).
    fn at(&mut self, t: usize, rows: usize) -> Result<Tensor> {
        if self.grads[t].is_none() {
            let dims = self.net.shape_at(t).dims(rows);
            self.grads[t] = Some(Tensor::zeros(
                dims,
                candle_core::DType::F32,
                &self.net.device,
            )?);
        }
        self.grads[t]
            .clone()
            .ok_or_else(|| Error::internal("a pending gradient that was just set is gone"))
    }

    /// Rows appended at tensor `t` (`parts`, together `rows - before` rows); every other
    /// pending tensor gets zero rows for them.
    fn append(&mut self, t: usize, rows: usize, parts: Vec<Tensor>) -> Result<()> {
        let added: usize = parts.iter().map(|p| p.dims()[0]).sum();
        let before = rows - added;
        for (u, slot) in self.grads.iter_mut().enumerate() {
            if u == t {
                continue;
            }
            if let Some(g) = slot.take() {
                let mut dims = g.dims().to_vec();
                dims[0] = added;
                let z = Tensor::zeros(dims, candle_core::DType::F32, g.device())?;
                *slot = Some(Tensor::cat(&[g, z], 0)?);
            }
        }
        let prev = if before == 0 {
            self.grads[t].take()
        } else {
            Some(self.at(t, before)?)
        };
        self.grads[t] = Some(cat_rows(prev, parts)?);
        Ok(())
    }

    /// Keeps only the rows `keep` of every pending tensor.
    fn keep(&mut self, keep: &[u32]) -> Result<()> {
        let idx = if keep.is_empty() {
            None
        } else {
            Some(transfer::upload(
                keep.to_vec(),
                keep.len(),
                &self.net.device,
            )?)
        };
        for slot in self.grads.iter_mut() {
            if let (Some(g), Some(idx)) = (slot.take(), &idx) {
                *slot = Some(g.index_select(idx, 0)?);
            }
        }
        Ok(())
    }

    fn take(&mut self, t: usize) -> Option<Tensor> {
        self.grads[t].take()
    }

    /// Adds `g` to the gradient at tensor `t` (where a tensor fans out, its gradient is the
    /// sum of its users').
    fn add(&mut self, t: usize, g: Tensor) -> Result<()> {
        self.grads[t] = Some(match self.grads[t].take() {
            Some(prev) => (prev + g)?,
            None => g,
        });
        Ok(())
    }
}

fn cat_rows(prev: Option<Tensor>, mut parts: Vec<Tensor>) -> Result<Tensor> {
    if let Some(p) = prev {
        parts.insert(0, p);
    }
    Ok(if parts.len() == 1 {
        parts.remove(0)
    } else {
        Tensor::cat(&parts, 0)?
    })
}

/// The first row of a start: the one-hot seed at the first maximum of the seed's channel,
/// valued `mult * activation`, found and built on the device; or the given gradient. For a
/// seed, also the one-element activation its note depends on.
fn start_row(
    net: &Net,
    state: &ForwardState,
    img: usize,
    start: &Start,
    numel: usize,
) -> Result<(Tensor, Option<Tensor>)> {
    match start {
        Start::Given { grad, .. } => Ok((grad.to_device(&net.device)?.flatten_all()?, None)),
        Start::Seed { blob, channel } => {
            let b = &net.blobs[*blob];
            let plane = b.shape.plane();
            let (at, value) = super::seed_at(net, state, img, *blob, *channel)?;
            let seed = Tensor::zeros(plane, DType::F32, &net.device)?
                .scatter_add(&at, &value.affine(b.mult as f64, 0.0)?, 0)?
                .pad_with_zeros(0, channel * plane, numel - (channel + 1) * plane)?;
            Ok((seed, Some(value)))
        }
    }
}

/// New rows for `forks` (`(row index, child node)`): the parent row with every channel but
/// the child's zeroed, rescaled by the multiplier mode; all on the device. Each fork's
/// gradient mass in its channel goes to `checks` (its note: none reaches the channel).
fn filter_rows(
    net: &Net,
    g: &Tensor,
    forks: &[(usize, usize)],
    nodes: &mut [TrieNode],
    checks: &mut Vec<Tensor>,
    opts: &Options,
) -> Result<Tensor> {
    let dims = g.dims().to_vec();
    let (f, c) = (forks.len(), dims[1]);
    let plane: usize = dims[2..].iter().product();
    let rows: Vec<u32> = forks.iter().map(|&(ri, _)| ri as u32).collect();
    let dev = g.device();
    let sel = g.index_select(&transfer::upload(rows, f, dev)?, 0)?;
    let mut chans = Vec::with_capacity(f);
    let mut mults = Vec::with_capacity(f);
    for &(_, ch) in forks {
        let (b, chan) = nodes[ch]
            .filter
            .ok_or_else(|| Error::internal("a fork whose target is not a filter node"))?;
        chans.push(chan as u32);
        mults.push(net.blobs[b].mult);
    }
    let chans = transfer::upload(chans, (f, 1), dev)?;
    // per-row, per-channel sums of |g|, and each fork's own channel's
    let sums = sel.abs()?.reshape((f, c, plane))?.sum(2)?;
    let own = sums.gather(&chans, 1)?;
    let scale = match opts.mult {
        MultMode::Auto => {
            let total = sums.sum_keepdim(1)?;
            let ratio = (total / &own)?;
            own.gt(0f32)?.where_cond(&ratio, &own.zeros_like()?)?
        }
        MultMode::Manual => transfer::upload(mults, (f, 1), dev)?,
    };
    for (k, &(_, ch)) in forks.iter().enumerate() {
        nodes[ch].check = Some(checks.len());
        checks.push(own.get(k)?);
    }
    let mut sdims = vec![f, c];
    sdims.extend(std::iter::repeat_n(1, dims.len() - 2));
    let scale = Tensor::zeros((f, c), DType::F32, dev)?
        .scatter_add(&chans, &scale, 1)?
        .reshape(sdims)?;
    Ok(sel.broadcast_mul(&scale)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recon::{MultMode, Rule};

    /// Rows run in groups give the same numbers as one pass: an overview of the demo-resnet
    /// (roots at every blob) in groups of 1, 4 and all.
    #[test]
    fn groups_of_rows_give_the_same_reconstructions() {
        let loaded = crate::model::LoadedSpec::resolve("demo-resnet").unwrap();
        let w = crate::model::weights::random_weights(&loaded.spec, 5).unwrap();
        let m = crate::model::Model::from_parts(
            loaded,
            w,
            "random:5".into(),
            None,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let x = candle_core::Tensor::rand(0f32, 1.0, (1, 3, 64, 64), &candle_core::Device::Cpu)
            .unwrap();
        let state = m.net.forward(&x).unwrap();
        let rows = crate::recon::overview(&m, &state, 0, 3).unwrap();
        let paths = crate::recon::overview_paths(&rows);
        let jobs: Vec<Job> = paths
            .iter()
            .map(|p| {
                crate::recon::seed_job(&crate::recon::resolve_path(&m.net, p).unwrap(), Stop::Data)
            })
            .collect();
        let opts = Options {
            rule: Rule::Guided,
            mult: MultMode::Auto,
        };
        let flat = |o: &[Outcome]| -> Vec<Vec<f32>> {
            o.iter()
                .map(|o| o.grad.flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect()
        };
        let one = flat(&run_in_groups(&m.net, &state, 0, &opts, &jobs, jobs.len()).unwrap());
        assert_eq!(one.len(), 15);
        for size in [1, 4] {
            let grouped = flat(&run_in_groups(&m.net, &state, 0, &opts, &jobs, size).unwrap());
            for (a, b) in one.iter().zip(&grouped) {
                let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(d <= 1e-5 * scale, "groups of {size}: {d} of {scale}");
            }
        }
    }
}
