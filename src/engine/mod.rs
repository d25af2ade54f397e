//! The job queue between front ends and the numeric engine. One worker thread owns the model
//! and its device; the UI says what it *wants* (the jobs for what is on screen, most
//! important first) and receives results as messages, never blocking.
//!
//! * every `want` replaces the pending list: jobs that left the screen are cancelled;
//! * a job whose result is cached (LRU, bounded in bytes) is answered at once; a job already
//!   answered is not computed twice (deduplicated by key);
//! * reconstructions (and children) of the same image and options are batched into one
//!   backward pass, in the order of the want list, as many rows as fit in the device's free
//!   memory; a pass that does not fit after all is halved and retried ([`crate::memory`]),
//!   and its jobs are answered, not failed;
//! * forward states are cached per image (a few images; dropped when memory runs out).

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use candle_core::Tensor;
use image::RgbImage;

use crate::memory::{self, Faults, Footprint, Stage};
use crate::model::{ForwardState, Model};
use crate::recon::display::{self, Display};
use crate::recon::sanity::Sanity;
use crate::recon::{self, BlobUnits, Child, Label, Options, Parent, Path, Ranking};

/// What can be asked of the engine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobKey {
    /// The image file, decoded and scaled to a thumbnail.
    Thumb {
        image: PathBuf,
    },
    /// The preprocessed input as the network sees it.
    Input {
        image: PathBuf,
    },
    Labels {
        image: PathBuf,
    },
    Overview {
        image: PathBuf,
        top: usize,
    },
    Recon {
        image: PathBuf,
        path: Path,
        opts: Options,
        display: Display,
    },
    /// Children by `rank`; with `ablate`, each child's ablation `drop` too.
    Children {
        image: PathBuf,
        path: Path,
        opts: Options,
        rank: Ranking,
        ablate: bool,
    },
    /// The top `k` parents of the path's last node.
    Parents {
        image: PathBuf,
        path: Path,
        opts: Options,
        k: usize,
    },
    /// The sanity check's cascade for a path (long: it reports `Event::Progress` and is
    /// cancelled when a want leaves it out).
    Sanity {
        image: PathBuf,
        path: Path,
        opts: Options,
        display: Display,
        seed: u64,
    },
    /// A neuron's top dataset patches from the feature cache (the same for every image).
    Features {
        blob: String,
        channel: usize,
    },
}

impl JobKey {
    /// A short description: `thumb`, `input`, `labels`, `overview`, `recon conv5:12`,
    /// `children conv5:12`.
    pub fn describe(&self) -> String {
        match self {
            JobKey::Thumb { .. } => "thumb".into(),
            JobKey::Input { .. } => "input".into(),
            JobKey::Labels { .. } => "labels".into(),
            JobKey::Overview { .. } => "overview".into(),
            JobKey::Recon { path, .. } => format!("recon {path}"),
            JobKey::Children { path, .. } => format!("children {path}"),
            JobKey::Parents { path, .. } => format!("parents {path}"),
            JobKey::Sanity { path, .. } => format!("sanity {path}"),
            JobKey::Features { blob, channel, .. } => format!("features {blob}:{channel}"),
        }
    }

    /// The image the job is about; `None` for what belongs to the network (feature grids).
    pub fn image(&self) -> Option<&PathBuf> {
        match self {
            JobKey::Thumb { image }
            | JobKey::Input { image }
            | JobKey::Labels { image }
            | JobKey::Overview { image, .. }
            | JobKey::Recon { image, .. }
            | JobKey::Children { image, .. }
            | JobKey::Parents { image, .. }
            | JobKey::Sanity { image, .. } => Some(image),
            JobKey::Features { .. } => None,
        }
    }
}

/// A job's result.
#[derive(Debug, Clone)]
pub enum Output {
    Image(Arc<RgbImage>),
    Labels(Vec<Label>),
    Overview(Vec<BlobUnits>),
    Children(Vec<Child>),
    Parents(Vec<Parent>),
    /// The sanity check's numbers (no gradients) and its captioned strip.
    Sanity(Arc<(Sanity, RgbImage)>),
    /// The job failed (a corrupt image, say); the message says why.
    Failed(String),
}

impl Output {
    fn bytes(&self) -> usize {
        match self {
            Output::Image(i) => i.as_raw().len() + 64,
            Output::Labels(l) => l.len() * 64,
            Output::Overview(o) => o.iter().map(|r| r.units.len() * 16 + 32).sum(),
            Output::Children(c) => c.len() * 96,
            Output::Parents(p) => p.len() * 64,
            Output::Sanity(s) => s.1.as_raw().len() + s.0.steps.len() * 64,
            Output::Failed(m) => m.len(),
        }
    }
}

