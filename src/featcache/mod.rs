//! The neuron feature cache (reference doc, section 6): for every neuron of the chosen blobs,
//! the top-k dataset images by the channel's spatial max, each with its root-only
//! reconstruction cropped to the reconstruction's non-zero box, in LMDB.
//!
//! Two passes, both batched and checkpointed in LMDB transactions, so a build killed at any
//! moment resumes from its last checkpoint and ends with the same cache:
//! 1. *scan*: forward every image; keep per channel the top-k (image, max, location) and a
//!    fixed sample of the maxima for quantiles;
//! 2. *crops*: forward each image that some list kept, reconstruct all of its entries in
//!    batched backward passes, crop (the box found where the gradient is), encode PNG.
//!
//! Batches take as many images as fit in the device's free memory ([`Sizing`],
//! [`crate::memory`]), and one that does not fit after all is halved and retried; each
//! batch's images are decoded while the device runs the batch before ([`pool`]). Batches of
//! other sizes (a build resumed where less memory is free) change the activations by
//! round-off only: a matrix product's blocking follows its width.
//!
//! `--shard i/N` scans the images with `index % N == i`; [`merge`] folds shards into the
//! cache one build would give (ties go to the lower image index, so order never matters).

pub mod grid;
pub mod pool;
pub mod store;
pub mod topk;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use candle_core::{DType, Tensor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hex::encode as hex;
use crate::memory::{self, Faults, Footprint, Stage};
use crate::model::{Backend, Model};
use crate::recon::{self, display, Options};
use store::{Bytes, Reader, Store};
use topk::{BlobTop, Entry};

/// Longest time between checkpoints, whatever `--checkpoint` says.
const CHECKPOINT_SECS: std::time::Duration = std::time::Duration::from_secs(60);

/// Version of the cache layout.
pub const FORMAT: u32 = 1;

/// What a cache was built from; a cache serves only the model it was built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format: u32,
    pub model: String,
    /// SHA-256 of the spec's preprocessing, layers and blobs, and of the mean image, if any.
    pub spec_sha256: String,
    /// SHA-256 of every weight tensor, in layer order (independent of the file format).
    pub weights_sha256: String,
    pub opts: Options,
    pub top_k: usize,
    pub layers: Vec<String>,
    /// SHA-256 of the dataset listing (one path per line).
    pub dataset_sha256: String,
    pub images: u64,
    /// `(i, n)`: this cache scanned the images with `index % n == i`; `(0, 1)`: all.
    pub shard: (u64, u64),
}

impl Meta {
    /// Why a cache with `self` cannot continue as, or merge with, one with `other`.
    pub fn mismatch(&self, other: &Meta) -> Option<String> {
        let checks: [(&str, bool); 8] = [
            ("format", self.format == other.format),
            ("model", self.model == other.model),
            ("spec", self.spec_sha256 == other.spec_sha256),
            ("weights", self.weights_sha256 == other.weights_sha256),
            ("method or multiplier mode", self.opts == other.opts),
            ("top-k", self.top_k == other.top_k),
            ("layers", self.layers == other.layers),
            (
                "dataset (other images, or images changed since: sizes or modification times differ)",
                self.dataset_sha256 == other.dataset_sha256 && self.images == other.images,
            ),
        ];
        checks
            .iter()
            .find(|(_, ok)| !ok)
            .map(|(what, _)| what.to_string())
    }

    /// Whether this cache was built for `model`'s spec and weights.
    pub fn check_model(&self, model: &Model, path: &Path) -> Result<()> {
        let (spec, weights) = (spec_sha256(model)?, weights_sha256(model)?);
        if self.spec_sha256 != spec || self.weights_sha256 != weights {
            return Err(Error::db(
                path,
                format!(
                    "this feature cache was built for model `{}` with other {} (weights {}…); build one for this model with `treevis cache build`",
                    self.model,
                    if self.spec_sha256 != spec { "spec" } else { "weights" },
                    short(&self.weights_sha256)
                ),
            ));
        }
        Ok(())
    }
}

/// The start of a digest, for messages (a damaged record may hold anything).
pub fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// SHA-256 of the spec's preprocessing, layers and blobs, and of the mean image.
pub fn spec_sha256(model: &Model) -> Result<String> {
    let mut h = Sha256::new();
    // what decides the numbers, not the name, description or file names
    let spec = model.spec();
    let json = serde_json::to_vec(&(&spec.input, &spec.layers, &spec.blobs))
        .map_err(|e| Error::Input(e.to_string()))?;
    h.update(json);
    if let Some(m) = &model.mean_image {
        for v in m {
            h.update(v.to_le_bytes());
        }
    }
    Ok(hex(h.finalize()))
}

/// SHA-256 of the weights: every tensor's shape and values, in layer order.
pub fn weights_sha256(model: &Model) -> Result<String> {
    let mut h = Sha256::new();
    for l in &model.net.layers {
        for t in l.params() {
            for d in t.dims() {
                h.update((*d as u64).to_le_bytes());
            }
            let bytes: Vec<u8> = crate::model::net::with_host(t, |v| {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            })?;
            h.update(&bytes);
        }
    }
    Ok(hex(h.finalize()))
}

/// SHA-256 of a dataset listing.
/// SHA-256 of the dataset's listing: every name, with each file's size and modification
/// time, so that a build resumed after images were replaced is refused instead of cropping
/// the new files beside the old activations. (Records of an LMDB are named only: their
/// database cannot change under a build without failing its own checks.)
pub fn dataset_sha256(paths: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for p in paths {
        h.update(p.to_string_lossy().as_bytes());
        if let Ok(m) = std::fs::metadata(p) {
            h.update(m.len().to_le_bytes());
            if let Ok(t) = m.modified().and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .map_err(std::io::Error::other)
            }) {
                h.update(t.as_nanos().to_le_bytes());
            }
        }
        h.update(b"\n");
    }
    hex(h.finalize())
}

/// What `treevis cache build` does.
pub struct BuildOptions {
    /// The dataset, listed (see [`crate::data::source::collect`]).
    pub images: Vec<PathBuf>,
    /// Blob names; empty: every blob of the tree.
    pub layers: Vec<String>,
    pub top_k: usize,
    pub opts: Options,
    /// Images per forward pass: exactly this many, or at most this many where [`Sizing`]
    /// sizes the batches by the device's free memory. A batch that does not fit is halved.
    pub batch: usize,
    pub out: PathBuf,
    pub shard: (u64, u64),
    /// Images between checkpoints.
    pub checkpoint: usize,
    pub quiet: bool,
}

