//! Trees of paths (`treevis tree`): level by level, each level's reconstructions and
//! children computed in one batched pass that shares every common prefix.

use candle_core::Tensor;

use super::children::ChildJobs;
use super::{batch, last_blob, resolve_path, seed_job, Child, Options, Path, Ranking, Recon, Stop};
use crate::error::{Error, Result};
use crate::model::{ForwardState, Model};

/// A node of a computed tree.
pub struct TreeNode {
    pub path: Path,
    /// The node as a child of its parent: signed weight, share, edges (`None` at the root).
    pub child: Option<Child>,
    pub grad: Tensor,
    pub note: Option<String>,
    pub children: Vec<TreeNode>,
}

/// The most nodes one tree may have (each holds a reconstruction of the input's size).
pub const MAX_TREE_NODES: usize = 10_000;

/// Refuses a tree deeper than the blobs below its root, or of more than
/// [`MAX_TREE_NODES`] nodes, before anything is computed.
fn check_size(model: &Model, root: &Path, depth: usize, k: usize) -> Result<()> {
    let net = &model.net;
    let mut b = last_blob(&resolve_path(net, root)?)?;
    let (mut nodes, mut level) = (1usize, 1usize);
    for d in 0..depth {
        let Some(below) = net.blobs[b].below else {
            return Err(Error::path(
                root,
                format!(
                    "depth {depth}: below `{}` there {} only {d} blob{}",
                    net.blobs[b].name,
                    if d == 1 { "is" } else { "are" },
                    if d == 1 { "" } else { "s" }
                ),
            ));
        };
        b = below;
        level = level.saturating_mul(k.min(net.blobs[b].shape.channels()));
        nodes = nodes.saturating_add(level);
        if nodes > MAX_TREE_NODES {
            return Err(Error::path(
                root,
                format!(
                    "a tree of depth {depth} with {k} children per node has more than {MAX_TREE_NODES} nodes; use a smaller --depth or --k"
                ),
            ));
        }
    }
    Ok(())
}

/// Reconstructions of `paths` and, with a ranking, their children, in one pass.
pub fn level(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    paths: &[Path],
    rank: Option<&Ranking>,
) -> Result<Vec<(Recon, Option<Vec<Child>>)>> {
    let net = &model.net;
    let mut jobs = Vec::new();
    // per path: its reconstruction's job, and its children's when it has a blob below
    let mut plans = Vec::with_capacity(paths.len());
    for p in paths {
        let nodes = resolve_path(net, p)?;
        let recon = jobs.len();
        jobs.push(seed_job(&nodes, Stop::Data));
        let kids = match rank {
            Some(r) if net.blobs[last_blob(&nodes)?].below.is_some() => {
                Some(ChildJobs::add(net, p, &nodes, r, &mut jobs)?)
            }
            _ => None,
        };
        plans.push((recon, kids));
    }
    let out = batch::run(net, state, img, opts, &jobs)?;
    paths
        .iter()
        .zip(plans)
        .map(|(p, (recon, kids))| {
            let r = out
                .get(recon)
                .ok_or_else(|| Error::internal("a job without its outcome"))?;
            let kids = match kids {
                Some(k) => Some(k.children(net, state, img, opts, &out)?.0),
                None => None,
            };
            Ok((
                Recon {
                    path: p.clone(),
                    grad: r.grad.clone(),
                    note: r.note.clone(),
                },
                kids,
            ))
        })
        .collect()
}

/// The tree below `root`, `depth` levels deep, `k` children per node.
pub fn build(
    model: &Model,
    state: &ForwardState,
    img: usize,
    opts: &Options,
    root: &Path,
    depth: usize,
    rank: &Ranking,
) -> Result<TreeNode> {
    check_size(model, root, depth, rank.k)?;
    // levels of (path, as a child, parent index in the previous level)
    let mut levels: Vec<Vec<(Path, Option<Child>, usize)>> = vec![vec![(root.clone(), None, 0)]];
    let mut computed: Vec<Vec<(Recon, Option<Vec<Child>>)>> = Vec::new();
    for d in 0..=depth {
        let paths: Vec<Path> = levels[d].iter().map(|(p, _, _)| p.clone()).collect();
        let res = level(model, state, img, opts, &paths, (d < depth).then_some(rank))?;
        let next: Vec<(Path, Option<Child>, usize)> = res
            .iter()
            .enumerate()
            .flat_map(|(i, (_, kids))| {
                kids.iter()
                    .flatten()
                    .map(move |c| (c.path.clone(), Some(c.clone()), i))
            })
            .collect();
        computed.push(res);
        if next.is_empty() {
            break;
        }
        levels.push(next);
    }
    // assemble bottom-up
    let mut below: Vec<TreeNode> = Vec::new();
    for d in (0..computed.len()).rev() {
        let mut nodes: Vec<TreeNode> = levels[d]
            .iter()
            .zip(computed[d].drain(..))
            .map(|((p, c, _), (r, _))| TreeNode {
                path: p.clone(),
                child: c.clone(),
                grad: r.grad,
                note: r.note,
                children: Vec::new(),
            })
            .collect();
        if d + 1 < levels.len() {
            for ((_, _, parent), child) in levels[d + 1].iter().zip(below.drain(..)) {
                nodes[*parent].children.push(child);
            }
        }
        below = nodes;
    }
    Ok(below.remove(0))
}

impl TreeNode {
    /// JSON of the tree; `image` is called on every node (top-down) and returns the file
    /// name its picture was written to.
    pub fn to_json(
        &self,
        image: &mut dyn FnMut(&TreeNode) -> anyhow::Result<String>,
    ) -> anyhow::Result<serde_json::Value> {
        let file = image(self)?;
        let last = self.path.last();
        let children = self
            .children
            .iter()
            .map(|c| c.to_json(image))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(serde_json::json!({
            "path": self.path.to_string(),
            "blob": last.blob,
            "channel": last.channel,
            "weight": self.child.as_ref().map(|c| c.weight),
            "value": self.child.as_ref().map(|c| c.value),
            "share": self.child.as_ref().map(|c| c.share),
            "via": self.child.as_ref().map(|c| &c.via).filter(|v| !v.is_empty()),
            "image": file,
            "note": self.note,
            "children": children,
        }))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        1 + self.children.iter().map(TreeNode::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}