/// Writes reconstructions to a folder: each path's PNG (as displayed) and raw gradient
/// (`.npy`, float32 `[3, H, W]`), plus the input, and `tree.json` when given.
#[derive(Debug, Clone)]
pub struct Export {
    pub image: PathBuf,
    pub paths: Vec<Path>,
    pub opts: Options,
    pub display: Display,
    pub dir: PathBuf,
    pub tree_json: Option<String>,
    /// The explored tree, for `index.html` (its paths are among `paths`).
    pub tree: Option<Box<ExportNode>>,
}

/// A node of an explored tree to export: its path, what it is as a child of its parent
/// (`None` at the root), its children.
#[derive(Debug, Clone)]
pub struct ExportNode {
    pub path: Path,
    pub child: Option<Child>,
    pub children: Vec<ExportNode>,
}

/// Messages from the engine.
#[derive(Debug, Clone)]
pub enum Event {
    Done {
        key: JobKey,
        output: Output,
    },
    /// An export finished: what was written, or why not.
    Exported(Result<String, String>),
    /// Queue state after each batch.
    Status(Status),
    /// A long job's progress: `done` of `total` steps.
    Progress {
        key: JobKey,
        done: usize,
        total: usize,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Status {
    pub pending: usize,
    pub running: usize,
    /// Wall time of the last batch, ms.
    pub last_ms: f64,
    /// Batches run so far (a batched backward pass counts once).
    pub batches: u64,
    /// Jobs computed (not answered from the cache).
    pub computed: u64,
}

enum Msg {
    Want(Vec<JobKey>),
    Export(Export),
    Quit,
}

/// Results kept, bounded in bytes, least recently used dropped first.
struct Lru {
    map: HashMap<JobKey, (Output, u64)>,
    bytes: usize,
    limit: usize,
    tick: u64,
}

impl Lru {
    fn new(limit: usize) -> Lru {
        Lru {
            map: HashMap::new(),
            bytes: 0,
            limit,
            tick: 0,
        }
    }
    fn get(&mut self, k: &JobKey) -> Option<Output> {
        self.tick += 1;
        let t = self.tick;
        self.map.get_mut(k).map(|(o, last)| {
            *last = t;
            o.clone()
        })
    }
    fn put(&mut self, k: JobKey, o: Output) {
        self.tick += 1;
        self.bytes += o.bytes();
        if let Some((old, _)) = self.map.insert(k, (o, self.tick)) {
            self.bytes -= old.bytes();
        }
        while self.bytes > self.limit && self.map.len() > 1 {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((o, _)) = self.map.remove(&oldest) {
                self.bytes -= o.bytes();
            }
        }
    }
}

/// The synchronous core of the worker: pending jobs, caches, and one step of work at a
/// time. The thread in [`Engine`] drives it; tests drive it directly.
/// The feature cache, opened when first needed (on the engine thread: checking that it
/// belongs to the model hashes every weight).
enum Features {
    None,
    Unopened(PathBuf),
    Open(Arc<crate::featcache::FeatureCache>),
    Failed(String),
}

pub struct Scheduler {
    model: Model,
    features: Features,
    pending: VecDeque<JobKey>,
    cache: Lru,
    forwards: VecDeque<(PathBuf, Arc<(Tensor, ForwardState)>)>,
    /// Most reconstructions in one batched pass: as many gradient rows as fit in the free
    /// memory of the model's device, [`MAX_ROWS`] at most; halved when a pass did not fit.
    pub max_batch: usize,
    pub status: Status,
    /// A test hook: passes that fail as on a full device.
    faults: Faults,
}

/// The most reconstructions (or children lists) one batched backward pass takes.
pub const MAX_ROWS: usize = 48;

/// Forward states kept (the images last looked at).
const FORWARDS: usize = 4;

/// Thumbnail side in pixels.
pub const THUMB: u32 = 128;

impl Scheduler {
    pub fn new(model: Model, cache_bytes: usize) -> Scheduler {
        let max_batch = rows_that_fit(&model, MAX_ROWS);
        Scheduler {
            model,
            features: Features::None,
            pending: VecDeque::new(),
            cache: Lru::new(cache_bytes),
            forwards: VecDeque::new(),
            max_batch,
            status: Status::default(),
            faults: Faults::default(),
        }
    }

    /// Caps the rows of one batched pass at `cap` (still as many as fit, at most).
    pub fn with_max_batch(mut self, cap: usize) -> Scheduler {
        self.max_batch = rows_that_fit(&self.model, cap);
        self
    }

    /// A test hook: passes that `faults` fail, as a full device would.
    pub fn with_faults(mut self, faults: Faults) -> Scheduler {
        self.faults = faults;
        self
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Serves neuron grids and activation ranks from the feature cache in `dir`.
    pub fn with_feature_cache(mut self, dir: PathBuf) -> Scheduler {
        self.features = Features::Unopened(dir);
        self
    }

    fn feature_cache(&mut self) -> Result<Arc<crate::featcache::FeatureCache>, String> {
        if let Features::Unopened(dir) = &self.features {
            self.features = match crate::featcache::FeatureCache::open_for(dir, &self.model) {
                Ok(c) => Features::Open(Arc::new(c)),
                Err(e) => {
                    tracing::warn!("feature cache: {e}");
                    Features::Failed(e.to_string())
                }
            };
        }
        match &self.features {
            Features::Open(c) => Ok(c.clone()),
            Features::Failed(e) => Err(e.clone()),
            _ => Err("no feature cache: start treevis with --cache DIR (build one with `treevis cache build`)".into()),
        }
    }

    /// Replaces what is wanted; returns the answers already cached (in want order).
    pub fn want(&mut self, keys: Vec<JobKey>) -> Vec<(JobKey, Output)> {
        let mut ready = Vec::new();
        self.pending.clear();
        let mut seen = std::collections::HashSet::new();
        for k in keys {
            if !seen.insert(k.clone()) {
                continue;
            }
            match self.cache.get(&k) {
                Some(o) => ready.push((k, o)),
                None => self.pending.push_back(k),
            }
        }
        self.status.pending = self.pending.len();
        ready
    }

    pub fn has_work(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Runs the first pending job, batched with every pending job of the same kind, image
    /// and options; returns the results.
    pub fn step(&mut self) -> Vec<(JobKey, Output)> {
        self.step_with(&mut |_, _, _| true)
    }

    /// [`Scheduler::step`], telling `progress(key, done, total)` how a long job goes; a
    /// long job stops (and answers nothing) when it returns false.
    pub fn step_with(&mut self, progress: Progress) -> Vec<(JobKey, Output)> {
        let Some(first) = self.pending.front().cloned() else {
            return vec![];
        };
        let started = Instant::now();
        let group: Vec<JobKey> = self
            .pending
            .iter()
            .filter(|k| same_batch(&first, k))
            .take(self.max_batch)
            .cloned()
            .collect();
        self.pending.retain(|k| !group.contains(k));
        self.status.running = group.len();
        // a bug in the engine answers the jobs it hit with an error; the worker (and the
        // UI waiting on it) lives on
        let out = match catching(|| self.run_group(&group, progress)) {
            Ok(o) => o,
            Err(e) => group
                .iter()
                .map(|k| (k.clone(), Output::Failed(format!("{e:#}"))))
                .collect(),
        };
        for (k, o) in &out {
            self.cache.put(k.clone(), o.clone());
        }
        self.status.batches += 1;
        self.status.computed += out.len() as u64;
        self.status.running = 0;
        self.status.pending = self.pending.len();
        self.status.last_ms = started.elapsed().as_secs_f64() * 1e3;
        out
    }

    /// Runs an export (one batched pass for all its paths); a panic inside is an error.
    pub fn export(&mut self, e: &Export) -> anyhow::Result<String> {
        catching(|| self.export_inner(e))
    }

    fn export_inner(&mut self, e: &Export) -> anyhow::Result<String> {
        let f = self.forward(&e.image)?;
        std::fs::create_dir_all(&e.dir)
            .with_context(|| format!("cannot create {}", e.dir.display()))?;
        display::render_input(&self.model, &f.0)?.save(e.dir.join("input.png"))?;
        let mut paths = e.paths.clone();
        if let Some(t) = &e.tree {
            let mut stack: Vec<&ExportNode> = vec![t];
            while let Some(n) = stack.pop() {
                if !paths.contains(&n.path) {
                    paths.push(n.path.clone());
                }
                stack.extend(&n.children);
            }
        }
        let rs = recon::reconstruct(&self.model, &f.1, 0, &e.opts, &paths)?;
        for r in &rs {
            let stem = r.path.file_stem();
            display::render(&self.model, &r.grad, e.display)?
                .save(e.dir.join(format!("{stem}.png")))?;
            let v = crate::model::net::host_vec(&r.grad)?;
            crate::data::npy::write_f32(&e.dir.join(format!("{stem}.npy")), r.grad.dims(), &v)?;
        }
        if let Some(j) = &e.tree_json {
            std::fs::write(e.dir.join("tree.json"), j)?;
        }
        if let Some(t) = &e.tree {
            let root = computed_tree(t, &rs)?;
            let run = crate::report::tree::Run {
                model: &self.model,
                image: e
                    .image
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                input: &f.0,
                state: &f.1,
                opts: e.opts,
                display: e.display,
            };
            let page = crate::report::tree::page(&run, &root)?;
            let file = crate::report::write_html(&page, &e.dir)?;
            return Ok(format!(
                "wrote {} node(s) and {} to {}",
                rs.len(),
                file.file_name().unwrap_or_default().to_string_lossy(),
                e.dir.display()
            ));
        }
        Ok(format!("wrote {} node(s) to {}", rs.len(), e.dir.display()))
    }

    fn forward(&mut self, image: &PathBuf) -> anyhow::Result<Arc<(Tensor, ForwardState)>> {
        if let Some(i) = self.forwards.iter().position(|(p, _)| p == image) {
            if let Some(entry) = self.forwards.remove(i) {
                self.forwards.push_front(entry.clone());
                return Ok(entry.1);
            }
        }
        let rgb = crate::data::load_image(image)?;
        let x = crate::data::preprocess(&self.model, &rgb)?;
        let run = |m: &Model, f: &Faults| -> crate::error::Result<ForwardState> {
            f.check(Stage::Forward, 1)?;
            m.net.forward(&x.unsqueeze(0)?)
        };
        // out of memory: the states kept of other images go, and it is tried once more
        let state = match run(&self.model, &self.faults) {
            Err(e) if memory::is_oom(&e) && !self.forwards.is_empty() => {
                tracing::warn!(
                    "out of memory in a forward pass; dropping the kept states of {} image(s)",
                    self.forwards.len()
                );
                self.forwards.clear();
                run(&self.model, &self.faults)?
            }
            r => r?,
        };
        let entry = Arc::new((x, state));
        self.forwards.push_front((image.clone(), entry.clone()));
        self.forwards.truncate(FORWARDS);
        Ok(entry)
    }

    fn run_group(
        &mut self,
        group: &[JobKey],
        progress: Progress,
    ) -> anyhow::Result<Vec<(JobKey, Output)>> {
        let first = group.first().context("an empty job group")?;
        if let JobKey::Features { blob, channel } = first {
            let c = self.feature_cache().map_err(anyhow::Error::msg)?;
            let grid = c.grid(blob, *channel)?;
            return Ok(vec![(first.clone(), Output::Image(Arc::new(grid)))]);
        }
        let image = first
            .image()
            .context("every job but a feature grid is about an image")?
            .clone();
        Ok(match first {
            JobKey::Thumb { .. } => {
                let rgb = crate::data::load_image(&image)?;
                let t = image::imageops::thumbnail(&rgb, THUMB, THUMB);
                vec![(first.clone(), Output::Image(Arc::new(t)))]
            }
            JobKey::Input { .. } => {
                let f = self.forward(&image)?;
                let img = display::render_input(&self.model, &f.0)?;
                vec![(first.clone(), Output::Image(Arc::new(img)))]
            }
            JobKey::Labels { .. } => {
                let f = self.forward(&image)?;
                vec![(
                    first.clone(),
                    Output::Labels(recon::labels(&self.model, &f.1, 0, 5)?),
                )]
            }
            JobKey::Overview { top, .. } => {
                let f = self.forward(&image)?;
                let mut rows = recon::overview(&self.model, &f.1, 0, *top)?;
                if let Ok(c) = self.feature_cache() {
                    crate::featcache::rank_overview(&c, &mut rows);
                }
                vec![(first.clone(), Output::Overview(rows))]
            }
            JobKey::Features { .. } => unreachable!("answered above"),
            JobKey::Recon { opts, .. } => {
                let f = self.forward(&image)?;
                let net = &self.model.net;
                let (ok, mut out) = split_bad(group, |p| recon::resolve_path(net, p).map(|_| ()));
                let paths: Vec<Path> = ok.iter().map(|k| job_path(k).clone()).collect();
                if !paths.is_empty() {
                    let (model, faults, forwards) = (&self.model, &self.faults, &mut self.forwards);
                    let rs =
                        memory::in_batches(&paths, &mut self.max_batch, "gradient row", |chunk| {
                            faults.check(Stage::Rows, chunk.len())?;
                            recon::reconstruct(model, &f.1, 0, opts, chunk)
                                .inspect_err(|e| drop_kept_on_oom(forwards, e))
                        })?;
                    for (k, r) in ok.into_iter().zip(rs) {
                        let JobKey::Recon { display: d, .. } = k else {
                            unreachable!("grouped by kind")
                        };
                        let img = display::render(&self.model, &r.grad, *d)?;
                        out.push((k.clone(), Output::Image(Arc::new(img))));
                    }
                }
                out
            }
            JobKey::Children {
                opts, rank, ablate, ..
            } => {
                let f = self.forward(&image)?;
                let net = &self.model.net;
                let (ok, mut out) = split_bad(group, |p| recon::check_children_path(net, p));
                let paths: Vec<Path> = ok.iter().map(|k| job_path(k).clone()).collect();
                if !paths.is_empty() {
                    let (model, faults, forwards) = (&self.model, &self.faults, &mut self.forwards);
                    let kids =
                        memory::in_batches(&paths, &mut self.max_batch, "gradient row", |chunk| {
                            faults.check(Stage::Rows, chunk.len())?;
                            recon::children_ranked(model, &f.1, 0, opts, chunk, rank)
                                .inspect_err(|e| drop_kept_on_oom(forwards, e))
                        })?;
                    for ((key, mut c), p) in ok.into_iter().zip(kids).zip(&paths) {
                        if *ablate {
                            recon::ablate(&self.model, &f.1, 0, p, &mut c)?;
                        }
                        out.push((key.clone(), Output::Children(c)));
                    }
                }
                out
            }
            JobKey::Parents { opts, k, path, .. } => {
                let f = self.forward(&image)?;
                let p = recon::parents(&self.model, &f.1, 0, opts, path, *k)?;
                vec![(first.clone(), Output::Parents(p))]
            }
            JobKey::Sanity {
                opts,
                display: d,
                seed,
                path,
                ..
            } => {
                let f = self.forward(&image)?;
                let x = f.0.unsqueeze(0)?;
                let mut stopped = false;
                let s =
                    recon::sanity::sanity(&self.model, &x, opts, path, *d, *seed, &mut |n, t| {
                        let go = progress(first, n, t);
                        stopped = !go && n < t;
                        go
                    })?;
                if stopped {
                    return Ok(vec![]); // cancelled: nobody wants it any more
                }
                let strip = s.strip(&self.model)?;
                vec![(
                    first.clone(),
                    Output::Sanity(Arc::new((s.numbers(), strip))),
                )]
            }
        })
    }
}

/// Rows of one batched pass of `model` that fit in its device's free memory, `cap` at most.
fn rows_that_fit(model: &Model, cap: usize) -> usize {
    let row = Footprint::of(&model.net).row;
    let free = memory::free_bytes(&model.net.device);
    let rows = memory::fit(free, row, cap);
    tracing::info!(
        "engine: {rows} rows a batched pass ({} free, {} a row)",
        free.map_or("unknown".into(), memory::mb),
        memory::mb(row)
    );
    rows
}

/// After an out-of-memory failure, lets go of the forward states kept for other images
/// than the one at hand (the first), before the pass is retried smaller.
fn drop_kept_on_oom(
    forwards: &mut VecDeque<(PathBuf, Arc<(Tensor, ForwardState)>)>,
    e: &crate::error::Error,
) {
    if memory::is_oom(e) {
        forwards.truncate(1);
    }
}

/// An explored tree with the reconstructions of its paths.
fn computed_tree(t: &ExportNode, rs: &[recon::Recon]) -> anyhow::Result<recon::tree::TreeNode> {
    let r = rs
        .iter()
        .find(|r| r.path == t.path)
        .with_context(|| format!("no reconstruction of {}", t.path))?;
    Ok(recon::tree::TreeNode {
        path: t.path.clone(),
        child: t.child.clone(),
        grad: r.grad.clone(),
        note: r.note.clone(),
        children: t
            .children
            .iter()
            .map(|c| computed_tree(c, rs))
            .collect::<anyhow::Result<_>>()?,
    })
}

/// A long job's progress report: `(key, done, total)`, false to stop it.
pub type Progress<'a> = &'a mut dyn FnMut(&JobKey, usize, usize) -> bool;

/// The path of a reconstruction or children job.
fn job_path(k: &JobKey) -> &Path {
    match k {
        JobKey::Recon { path, .. }
        | JobKey::Children { path, .. }
        | JobKey::Parents { path, .. }
        | JobKey::Sanity { path, .. } => path,
        _ => unreachable!("only path jobs have paths"),
    }
}

/// Splits a batch into the jobs whose path passes `check` and the answers of those that do
/// not (a bad path fails alone, not its batch).
fn split_bad(
    group: &[JobKey],
    check: impl Fn(&Path) -> crate::error::Result<()>,
) -> (Vec<&JobKey>, Vec<(JobKey, Output)>) {
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for k in group {
        match check(job_path(k)) {
            Ok(()) => ok.push(k),
            Err(e) => failed.push((k.clone(), Output::Failed(e.to_string()))),
        }
    }
    (ok, failed)
}

fn same_batch(a: &JobKey, b: &JobKey) -> bool {
    match (a, b) {
        (
            JobKey::Recon {
                image: i1,
                opts: o1,
                ..
            },
            JobKey::Recon {
                image: i2,
                opts: o2,
                ..
            },
        ) => i1 == i2 && o1 == o2,
        (
            JobKey::Children {
                image: i1,
                opts: o1,
                rank: r1,
                ablate: a1,
                ..
            },
            JobKey::Children {
                image: i2,
                opts: o2,
                rank: r2,
                ablate: a2,
                ..
            },
        ) => i1 == i2 && o1 == o2 && r1 == r2 && a1 == a2,
        _ => a == b,
    }
}

/// The worker thread and its channels.
pub struct Engine {
    tx: Sender<Msg>,
    handle: Option<std::thread::JoinHandle<()>>,
    long: Arc<LongJob>,
}

/// The long job running on the worker, and whether a want has left it out.
#[derive(Default)]
struct LongJob {
    key: Mutex<Option<JobKey>>,
    cancel: AtomicBool,
}

fn is_long(k: &JobKey) -> bool {
    matches!(k, JobKey::Sanity { .. })
}

/// Runs `f`, turning a panic inside into an error.
fn catching<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    crate::panics::catching(f).unwrap_or_else(|m| Err(anyhow::anyhow!("internal error: {m}")))
}

/// The memory bound of the engine's result cache (bytes of images and tensors kept).
pub const RESULT_CACHE_BYTES: usize = 256 << 20;

/// Where the worker's events go; `false` from it means nobody listens any more.
pub type EventSink = Box<dyn Fn(Event) -> bool + Send>;

impl Engine {
    /// Starts the worker, which owns `model`; its events arrive on the returned channel.
    pub fn start(model: Model) -> std::io::Result<(Engine, Receiver<Event>)> {
        let (etx, events) = mpsc::channel::<Event>();
        let engine = Engine::start_with(
            Scheduler::new(model, RESULT_CACHE_BYTES),
            Box::new(move |e| etx.send(e).is_ok()),
        )?;
        Ok((engine, events))
    }

    /// Starts the worker, which owns the scheduler (and its model) and hands every event
    /// to `sink`.
    pub fn start_with(sched: Scheduler, sink: EventSink) -> std::io::Result<Engine> {
        let (tx, rx) = mpsc::channel::<Msg>();
        let long = Arc::new(LongJob::default());
        let l = long.clone();
        let handle = std::thread::Builder::new()
            .name("treevis-engine".into())
            .spawn(move || worker(sched, rx, sink, l))?;
        Ok(Engine {
            tx,
            handle: Some(handle),
            long,
        })
    }

    /// Says what is wanted now, most important first (replaces the previous want). A long
    /// job running that is not wanted any more stops at its next step.
    pub fn want(&self, keys: Vec<JobKey>) {
        if let Ok(k) = self.long.key.lock() {
            if k.as_ref().is_some_and(|k| !keys.contains(k)) {
                self.long.cancel.store(true, Ordering::Relaxed);
            }
        }
        let _ = self.tx.send(Msg::Want(keys));
    }

    /// Asks for an export; `Event::Exported` answers.
    pub fn export(&self, e: Export) {
        let _ = self.tx.send(Msg::Export(e));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Quit);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn worker(mut s: Scheduler, rx: Receiver<Msg>, sink: EventSink, long: Arc<LongJob>) {
    let send_all = |out: Vec<(JobKey, Output)>| {
        out.into_iter()
            .all(|(key, output)| sink(Event::Done { key, output }))
    };
    loop {
        // block when idle; otherwise take whatever arrived since the last batch
        let mut msgs = Vec::new();
        if !s.has_work() {
            match rx.recv() {
                Ok(m) => msgs.push(m),
                Err(_) => return,
            }
        }
        loop {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        for m in msgs {
            match m {
                Msg::Quit => return,
                Msg::Want(keys) => {
                    let ready = s.want(keys);
                    if !send_all(ready) {
                        return;
                    }
                }
                Msg::Export(e) => {
                    let r = s.export(&e).map_err(|e| format!("export failed: {e:#}"));
                    if !sink(Event::Exported(r)) {
                        return;
                    }
                }
            }
        }
        if s.has_work() {
            sink(Event::Status(Status {
                running: s.pending.len().min(s.max_batch),
                ..s.status
            }));
            let next = s.pending.front().filter(|k| is_long(k)).cloned();
            if let Ok(mut k) = long.key.lock() {
                long.cancel.store(false, Ordering::Relaxed);
                *k = next;
            }
            let out = s.step_with(&mut |key, done, total| {
                sink(Event::Progress {
                    key: key.clone(),
                    done,
                    total,
                });
                !long.cancel.load(Ordering::Relaxed)
            });
            if let Ok(mut k) = long.key.lock() {
                *k = None;
            }
            if !send_all(out) || !sink(Event::Status(s.status)) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WeightsSource;
    use candle_core::Device;

    fn sched() -> (Scheduler, tempfile::TempDir, PathBuf) {
        let m = crate::catalog::load("tiny", &WeightsSource::Default, &Device::Cpu).unwrap();
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("a.png");
        crate::data::pattern_image(40, 40).save(&img).unwrap();
        (Scheduler::new(m, 1 << 20), d, img)
    }

    fn recon(img: &std::path::Path, p: &str) -> JobKey {
        JobKey::Recon {
            image: img.to_path_buf(),
            path: p.parse().unwrap(),
            opts: Options::default(),
            display: Display::Norm,
        }
    }

    #[test]
    fn same_image_reconstructions_run_as_one_batch_and_every_job_is_answered() {
        let (mut s, _d, img) = sched();
        let keys: Vec<JobKey> = ["conv4:1", "conv3:2", "conv4:1/conv3:2", "conv1:0", "fc6:3"]
            .iter()
            .map(|p| recon(&img, p))
            .collect();
        assert!(s.want(keys.clone()).is_empty());
        let out = s.step();
        assert_eq!(s.status.batches, 1, "one batched pass");
        assert_eq!(out.len(), 5);
        for k in &keys {
            assert!(
                out.iter()
                    .any(|(o, r)| o == k && matches!(r, Output::Image(_))),
                "{k:?}"
            );
        }
        assert!(!s.has_work());
    }

    #[test]
    fn children_of_one_image_run_as_one_batch_and_a_leaf_fails_alone() {
        let (mut s, _d, img) = sched();
        let kids = |p: &str| JobKey::Children {
            image: img.clone(),
            path: p.parse().unwrap(),
            opts: Options::default(),
            rank: Ranking::abs(3),
            ablate: false,
        };
        let keys = vec![
            kids("conv4:1"),
            kids("conv4:1/conv3:2"),
            kids("conv1:0"),
            kids("fc6:2"),
        ];
        s.want(keys.clone());
        let out = s.step();
        assert_eq!((s.status.batches, out.len()), (1, 4));
        for (k, o) in &out {
            match o {
                Output::Children(c) => assert_eq!(c.len(), 3, "{k:?}"),
                Output::Failed(m) => assert!(
                    k == &kids("conv1:0") && m.contains("no children"),
                    "{k:?}: {m}"
                ),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn identical_requests_are_computed_once_and_then_cached() {
        let (mut s, _d, img) = sched();
        let k = recon(&img, "conv2:1");
        s.want(vec![
            k.clone(),
            k.clone(),
            JobKey::Labels { image: img.clone() },
        ]);
        assert_eq!(s.pending.len(), 2, "duplicates dropped");
        while s.has_work() {
            s.step();
        }
        let computed = s.status.computed;
        let ready = s.want(vec![k.clone()]);
        assert_eq!(ready.len(), 1, "answered from the cache");
        assert!(!s.has_work());
        assert_eq!(s.status.computed, computed);
    }

    #[test]
    fn a_new_want_cancels_what_left_the_screen_and_sets_priority() {
        let (mut s, _d, img) = sched();
        s.want(vec![recon(&img, "conv4:1"), recon(&img, "conv4:2")]);
        // the user moved on before anything ran
        let labels = JobKey::Labels { image: img.clone() };
        let thumb = JobKey::Thumb { image: img.clone() };
        s.want(vec![labels.clone(), thumb.clone()]);
        let first = s.step();
        assert_eq!(first[0].0, labels, "first wanted, first served");
        let second = s.step();
        assert_eq!(second[0].0, thumb);
        assert!(!s.has_work(), "the reconstructions were cancelled");
        assert_eq!(s.status.computed, 2);
    }

    #[test]
    fn exports_write_pngs_and_raw_gradients() {
        let (mut s, d, img) = sched();
        let out = d.path().join("export");
        let paths: Vec<Path> = vec![
            "conv4:1".parse().unwrap(),
            "conv4:1/conv3:2".parse().unwrap(),
        ];
        let msg = s
            .export(&Export {
                image: img.clone(),
                paths,
                opts: Options::default(),
                display: Display::Mean,
                dir: out.clone(),
                tree_json: Some("{}".into()),
                tree: None,
            })
            .unwrap();
        assert!(msg.contains("2 node(s)"));
        for f in [
            "input.png",
            "conv4_1.png",
            "conv4_1.npy",
            "conv4_1--conv3_2.npy",
            "tree.json",
        ] {
            assert!(out.join(f).exists(), "{f}");
        }
        assert_eq!(
            crate::data::npy::read_f32(&out.join("conv4_1.npy"))
                .unwrap()
                .shape,
            vec![3, 39, 39]
        );
    }

    #[test]
    fn failures_are_answered_not_dropped() {
        let (mut s, d, img) = sched();
        let bad = d.path().join("broken.png");
        std::fs::write(&bad, b"not a png").unwrap();
        s.want(vec![
            JobKey::Labels { image: bad.clone() },
            recon(&img, "conv9:1"),
            recon(&img, "conv4:1"),
        ]);
        let mut out = Vec::new();
        while s.has_work() {
            out.extend(s.step());
        }
        assert_eq!(out.len(), 3);
        assert!(matches!(&out[0].1, Output::Failed(m) if m.contains("broken.png")));
        assert!(out.iter().any(|(k, o)| k == &recon(&img, "conv9:1")
            && matches!(o, Output::Failed(m) if m.contains("unknown blob"))));
        assert!(out
            .iter()
            .any(|(k, o)| k == &recon(&img, "conv4:1") && matches!(o, Output::Image(_))));
    }

    #[test]
    fn the_thread_answers_without_blocking_the_caller() {
        let m = crate::catalog::load("tiny", &WeightsSource::Default, &Device::Cpu).unwrap();
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("a.png");
        crate::data::pattern_image(40, 40).save(&img).unwrap();
        let (e, events) = Engine::start(m).unwrap();
        let keys: Vec<JobKey> = (0..8).map(|c| recon(&img, &format!("conv3:{c}"))).collect();
        e.want(keys.clone());
        let mut got = std::collections::HashSet::new();
        while got.len() < keys.len() {
            match events
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap()
            {
                Event::Done { key, .. } => {
                    got.insert(key);
                }
                Event::Status(_) | Event::Exported(_) | Event::Progress { .. } => {}
            }
        }
    }

    #[test]
    fn parents_ablation_and_the_tree_page() {
        let (mut s, d, img) = sched();
        let kids = JobKey::Children {
            image: img.clone(),
            path: "conv4:1".parse().unwrap(),
            opts: Options::default(),
            rank: Ranking::abs(3),
            ablate: true,
        };
        let parents = JobKey::Parents {
            image: img.clone(),
            path: "conv3:2".parse().unwrap(),
            opts: Options::default(),
            k: 4,
        };
        let top = JobKey::Parents {
            image: img.clone(),
            path: "fc6:0".parse().unwrap(),
            opts: Options::default(),
            k: 4,
        };
        s.want(vec![kids.clone(), parents.clone(), top.clone()]);
        let mut out = Vec::new();
        while s.has_work() {
            out.extend(s.step());
        }
        let get = |k: &JobKey| out.iter().find(|(o, _)| o == k).map(|(_, r)| r.clone());
        let Some(Output::Children(c)) = get(&kids) else {
            panic!("{:?}", get(&kids))
        };
        assert!(c.len() == 3 && c.iter().all(|c| c.drop.is_some()), "{c:?}");
        let Some(Output::Parents(p)) = get(&parents) else {
            panic!("{:?}", get(&parents))
        };
        assert!(
            !p.is_empty() && p.iter().all(|p| p.blob == "conv4"),
            "{p:?}"
        );
        assert!(
            matches!(get(&top), Some(Output::Failed(m)) if m.contains("top of the tree")),
            "{:?}",
            get(&top)
        );
        // an export with the explored tree writes its page
        let root: Path = "conv4:1".parse().unwrap();
        let tree = ExportNode {
            path: root.clone(),
            child: None,
            children: c
                .iter()
                .map(|c| ExportNode {
                    path: c.path.clone(),
                    child: Some(c.clone()),
                    children: vec![],
                })
                .collect(),
        };
        let dir = d.path().join("page");
        let msg = s
            .export(&Export {
                image: img.clone(),
                paths: vec![root],
                opts: Options::default(),
                display: Display::Norm,
                dir: dir.clone(),
                tree_json: None,
                tree: Some(Box::new(tree)),
            })
            .unwrap();
        assert!(msg.contains("4 node(s) and index.html"), "{msg}");
        let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
        assert_eq!(html.matches("<details").count(), 4);
        // a folder that cannot be made is an error, not a panic
        let file = d.path().join("f");
        std::fs::write(&file, b"").unwrap();
        let bad = Export {
            image: img.clone(),
            paths: vec!["conv4:1".parse().unwrap()],
            opts: Options::default(),
            display: Display::Norm,
            dir: file.join("x"),
            tree_json: None,
            tree: None,
        };
        assert!(s.export(&bad).is_err());
    }

    fn sanity_key(img: &std::path::Path) -> JobKey {
        JobKey::Sanity {
            image: img.to_path_buf(),
            path: "conv3:1".parse().unwrap(),
            opts: Options::default(),
            display: Display::Norm,
            seed: 0,
        }
    }

    #[test]
    fn a_sanity_check_reports_progress_and_stops_when_told() {
        let (mut s, _d, img) = sched();
        let k = sanity_key(&img);
        // stopped after its first step: nothing is answered or cached
        s.want(vec![k.clone()]);
        let mut seen = Vec::new();
        let out = s.step_with(&mut |key, done, total| {
            seen.push((key.clone(), done, total));
            false
        });
        assert!(out.is_empty() && !s.has_work());
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, 1);
        // run whole: one progress report per randomized layer, then the numbers and strip
        assert!(s.want(vec![k.clone()]).is_empty(), "not cached");
        let mut steps = 0;
        let out = s.step_with(&mut |_, done, total| {
            steps = total;
            assert!(done <= total);
            true
        });
        let Some((_, Output::Sanity(r))) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(r.0.steps.len(), steps);
        assert!(r.0.steps.iter().all(|s| s.grad.is_none()), "numbers only");
        assert!(r.1.width() > 64 * (steps as u32 + 1));
    }

    #[test]
    fn the_engine_thread_sends_sanity_progress() {
        let m = crate::catalog::load("tiny", &WeightsSource::Default, &Device::Cpu).unwrap();
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("a.png");
        crate::data::pattern_image(40, 40).save(&img).unwrap();
        let (e, events) = Engine::start(m).unwrap();
        let k = sanity_key(&img);
        e.want(vec![k.clone()]);
        let mut progress = Vec::new();
        loop {
            match events
                .recv_timeout(std::time::Duration::from_secs(60))
                .unwrap()
            {
                Event::Progress { key, done, total } => {
                    assert_eq!(key, k);
                    progress.push((done, total));
                }
                Event::Done { key, output } => {
                    assert_eq!(key, k);
                    assert!(matches!(output, Output::Sanity(_)), "{output:?}");
                    break;
                }
                _ => {}
            }
        }
        let total = progress.last().unwrap().1;
        assert_eq!(
            progress,
            (1..=total).map(|d| (d, total)).collect::<Vec<_>>()
        );
    }
}