/// How a build sizes its batches.
#[derive(Debug, Clone, Default)]
pub struct Sizing {
    /// Size each pass's batches to the device's free memory ([`memory::free_bytes`]) and
    /// the net's shapes ([`Footprint`]), [`BuildOptions::batch`] images at most; false:
    /// `batch` images exactly.
    pub auto: bool,
    /// A test hook: batches that fail as on a full device.
    pub faults: Faults,
}

/// What a build measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub scanned: u64,
    pub skipped: u64,
    pub scan_seconds: f64,
    pub reconstructions: u64,
    pub crop_seconds: f64,
    pub disk_bytes: u64,
    /// Images per forward pass of pass 1 and of pass 2, and gradient rows per backward pass,
    /// as chosen (of the first device); an allocation that failed halved them since.
    #[serde(default)]
    pub scan_batch: usize,
    #[serde(default)]
    pub crop_batch: usize,
    #[serde(default)]
    pub crop_rows: usize,
}

impl Report {
    pub fn images_per_second(&self) -> f64 {
        self.scanned as f64 / self.scan_seconds.max(1e-9)
    }
    pub fn recons_per_second(&self) -> f64 {
        self.reconstructions as f64 / self.crop_seconds.max(1e-9)
    }
}

fn progress(quiet: bool, len: u64, what: &str) -> indicatif::ProgressBar {
    if quiet {
        return indicatif::ProgressBar::hidden();
    }
    crate::progress::bar(
        len,
        &format!("{what} [{{bar:30}}] {{pos}}/{{len}} {{per_sec}} ETA {{eta}} {{msg}}"),
    )
}

/// Blob indices of `names` (all blobs when empty).
fn blob_indices(model: &Model, names: &[String]) -> Result<Vec<usize>> {
    let net = &model.net;
    if names.is_empty() {
        return Ok((0..net.blobs.len()).collect());
    }
    if let Some((i, n)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(Error::Input(format!(
            "--layers names `{n}` twice (at {} and {})",
            names[..i].iter().position(|m| m == n).map_or(0, |j| j + 1),
            i + 1
        )));
    }
    names
        .iter()
        .map(|n| {
            net.blob_index(n).ok_or_else(|| {
                let known: Vec<&str> = net.blobs.iter().map(|b| b.name.as_str()).collect();
                Error::Input(format!(
                    "no blob `{n}` in model `{}` (blobs: {})",
                    model.spec().name,
                    known.join(", ")
                ))
            })
        })
        .collect()
}

/// Loads and preprocesses images, in parallel; failures come back per image.
fn load_batch(model: &Model, paths: &[&Path]) -> Vec<Result<Tensor>> {
    paths
        .par_iter()
        .map(|p| crate::data::preprocess(model, &crate::data::load_image(p)?))
        .collect()
}

/// One scanned image: per chosen blob, per channel, (max, position).
type Maxima = Vec<Vec<(f32, u32)>>;

/// The maximum of each of the `rows` rows of `plane` values in `t`, and the first position
/// where it occurs. On a GPU this is reduced there, so that only two numbers a channel
/// come back to the host, not the whole activation map.
fn channel_maxima(t: &Tensor, rows: usize, plane: usize) -> Result<Vec<(f32, u32)>> {
    if t.device().is_cpu() {
        return crate::model::net::with_host(t, |v| v.chunks(plane).map(first_max).collect());
    }
    channel_maxima_on_device(t, rows, plane)
}

/// The maximum of `row` and its first position.
fn first_max(row: &[f32]) -> (f32, u32) {
    let (mut bi, mut bv) = (0u32, f32::NEG_INFINITY);
    for (j, &x) in row.iter().enumerate() {
        if x > bv {
            (bi, bv) = (j as u32, x);
        }
    }
    (bv, bi)
}

/// [`channel_maxima`] with tensor operations on `t`'s device. Ties go to the first position,
/// as on the host (a device's own argmax may pick any of them).
fn channel_maxima_on_device(t: &Tensor, rows: usize, plane: usize) -> Result<Vec<(f32, u32)>> {
    let dev = t.device();
    let flat = t
        .to_dtype(candle_core::DType::F32)?
        .reshape((rows, plane))?;
    let max = flat.max_keepdim(1)?;
    let at = Tensor::arange(0u32, plane as u32, dev)?.broadcast_as((rows, plane))?;
    let past = Tensor::new(plane as u32, dev)?.broadcast_as((rows, plane))?;
    let first = crate::model::transfer::download::<u32>(
        &flat.broadcast_eq(&max)?.where_cond(&at, &past)?.min(1)?,
    )?;
    let max = crate::model::transfer::download::<f32>(&max)?;
    // a row of NaN has no position equal to its maximum: 0, as on the host
    Ok(max
        .into_iter()
        .zip(first)
        .map(|(m, i)| (m, if i < plane as u32 { i } else { 0 }))
        .collect())
}

/// Per image (`inputs`, as [`load_batch`] gave them), its maxima or why it cannot be read
/// (skipped); `Err` when the forward pass itself fails (the build stops and can be
/// resumed: no image is skipped for it). The readable images run `*batch` at a time, halved
/// after a failed allocation.
fn scan_batch(
    model: &Model,
    blobs: &[usize],
    inputs: Vec<Result<Tensor>>,
    batch: &mut usize,
    faults: &Faults,
) -> Result<Vec<Result<Maxima>>> {
    let ok: Vec<Tensor> = inputs
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let maxima = memory::in_batches(&ok, batch, "image", |chunk| {
        faults.check(Stage::Scan, chunk.len())?;
        scan_forward(model, blobs, chunk)
    })?;
    let mut it = maxima.into_iter();
    Ok(inputs
        .into_iter()
        .map(|r| {
            r.and_then(|_| {
                it.next()
                    .ok_or_else(|| Error::internal("a loaded image without its maxima"))
            })
        })
        .collect())
}

/// The maxima of one inference pass over `images`.
fn scan_forward(model: &Model, blobs: &[usize], images: &[Tensor]) -> Result<Vec<Maxima>> {
    let x = Tensor::stack(images, 0)?.to_device(&model.net.device)?;
    let state = model.net.forward_blobs(&x)?;
    let per_blob = blobs
        .iter()
        .map(|&bi| {
            let b = &model.net.blobs[bi];
            let (c, plane) = (b.shape.channels(), b.shape.plane());
            let rows = channel_maxima(state.output(b.layer, &b.name)?, images.len() * c, plane)?;
            Ok(rows.chunks(c).map(<[_]>::to_vec).collect::<Vec<_>>())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((0..images.len())
        .map(|i| per_blob.iter().map(|b| b[i].clone()).collect())
        .collect())
}

/// A record of the store: key and value.
type Record = (String, Vec<u8>);

/// One entry to reconstruct: where it goes and what it is.
#[derive(Clone)]
struct Want {
    blob: usize,
    channel: usize,
    rank: usize,
    entry: Entry,
}

fn crop_key(blob: &str, channel: usize, rank: usize) -> String {
    format!("crop/{blob}/{channel:06}/{rank:03}")
}

/// A cached crop: the entry, the box (x0, y0, x1, y1; empty when the reconstruction is all
/// zero) and the two PNGs.
#[derive(Debug, Clone, PartialEq)]
pub struct Crop {
    pub entry: Entry,
    pub bbox: [u32; 4],
    pub image_png: Vec<u8>,
    pub recon_png: Vec<u8>,
}

impl Crop {
    fn encode(&self) -> Vec<u8> {
        let mut b = Bytes::default();
        b.u32(self.entry.image)
            .f32(self.entry.act)
            .u32(self.entry.pos);
        for v in self.bbox {
            b.u32(v);
        }
        b.blob(&self.image_png).blob(&self.recon_png);
        b.0
    }

    fn decode(bytes: &[u8], what: &str) -> Result<Crop> {
        let mut r = Reader::new(bytes, what);
        let entry = Entry {
            image: r.u32()?,
            act: r.f32()?,
            pos: r.u32()?,
        };
        let bbox = [r.u32()?, r.u32()?, r.u32()?, r.u32()?];
        Ok(Crop {
            entry,
            bbox,
            image_png: r.blob()?.to_vec(),
            recon_png: r.blob()?.to_vec(),
        })
    }
}

fn png(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| Error::Input(format!("PNG encoding: {e}")))?;
    Ok(out)
}

/// The box of the non-zero pixels of a `[3, H, W]` gradient: (x0, y0, x1, y1), exclusive.
pub fn nonzero_box(grad: &[f32], h: usize, w: usize) -> Option<[u32; 4]> {
    let plane = h * w;
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for i in 0..plane {
        if (0..3).any(|c| grad[c * plane + i] != 0.0) {
            let (y, x) = (i / w, i % w);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    (x1 > x0).then_some([x0 as u32, y0 as u32, x1 as u32, y1 as u32])
}

/// [`nonzero_box`] with tensor operations where the `[3, H, W]` gradient is, so that four
/// numbers come back instead of the gradient: the pixels where some channel is non-zero
/// (`|g|` summed over channels: no cancelling, and NaN counts as non-zero, as on the host),
/// the rows and columns that hold one, and the first and last of each as the maximum of a
/// ramp (`n - i` is largest at the first, `i + 1` at the last).
pub fn nonzero_box_on_device(grad: &Tensor) -> Result<Option<[u32; 4]>> {
    let (_, h, w) = grad.dims3()?;
    let dev = grad.device();
    let any = grad
        .to_dtype(DType::F32)?
        .abs()?
        .sum(0)?
        .ne(0f32)?
        .to_dtype(DType::F32)?;
    // float ramps: exact for any image side below 2^24
    let ends = |lines: &Tensor, n: usize| -> Result<[Tensor; 2]> {
        let i = Tensor::arange(0f32, n as f32, dev)?;
        let first = lines.mul(&i.affine(-1.0, n as f64)?)?.max(0)?;
        let last = lines.mul(&i.affine(1.0, 1.0)?)?.max(0)?;
        Ok([first, last])
    };
    let [y_first, y_end] = ends(&any.max(1)?, h)?;
    let [x_first, x_end] = ends(&any.max(0)?, w)?;
    let v = crate::model::transfer::download::<f32>(&Tensor::stack(
        &[x_first, y_first, x_end, y_end],
        0,
    )?)?;
    let &[x_first, y_first, x_end, y_end] = v.as_slice() else {
        return Err(Error::internal("a box of four numbers came back otherwise"));
    };
    let (x0, y0) = (w as f32 - x_first, h as f32 - y_first);
    Ok((x_end > 0.0).then_some([x0 as u32, y0 as u32, x_end as u32, y_end as u32]))
}

/// The box of `grad`'s non-zero pixels where it is computed: on the host for the CPU
/// kernels (the gradient is there), with tensor operations for the tensor-op backend.
fn grad_box(model: &Model, grad: &Tensor) -> Result<Option<[u32; 4]>> {
    if model.net.backend == Backend::TensorOps {
        return nonzero_box_on_device(grad);
    }
    let (_, h, w) = grad.dims3()?;
    crate::model::net::with_host(grad, |g| nonzero_box(g, h, w))
}

/// A crop of one reconstruction: its box, the input's crop and the reconstruction's
/// (rendered from the crop alone, copied to the host: its normalization by the largest
/// magnitude is that of the whole, which is all inside the box), empty when it is zero.
fn crop_of(
    model: &Model,
    grad: &Tensor,
    seen: &image::RgbImage,
) -> Result<([u32; 4], Vec<u8>, Vec<u8>)> {
    let Some(b) = grad_box(model, grad)? else {
        return Ok(([0; 4], Vec::new(), Vec::new()));
    };
    let (bw, bh) = (b[2] - b[0], b[3] - b[1]);
    let part = grad
        .narrow(1, b[1] as usize, bh as usize)?
        .narrow(2, b[0] as usize, bw as usize)?;
    let shown = display::render(model, &part, display::Display::Norm)?;
    let image = image::imageops::crop_imm(seen, b[0], b[1], bw, bh).to_image();
    Ok((
        b,
        png(&shrink(image, CROP_MAX))?,
        png(&shrink(shown, CROP_MAX))?,
    ))
}

/// Longest side of a stored crop, pixels: twice a grid cell, so whole-image crops of
/// 224-pixel inputs (fc blobs) take a quarter of the space.
pub const CROP_MAX: u32 = 2 * grid::CELL;

/// Scales `img` down (never up) so that its longer side is at most `max`.
fn shrink(img: image::RgbImage, max: u32) -> image::RgbImage {
    let (w, h) = img.dimensions();
    if w.max(h) <= max {
        return img;
    }
    let s = max as f32 / w.max(h) as f32;
    let (nw, nh) = (
        ((w as f32 * s).round() as u32).max(1),
        ((h as f32 * s).round() as u32).max(1),
    );
    image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle)
}

/// Rows of one batched backward pass at most (bounds memory on large nets).
const RECON_ROWS: usize = 32;

/// An image of pass 2, decoded: its input, the input as the network sees it, and the
/// entries it is to give crops for.
struct Decoded {
    input: Tensor,
    seen: image::RgbImage,
    wants: Vec<Want>,
}

/// The record of an entry whose image cannot be read now: its cells stay empty.
fn empty_record(model: &Model, wt: &Want) -> Record {
    let c = Crop {
        entry: wt.entry,
        bbox: [0; 4],
        image_png: Vec::new(),
        recon_png: Vec::new(),
    };
    (
        crop_key(&model.net.blobs[wt.blob].name, wt.channel, wt.rank),
        c.encode(),
    )
}

/// Pass 2's host work on a batch (done while the device computes the batch before): the
/// images decoded and rendered as the network sees them. An image that read in pass 1 but
/// not now (changed or removed since) leaves its cells empty rather than stopping the build
/// for good: the records of those come back beside the decoded images.
fn decode_crops(
    model: &Model,
    images: Vec<(&Path, Vec<Want>)>,
) -> Result<(Vec<Decoded>, Vec<Record>)> {
    let paths: Vec<&Path> = images.iter().map(|(p, _)| *p).collect();
    let loaded = load_batch(model, &paths);
    let mut empty = Vec::new();
    let mut decoded = Vec::new();
    for ((p, wants), r) in images.into_iter().zip(loaded) {
        match r {
            Ok(input) => decoded.push(Decoded {
                seen: display::render_input(model, &input)?,
                input,
                wants,
            }),
            Err(e) => {
                tracing::warn!("{}: {e}; its crops are left empty", p.display());
                empty.extend(wants.iter().map(|wt| empty_record(model, wt)));
            }
        }
    }
    Ok((decoded, empty))
}

/// Pass 2's batch sizes on one device: images per forward pass, gradient rows per backward
/// pass (each halved after a failed allocation, and kept so for the next batch).
struct CropBatch {
    images: AtomicUsize,
    rows: AtomicUsize,
}

/// The records of the crops of `decoded`: forward passes of `batch.images` images, backward
/// passes of `batch.rows` rows.
fn crop_batch(
    model: &Model,
    opts: &Options,
    decoded: &[Decoded],
    batch: &CropBatch,
    faults: &Faults,
) -> Result<Vec<Record>> {
    let mut images = batch.images.load(Ordering::Relaxed);
    let mut rows = batch.rows.load(Ordering::Relaxed);
    let out = memory::in_batches(decoded, &mut images, "image", |chunk| {
        faults.check(Stage::Forward, chunk.len())?;
        let inputs: Vec<Tensor> = chunk.iter().map(|d| d.input.clone()).collect();
        let x = Tensor::stack(&inputs, 0)?.to_device(&model.net.device)?;
        let state = model.net.forward(&x)?;
        let mut out = Vec::new();
        for (i, d) in chunk.iter().enumerate() {
            out.extend(memory::in_batches(
                &d.wants,
                &mut rows,
                "gradient row",
                |wants| {
                    faults.check(Stage::Rows, wants.len())?;
                    crop_rows(model, opts, &state, i, &d.seen, wants)
                },
            )?);
        }
        Ok(out)
    });
    batch.images.store(images, Ordering::Relaxed);
    batch.rows.store(rows, Ordering::Relaxed);
    out
}

/// The records of `wants` of image `img` of `state`, in one batched backward pass.
fn crop_rows(
    model: &Model,
    opts: &Options,
    state: &crate::model::ForwardState,
    img: usize,
    seen: &image::RgbImage,
    wants: &[Want],
) -> Result<Vec<Record>> {
    let rpaths: Vec<recon::Path> = wants
        .iter()
        .map(|wt| recon::Path::root(&model.net.blobs[wt.blob].name, wt.channel))
        .collect();
    let recons = recon::reconstruct(model, state, img, opts, &rpaths)?;
    wants
        .iter()
        .zip(recons)
        .map(|(wt, r)| {
            let (bbox, image_png, recon_png) = crop_of(model, &r.grad, seen)?;
            let c = Crop {
                entry: wt.entry,
                bbox,
                image_png,
                recon_png,
            };
            Ok((
                crop_key(&model.net.blobs[wt.blob].name, wt.channel, wt.rank),
                c.encode(),
            ))
        })
        .collect()
}

fn u64_value(store: &Store, key: &str) -> Result<Option<u64>> {
    Ok(store
        .get(key)?
        .and_then(|v| String::from_utf8(v).ok()?.parse().ok()))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::internal(format!("a cache record: {e}")))
}

fn from_json<T: for<'a> Deserialize<'a>>(store: &Store, key: &str) -> Result<Option<T>> {
    store
        .get(key)?
        .map(|v| {
            serde_json::from_slice(&v)
                .map_err(|e| Error::db(store.path(), format!("record `{key}`: {e}")))
        })
        .transpose()
}

/// Writes pass 1's state at `pos` in one transaction; `last`: sorted, and marked done.
fn checkpoint_scan(
    store: &Store,
    tops: &mut [BlobTop],
    pos: usize,
    skipped: &[(u64, String)],
    last: bool,
) -> Result<()> {
    if last {
        tops.iter_mut().for_each(BlobTop::finish);
    }
    let mut puts: Vec<Record> = tops
        .iter()
        .map(|t| (format!("top/{}", t.name), t.encode()))
        .collect();
    puts.push(("scan/next".into(), pos.to_string().into_bytes()));
    puts.push(("scan/skipped".into(), json(&skipped)?));
    if last {
        puts.push(("scan/done".into(), b"1".to_vec()));
    }
    store.write(&puts)
}

/// A device's starting batches: images per pass 1 and pass 2 forward, rows per backward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batches {
    scan: usize,
    crop: usize,
    rows: usize,
}

/// The starting batches of each of `models`: `o.batch` images, or as many as fit in the
/// free memory of its device (shared evenly by the models on it), `o.batch` at most.
fn plan(models: &[Model], o: &BuildOptions, sizing: &Sizing) -> Vec<Batches> {
    models
        .iter()
        .map(|m| {
            if !sizing.auto {
                return Batches {
                    scan: o.batch,
                    crop: o.batch,
                    rows: RECON_ROWS,
                };
            }
            let dev = &m.net.device;
            let fp = Footprint::of(&m.net);
            let sharing = models
                .iter()
                .filter(|x| x.net.device.same_device(dev))
                .count()
                .max(1) as u64;
            let free = memory::free_bytes(dev).map(|f| f / sharing);
            // rows take at most an eighth of it, the forward state the rest of the half
            let rows = memory::fit(free.map(|f| f / 4), fp.row, RECON_ROWS);
            let b = Batches {
                scan: memory::fit(free, fp.scan, o.batch),
                crop: memory::fit(
                    free.map(|f| f.saturating_sub(2 * rows as u64 * fp.row)),
                    fp.state,
                    o.batch,
                ),
                rows,
            };
            tracing::info!(
                "batches on {}: {} images (pass 1), {} images of {} rows (pass 2); {} free{}, {} an image (pass 1), {} (pass 2), {} a row",
                crate::model::Placement { device: dev.clone(), backend: m.net.backend }.name(),
                b.scan,
                b.crop,
                b.rows,
                free.map_or("unknown".into(), memory::mb),
                if sharing > 1 { format!(" for each of {sharing} workers") } else { String::new() },
                memory::mb(fp.scan),
                memory::mb(fp.state),
                memory::mb(fp.row),
            );
            b
        })
        .collect()
}

/// Builds (or resumes) a cache with one model per device, `o.batch` images a batch.
pub fn build(models: &[Model], o: &BuildOptions) -> Result<Report> {
    build_with(models, o, &Sizing::default())
}

/// Builds (or resumes) a cache with one model per device, its batches sized by `sizing`.
pub fn build_with(models: &[Model], o: &BuildOptions, sizing: &Sizing) -> Result<Report> {
    let model = models
        .first()
        .ok_or_else(|| Error::Device("no device".into()))?;
    if o.top_k == 0 || o.batch == 0 {
        return Err(Error::Input(
            "--top-k and --batch must be at least 1".into(),
        ));
    }
    let (si, sn) = o.shard;
    if sn == 0 || si >= sn {
        return Err(Error::Input(format!(
            "shard {si}/{sn}: expected i/N with i < N"
        )));
    }
    if let Some(p) = o.images.iter().find(|p| p.to_str().is_none()) {
        return Err(Error::Input(format!(
            "{}: the file name is not UTF-8, which a cache cannot record; rename it (or list the others)",
            p.display()
        )));
    }
    let blobs = blob_indices(model, &o.layers)?;
    let meta = Meta {
        format: FORMAT,
        model: model.spec().name.clone(),
        spec_sha256: spec_sha256(model)?,
        weights_sha256: weights_sha256(model)?,
        opts: o.opts,
        top_k: o.top_k,
        layers: blobs
            .iter()
            .map(|&b| model.net.blobs[b].name.clone())
            .collect(),
        dataset_sha256: dataset_sha256(&o.images),
        images: o.images.len() as u64,
        shard: o.shard,
    };
    let store = Store::open(&o.out, true)?;
    match from_json::<Meta>(&store, "meta")? {
        Some(old) => {
            if let Some(what) = old
                .mismatch(&meta)
                .or_else(|| (old.shard != meta.shard).then(|| "shard".to_string()))
            {
                return Err(Error::db(
                    &o.out,
                    format!("holds a cache built with another {what}; choose another --out, or delete it to start over"),
                ));
            }
        }
        None => store.write(&[
            ("meta".into(), json(&meta)?),
            ("dataset".into(), json(&o.images)?),
        ])?,
    }
    let batches = plan(models, o, sizing);
    let mut report = Report {
        scan_batch: batches[0].scan,
        crop_batch: batches[0].crop,
        crop_rows: batches[0].rows,
        ..Report::default()
    };
    let faults = &sizing.faults;
    // ---- pass 1: scan
    let mine: Vec<u64> = (0..o.images.len() as u64)
        .filter(|i| i % sn == si)
        .collect();
    let mut tops: Vec<BlobTop> = Vec::new();
    for &b in &blobs {
        let name = &model.net.blobs[b].name;
        let channels = model.net.blobs[b].shape.channels();
        tops.push(match store.get(&format!("top/{name}"))? {
            Some(bytes) => {
                let t = BlobTop::decode(name, &bytes)?;
                t.check(Some(channels), o.images.len() as u64)
                    .map_err(|m| Error::db(&o.out, format!("damaged: {m}")))?;
                t
            }
            None => BlobTop::new(name, channels),
        });
    }
    let mut skipped: Vec<(u64, String)> = from_json(&store, "scan/skipped")?.unwrap_or_default();
    let scanned = store.get("scan/done")?.is_some();
    if !scanned {
        let start = u64_value(&store, "scan/next")?.unwrap_or(0) as usize;
        let bar = progress(o.quiet, mine.len() as u64, "pass 1/2 scan ");
        bar.set_position(start as u64);
        let t0 = Instant::now();
        let n = o.images.len() as u64;
        let mut pos = start;
        let mut since_checkpoint = 0;
        let mut saved = Instant::now();
        let per_job = batches.iter().map(|b| b.scan).max().unwrap_or(1);
        let jobs: Vec<Vec<u64>> = mine[start..].chunks(per_job).map(|c| c.to_vec()).collect();
        let images = &o.images;
        let blobs_ref = &blobs;
        let current: Vec<AtomicUsize> = batches.iter().map(|b| AtomicUsize::new(b.scan)).collect();
        pool::ordered(
            models,
            jobs,
            |batch: Vec<u64>| {
                let paths: Vec<&Path> = batch
                    .iter()
                    .map(|&i| images[i as usize].as_path())
                    .collect();
                let inputs = load_batch(model, &paths);
                (batch, inputs)
            },
            |m, (batch, inputs)| {
                let now = &current[pool::index_of(models, m)];
                let mut b = now.load(Ordering::Relaxed);
                let r = scan_batch(m, blobs_ref, inputs, &mut b, faults);
                now.store(b, Ordering::Relaxed);
                (batch, r)
            },
            |(batch, results)| {
                for (&idx, r) in batch.iter().zip(results?) {
                    match r {
                        Ok(maxima) => {
                            for (t, per_channel) in tops.iter_mut().zip(maxima) {
                                for (c, (act, p)) in per_channel.into_iter().enumerate() {
                                    t.offer(
                                        c,
                                        Entry {
                                            image: idx as u32,
                                            act,
                                            pos: p,
                                        },
                                        o.top_k,
                                    );
                                    if topk::is_sample(idx, n) {
                                        t.samples[c].push(act);
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            bar.suspend(|| {
                                tracing::warn!("skipping {}: {e}", images[idx as usize].display())
                            });
                            skipped.push((idx, e.to_string()));
                        }
                    }
                }
                pos += batch.len();
                since_checkpoint += batch.len();
                report.scanned += batch.len() as u64;
                bar.inc(batch.len() as u64);
                bar.set_message(format!("{} skipped", skipped.len()));
                let last = pos == mine.len();
                if since_checkpoint >= o.checkpoint || last || saved.elapsed() > CHECKPOINT_SECS {
                    since_checkpoint = 0;
                    saved = Instant::now();
                    checkpoint_scan(&store, &mut tops, pos, &skipped, last)?;
                }
                Ok(())
            },
        )?;
        if start == mine.len() {
            checkpoint_scan(&store, &mut tops, start, &skipped, true)?;
        }
        bar.finish();
        report.scan_seconds = t0.elapsed().as_secs_f64();
    }
    report.skipped = skipped.len() as u64;
    if !mine.is_empty() && skipped.len() >= mine.len() {
        return Err(Error::Input(format!(
            "{}: none of the {} images of this build could be read (`treevis cache info {}` lists why)",
            o.out.display(),
            mine.len(),
            o.out.display()
        )));
    }
    // ---- pass 2: reconstructions and crops
    let mut per_image: std::collections::BTreeMap<u32, Vec<Want>> = Default::default();
    for (t, &b) in tops.iter().zip(&blobs) {
        for (c, list) in t.top.iter().enumerate() {
            for (rank, e) in list.iter().enumerate() {
                per_image.entry(e.image).or_default().push(Want {
                    blob: b,
                    channel: c,
                    rank,
                    entry: *e,
                });
            }
        }
    }
    let todo: Vec<(u32, Vec<Want>)> = per_image.into_iter().collect();
    let start = u64_value(&store, "recon/next")?.unwrap_or(0) as usize;
    if start < todo.len() {
        let total: usize = todo.iter().map(|(_, w)| w.len()).sum();
        let bar = progress(o.quiet, total as u64, "pass 2/2 crops");
        bar.set_position(todo[..start].iter().map(|(_, w)| w.len() as u64).sum());
        let t0 = Instant::now();
        let mut pos = start;
        let mut pending: Vec<Record> = Vec::new();
        let mut since_checkpoint = 0;
        let mut saved = Instant::now();
        let per_job = batches.iter().map(|b| b.crop).max().unwrap_or(1);
        let jobs: Vec<Vec<usize>> = (start..todo.len())
            .collect::<Vec<_>>()
            .chunks(per_job)
            .map(|c| c.to_vec())
            .collect();
        let todo_ref = &todo;
        let images = &o.images;
        let current: Vec<CropBatch> = batches
            .iter()
            .map(|b| CropBatch {
                images: AtomicUsize::new(b.crop),
                rows: AtomicUsize::new(b.rows),
            })
            .collect();
        pool::ordered(
            models,
            jobs,
            |idxs: Vec<usize>| {
                let batch: Vec<(&Path, Vec<Want>)> = idxs
                    .iter()
                    .map(|&k| {
                        let (img, wants) = &todo_ref[k];
                        (images[*img as usize].as_path(), wants.clone())
                    })
                    .collect();
                let n: usize = batch.iter().map(|(_, w)| w.len()).sum();
                (idxs.len(), n, decode_crops(model, batch))
            },
            |m, (done, n, decoded)| {
                let crops = decoded.and_then(|(decoded, mut records)| {
                    let now = &current[pool::index_of(models, m)];
                    records.extend(crop_batch(m, &o.opts, &decoded, now, faults)?);
                    Ok(records)
                });
                (done, n, crops)
            },
            |(done, n, crops)| {
                pending.extend(crops?);
                pos += done;
                since_checkpoint += done;
                report.reconstructions += n as u64;
                bar.inc(n as u64);
                if since_checkpoint >= o.checkpoint
                    || pos == todo.len()
                    || saved.elapsed() > CHECKPOINT_SECS
                {
                    since_checkpoint = 0;
                    saved = Instant::now();
                    pending.push(("recon/next".into(), pos.to_string().into_bytes()));
                    store.write(&pending)?;
                    pending.clear();
                }
                Ok(())
            },
        )?;
        bar.finish();
        report.crop_seconds = t0.elapsed().as_secs_f64();
    }
    store.write(&[("done".into(), b"1".to_vec())])?;
    report.disk_bytes = store.disk_bytes();
    Ok(report)
}

/// A finished cache, open for reading.
pub struct FeatureCache {
    store: Store,
    pub meta: Meta,
    pub tops: Vec<BlobTop>,
    pub skipped: Vec<(u64, String)>,
}

impl FeatureCache {
    /// Opens a complete cache.
    pub fn open(dir: &Path) -> Result<FeatureCache> {
        let store = Store::open(dir, false)?;
        let meta: Meta = from_json(&store, "meta")?
            .ok_or_else(|| Error::db(dir, "not a treevis feature cache (no meta record)"))?;
        if meta.format != FORMAT {
            return Err(Error::db(
                dir,
                format!("cache format {} (this treevis reads {FORMAT})", meta.format),
            ));
        }
        if store.get("done")?.is_none() {
            return Err(Error::db(
                dir,
                "the build of this cache has not finished; run the same `treevis cache build` again to resume it",
            ));
        }
        let tops = meta
            .layers
            .iter()
            .map(|l| {
                let bytes = store
                    .get(&format!("top/{l}"))?
                    .ok_or_else(|| Error::db(dir, format!("no lists for blob `{l}`")))?;
                let t = BlobTop::decode(l, &bytes)?;
                t.check(None, meta.images)
                    .map_err(|m| Error::db(dir, format!("damaged: {m}")))?;
                Ok(t)
            })
            .collect::<Result<Vec<_>>>()?;
        let skipped = from_json(&store, "scan/skipped")?.unwrap_or_default();
        Ok(FeatureCache {
            store,
            meta,
            tops,
            skipped,
        })
    }

    /// Opens a cache and checks that it was built for `model`.
    pub fn open_for(dir: &Path, model: &Model) -> Result<FeatureCache> {
        let c = FeatureCache::open(dir)?;
        c.meta.check_model(model, dir)?;
        Ok(c)
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }

    pub fn disk_bytes(&self) -> u64 {
        self.store.disk_bytes()
    }

    pub fn blob(&self, name: &str) -> Option<&BlobTop> {
        self.tops.iter().find(|t| t.name == name)
    }

    /// Where `value` ranks among channel `channel` of `blob`'s dataset maxima (0..1).
    pub fn rank(&self, blob: &str, channel: usize, value: f32) -> Option<f32> {
        self.blob(blob)?.rank(channel, value)
    }

    fn blob_or_err(&self, blob: &str) -> Result<&BlobTop> {
        self.blob(blob).ok_or_else(|| {
            Error::Input(format!(
                "the feature cache has no blob `{blob}` (it has {})",
                self.meta.layers.join(", ")
            ))
        })
    }

    /// The crops of one neuron, best first.
    pub fn crops(&self, blob: &str, channel: usize) -> Result<Vec<Crop>> {
        let t = self.blob_or_err(blob)?;
        let n = t
            .top
            .get(channel)
            .ok_or_else(|| {
                Error::Input(format!(
                    "`{blob}` has {} channels, not {}",
                    t.top.len(),
                    channel + 1
                ))
            })?
            .len();
        (0..n)
            .map(|r| {
                let key = crop_key(blob, channel, r);
                let bytes = self
                    .store
                    .get(&key)?
                    .ok_or_else(|| Error::db(self.path(), format!("no record `{key}`")))?;
                Crop::decode(&bytes, &key)
            })
            .collect()
    }

    /// The neuron's grid: image crops beside reconstruction crops.
    pub fn grid(&self, blob: &str, channel: usize) -> Result<image::RgbImage> {
        grid::render(&self.crops(blob, channel)?)
    }

    /// The dataset listing it was built from.
    pub fn dataset(&self) -> Result<Vec<PathBuf>> {
        Ok(from_json(&self.store, "dataset")?.unwrap_or_default())
    }

    /// Every record of content (not the meta record, which names the shard, nor progress
    /// markers), for comparing caches.
    pub fn records(&self) -> Result<Vec<(String, Vec<u8>)>> {
        Ok(self
            .store
            .scan("")?
            .into_iter()
            .filter(|(k, _)| !["meta", "scan/next", "recon/next"].contains(&k.as_str()))
            .collect())
    }
}

/// Fills in where each unit of an overview ranks against the dataset.
pub fn rank_overview(cache: &FeatureCache, rows: &mut [recon::BlobUnits]) {
    for r in rows {
        for u in &mut r.units {
            u.rank = cache.rank(&r.blob, u.channel, u.activation);
        }
    }
}

/// Merges complete shard caches (`--shard i/N` for every i of one N) into one cache, equal
/// to what one build over the whole dataset gives.
pub fn merge(shards: &[PathBuf], out: &Path) -> Result<Meta> {
    let caches = shards
        .iter()
        .map(|s| FeatureCache::open(s))
        .collect::<Result<Vec<_>>>()?;
    let first = caches
        .first()
        .ok_or_else(|| Error::Input("no shards to merge".into()))?;
    let n = first.meta.shard.1;
    // more shards than were given means one is missing (and a crafted count must not size
    // an allocation): name the first absent one
    if n > caches.len() as u64 {
        let have: std::collections::HashSet<u64> = caches.iter().map(|c| c.meta.shard.0).collect();
        let i = (0..n).find(|i| !have.contains(i)).unwrap_or(0);
        return Err(Error::Input(format!("shard {i}/{n} is missing")));
    }
    let mut seen = vec![None; n as usize];
    for c in &caches {
        if let Some(what) = first.meta.mismatch(&c.meta) {
            return Err(Error::db(
                c.path(),
                format!(
                    "was built with another {what} than {}",
                    first.path().display()
                ),
            ));
        }
        let (i, cn) = c.meta.shard;
        if cn == 0 || i >= cn {
            return Err(Error::db(c.path(), format!("bad shard record {i}/{cn}")));
        }
        if cn != n {
            return Err(Error::db(
                c.path(),
                format!("is shard {i}/{cn}, the others are of {n}"),
            ));
        }
        if let Some(other) = seen[i as usize].replace(c.path().to_path_buf()) {
            return Err(Error::db(
                c.path(),
                format!("shard {i}/{n} twice (also {})", other.display()),
            ));
        }
    }
    if let Some(i) = seen.iter().position(|s| s.is_none()) {
        return Err(Error::Input(format!("shard {i}/{n} is missing")));
    }
    let k = first.meta.top_k;
    let mut tops: Vec<BlobTop> = first
        .tops
        .iter()
        .map(|t| BlobTop::new(&t.name, t.top.len()))
        .collect();
    for c in &caches {
        for (t, o) in tops.iter_mut().zip(&c.tops) {
            if t.top.len() != o.top.len() {
                return Err(Error::db(
                    c.path(),
                    format!(
                        "blob `{}` has {} channels, not {}",
                        t.name,
                        o.top.len(),
                        t.top.len()
                    ),
                ));
            }
            t.merge(o, k);
        }
    }
    let meta = Meta {
        shard: (0, 1),
        ..first.meta.clone()
    };
    let store = Store::open(out, true)?;
    if store.get("meta")?.is_some() {
        return Err(Error::db(
            out,
            "already holds a cache; merge into a new folder",
        ));
    }
    let mut skipped: Vec<(u64, String)> = caches.iter().flat_map(|c| c.skipped.clone()).collect();
    skipped.sort_by_key(|s| s.0);
    let dataset = first
        .store
        .get("dataset")?
        .unwrap_or_else(|| b"[]".to_vec());
    let mut puts = vec![
        ("meta".to_string(), json(&meta)?),
        ("dataset".to_string(), dataset),
        ("scan/skipped".to_string(), json(&skipped)?),
        ("scan/next".to_string(), b"0".to_vec()),
        ("scan/done".to_string(), b"1".to_vec()),
    ];
    let mut images = std::collections::BTreeSet::new();
    for t in tops.iter_mut() {
        t.finish();
        puts.push((format!("top/{}", t.name), t.encode()));
        for (c, list) in t.top.iter().enumerate() {
            for (rank, e) in list.iter().enumerate() {
                images.insert(e.image);
                // the shard that owns the image kept it too, at some rank of its own
                let owner = caches
                    .iter()
                    .find(|s| u64::from(e.image) % n == s.meta.shard.0)
                    .ok_or_else(|| Error::internal("a merged shard is gone"))?;
                let theirs = owner
                    .blob(&t.name)
                    .and_then(|b| b.top.get(c)?.iter().position(|x| x.image == e.image))
                    .ok_or_else(|| {
                        Error::db(
                            owner.path(),
                            format!("lacks image {} of {}:{c}", e.image, t.name),
                        )
                    })?;
                let key = crop_key(&t.name, c, theirs);
                let bytes = owner
                    .store
                    .get(&key)?
                    .ok_or_else(|| Error::db(owner.path(), format!("no record `{key}`")))?;
                puts.push((crop_key(&t.name, c, rank), bytes));
            }
        }
    }
    puts.push(("recon/next".into(), images.len().to_string().into_bytes()));
    puts.push(("done".into(), b"1".to_vec()));
    store.write(&puts)?;
    Ok(meta)
}

/// Loads one model per device of a comma-separated list (`cpu`, `cuda:0,cuda:1`).
pub fn load_models(
    model: &str,
    weights: &crate::model::WeightsSource,
    devices: &str,
) -> Result<Vec<Model>> {
    devices
        .split(',')
        .map(|d| {
            let place = crate::model::parse_device(d.trim())?;
            crate::catalog::load(model, weights, &place)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn maxima_reduced_on_a_device_equal_the_host_scan_ties_included() {
        // 2 images x 3 channels of 4x5, quantised so that maxima tie within a plane
        let (rows, plane) = (6, 20);
        let v: Vec<f32> = (0..rows * plane)
            .map(|i| ((i * 7919 % 23) as f32 / 4.0).floor() - 2.0)
            .collect();
        let mut v2 = v.clone();
        v2[plane..2 * plane].fill(0.0); // a dead channel: every position ties
        v2[3 * plane + 19] = 100.0; // a maximum at the last position
        for v in [v, v2] {
            let t = Tensor::from_vec(v.clone(), (2, 3, 4, 5), &Device::Cpu).unwrap();
            let host: Vec<(f32, u32)> = v.chunks(plane).map(first_max).collect();
            // the data does have tied maxima
            assert!(v.chunks(plane).zip(&host).any(|(row, &(m, _))| row
                .iter()
                .filter(|&&x| x == m)
                .count()
                > 1));
            assert_eq!(channel_maxima(&t, rows, plane).unwrap(), host);
            assert_eq!(channel_maxima_on_device(&t, rows, plane).unwrap(), host);
        }
    }

    #[test]
    fn boxes_of_nonzero_pixels() {
        let (h, w) = (4, 5);
        let mut g = vec![0f32; 3 * h * w];
        assert_eq!(nonzero_box(&g, h, w), None);
        g[2 * h * w + 7] = -1.0; // channel 2, y 1, x 2
        g[3] = 0.5; // channel 0, y 0, x 3
        assert_eq!(nonzero_box(&g, h, w), Some([2, 0, 4, 2]));
    }

    #[test]
    fn boxes_found_on_a_device_equal_the_host_ones() {
        let (h, w) = (7, 9);
        let plane = h * w;
        let mut cases: Vec<Vec<f32>> = vec![vec![0.0; 3 * plane]];
        // single pixels at the corners, in each channel
        for (c, i) in [(0, 0), (1, plane - 1), (2, w - 1), (0, (h - 1) * w)] {
            let mut g = vec![0.0; 3 * plane];
            g[c * plane + i] = -0.25;
            cases.push(g);
        }
        // sparse patterns, values that would cancel across channels, a NaN, negative zeros
        for seed in 1..6u32 {
            let g: Vec<f32> = (0..3 * plane as u32)
                .map(|i| {
                    match i
                        .wrapping_mul(2654435761)
                        .wrapping_add(seed.wrapping_mul(97))
                        % 37
                    {
                        0 => 1.5,
                        1 => -1.5,
                        2 => -0.0,
                        _ => 0.0,
                    }
                })
                .collect();
            cases.push(g);
        }
        let mut g = vec![-0.0; 3 * plane];
        g[plane + 3 * w + 4] = f32::NAN;
        cases.push(g);
        cases.push(vec![1e-30; 3 * plane]);
        let mut found_some = 0;
        for g in cases {
            let host = nonzero_box(&g, h, w);
            let t = Tensor::from_vec(g, (3, h, w), &Device::Cpu).unwrap();
            let before = crate::model::transfer::counts();
            assert_eq!(nonzero_box_on_device(&t).unwrap(), host);
            let d = crate::model::transfer::counts() - before;
            assert_eq!(
                (d.downloads, d.download_bytes),
                (1, 16),
                "four numbers only"
            );
            found_some += host.is_some() as usize;
        }
        assert!(found_some > 5);
    }

    #[test]
    fn a_crop_rendered_alone_equals_the_crop_of_the_whole_rendering() {
        for place in [
            crate::model::Placement::cpu(),
            crate::model::Placement::cpu_generic(),
        ] {
            let m = crate::catalog::load("demo", &crate::model::WeightsSource::Default, &place)
                .unwrap();
            let [h, w] = m.spec().input.size;
            let mut g = vec![0f32; 3 * h * w];
            for y in 5..(h / 2) {
                for x in 3..(w - 7) {
                    g[(y * w + x) % (3 * h * w)] = ((x * 31 + y * 17) % 11) as f32 - 5.0;
                    g[2 * h * w + y * w + x] = 0.5;
                }
            }
            let grad = Tensor::from_vec(g.clone(), (3, h, w), &m.net.device).unwrap();
            let seen = crate::data::pattern_image(w as u32, h as u32);
            let (bbox, image_png, recon_png) = crop_of(&m, &grad, &seen).unwrap();
            let b = nonzero_box(&g, h, w).unwrap();
            assert_eq!(bbox, b);
            let whole = display::render(&m, &grad, display::Display::Norm).unwrap();
            let cut = |img: &image::RgbImage| {
                let c = image::imageops::crop_imm(img, b[0], b[1], b[2] - b[0], b[3] - b[1]);
                png(&shrink(c.to_image(), CROP_MAX)).unwrap()
            };
            assert!(recon_png == cut(&whole), "{}", place.name());
            assert!(image_png == cut(&seen), "{}", place.name());
            // all zero: no crop
            let zero = Tensor::zeros((3, h, w), DType::F32, &m.net.device).unwrap();
            assert_eq!(
                crop_of(&m, &zero, &seen).unwrap(),
                ([0; 4], Vec::new(), Vec::new())
            );
        }
    }

    #[test]
    fn crops_round_trip_and_truncation_is_an_error() {
        let c = Crop {
            entry: Entry {
                image: 3,
                act: 1.5,
                pos: 9,
            },
            bbox: [1, 2, 3, 4],
            image_png: vec![1, 2, 3],
            recon_png: vec![4],
        };
        let b = c.encode();
        assert_eq!(Crop::decode(&b, "k").unwrap(), c);
        assert!(Crop::decode(&b[..b.len() - 1], "k").is_err());
    }
}
