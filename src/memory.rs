//! Batches sized to the memory a device has, and what to do when one did not fit: the free
//! bytes (the CUDA driver's count on a GPU, the machine's available RAM on the CPU), the
//! bytes one image or one gradient row takes (from a net's shapes), and a retry that halves
//! a batch after an out-of-memory failure, down to 1.
//!
//! On a GPU a failed allocation is an error the retry catches; on the CPU Rust aborts the
//! process instead, so there the sizing is all the protection there is.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::model::net::Layer;
use crate::model::Net;

/// The part of the free memory a batch may take: the rest is for what the estimate does
/// not see (an allocator's slack and fragmentation, the kernels' own workspace, other
/// processes, the results on their way out).
pub const SAFETY: f64 = 0.5;

/// Bytes free for tensors on `device`: on CUDA the driver's count for the device's own
/// context, on the CPU the available RAM; `None` where it cannot be known (Metal).
pub fn free_bytes(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => crate::sysmem::available_bytes(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda_free_bytes(d),
        _ => None,
    }
}

/// `cuMemGetInfo` of the device's context (cudarc binds it to this thread first).
#[cfg(feature = "cuda")]
fn cuda_free_bytes(d: &candle_core::CudaDevice) -> Option<u64> {
    let (free, _total) = d.cuda_stream().context().mem_get_info().ok()?;
    Some(free as u64)
}

/// What one image, or one gradient row, takes on the device, in bytes, from the net's
/// shapes (float32 throughout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// One image of an inference pass ([`Net::forward_blobs`]): the input, the blobs and the
    /// output it keeps, and the largest layer's working set.
    pub scan: u64,
    /// One image of a pass that keeps the backward state ([`Net::forward`]): what it keeps
    /// (with max-pool switches and LRN scales), and the largest layer's working set.
    pub state: u64,
    /// One row of a batched backward pass: the gradient at the largest tensor, the one a
    /// layer makes of it, a sum at a fan-out, and the largest convolution's columns.
    pub row: u64,
}

impl Footprint {
    pub fn of(net: &Net) -> Footprint {
        let n = net.layers.len();
        let numel = |t: usize| net.shape_at(t).numel() as u64;
        let kept = |for_backward: bool| -> u64 {
            net.kept(for_backward)
                .iter()
                .enumerate()
                .filter(|(_, k)| **k)
                .map(|(t, _)| numel(t))
                .sum()
        };
        // side tables of the backward state: a switch (u32) per max-pool output, a scale
        // per LRN output
        let side: u64 = net
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| matches!(l, Layer::Maxpool(_) | Layer::Lrn { .. }))
            .map(|(i, _)| numel(i + 1))
            .sum();
        // while a layer runs: its output, one temporary of that size (a bias or ReLU applied
        // out of place) and, for a convolution, its im2col columns (candle's conv2d makes
        // them for the whole batch)
        let work = (0..n)
            .map(|i| 2 * numel(i + 1) + columns(net, i))
            .max()
            .unwrap_or(0);
        let largest = (0..=n).map(numel).max().unwrap_or(1);
        let cols = (0..n).map(|i| columns(net, i)).max().unwrap_or(0);
        Footprint {
            scan: 4 * (kept(false) + work),
            state: 4 * (kept(true) + side + work),
            row: 4 * (3 * largest + cols),
        }
    }
}

/// Floats of a convolution's im2col columns for one image (the data gradient's, before
/// col2im folds them, are as many); 0 for other layers.
fn columns(net: &Net, i: usize) -> u64 {
    let Some(Layer::Conv(c)) = net.layers.get(i) else {
        return 0;
    };
    let input = net
        .inputs
        .get(i)
        .and_then(|t| t.first())
        .map(|&t| net.shape_at(t));
    let (Some(input), Some(output)) = (input, net.shapes.get(i)) else {
        return 0;
    };
    let window = (c.kernel.0[0] * c.kernel.0[1]) as u64;
    input.channels() as u64 * window * output.plane() as u64
}

/// The batch of items of `per_item` bytes that fits in [`SAFETY`] of `free` bytes: at least
/// 1, at most `cap`; `cap` when the free memory is unknown.
pub fn fit(free: Option<u64>, per_item: u64, cap: usize) -> usize {
    let cap = cap.max(1);
    let Some(free) = free else { return cap };
    let room = (free as f64 * SAFETY) / per_item.max(1) as f64;
    (room.floor() as usize).clamp(1, cap)
}

/// Megabytes, for messages.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Whether `e` says that an allocation failed: the CUDA driver's `CUDA_ERROR_OUT_OF_MEMORY`
/// (candle keeps the driver's text: `DriverError(CUDA_ERROR_OUT_OF_MEMORY, "out of
/// memory")`), cuBLAS's `CUBLAS_STATUS_ALLOC_FAILED`, or any other "out of memory".
pub fn is_oom(e: &Error) -> bool {
    let text = e.to_string();
    text.contains("CUDA_ERROR_OUT_OF_MEMORY")
        || text.contains("CUBLAS_STATUS_ALLOC_FAILED")
        || text.to_ascii_lowercase().contains("out of memory")
}

/// How the error of a batch of one that did not fit begins (it still reads as out of
/// memory, so that an outer batch, whose memory the inner one shares, halves in turn).
const EVEN_ONE: &str = "out of memory even for one";

/// Runs `f(batch)`, and after each out-of-memory failure `f` of half the batch, down to 1;
/// returns the value and the batch that gave it. Other errors come back as they are; an
/// out-of-memory failure at 1 becomes an error that says so (`what` names the items:
/// "image", "gradient row").
pub fn with_halving<T>(
    batch: usize,
    what: &str,
    mut f: impl FnMut(usize) -> Result<T>,
) -> Result<(T, usize)> {
    let mut b = batch.max(1);
    loop {
        match f(b) {
            Ok(v) => return Ok((v, b)),
            Err(e) if !is_oom(&e) => return Err(e),
            Err(e) if b > 1 => {
                let half = b / 2;
                tracing::warn!(
                    "out of memory with a batch of {b} ({what}s); retrying with {half}: {}",
                    first_line(&e)
                );
                b = half;
            }
            Err(e @ Error::Device(_)) if e.to_string().contains(EVEN_ONE) => return Err(e),
            Err(e) => {
                return Err(Error::Device(format!(
                    "{EVEN_ONE} {what} ({}); free memory on the device (other processes?), or use a smaller model or input",
                    first_line(&e)
                )))
            }
        }
    }
}

/// The first line of an error (candle appends a backtrace to some).
fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or("").to_string()
}

/// Maps `items` through `f` a chunk at a time, chunks of at most `*batch` items, in order;
/// an out-of-memory failure halves the chunk and retries it ([`with_halving`]), and
/// `*batch` keeps the size that worked, for the rest and for the next call.
pub fn in_batches<I, T>(
    items: &[I],
    batch: &mut usize,
    what: &str,
    mut f: impl FnMut(&[I]) -> Result<Vec<T>>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(items.len());
    let mut rest = items;
    while !rest.is_empty() {
        let tried = (*batch).clamp(1, rest.len());
        let (v, b) = with_halving(tried, what, |b| f(&rest[..b]))?;
        if b < tried {
            *batch = b;
        }
        out.extend(v);
        rest = &rest[b..];
    }
    Ok(out)
}

/// The stage of a pass a batch is for (where [`Faults`] strike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The images of an inference forward pass (a feature-cache scan).
    Scan,
    /// The images of a forward pass that keeps the backward state.
    Forward,
    /// The gradient rows of one batched backward pass.
    Rows,
}

/// A test hook: batches larger than a limit fail as on a full device, with the text of
/// CUDA's out-of-memory error, so that the halving can be tested without a GPU.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    limits: Vec<(Stage, usize)>,
    /// Batches failed, per stage.
    fired: Arc<[AtomicU64; 3]>,
}

impl Faults {
    /// Batches of `stage` of more than `limit` items fail.
    pub fn above(mut self, stage: Stage, limit: usize) -> Faults {
        self.limits.push((stage, limit));
        self
    }

    /// An out-of-memory error when a batch of `n` items of `stage` is to fail.
    pub fn check(&self, stage: Stage, n: usize) -> Result<()> {
        if self.limits.iter().any(|&(s, l)| s == stage && n > l) {
            self.fired[stage as usize].fetch_add(1, Ordering::Relaxed);
            return Err(Error::Candle(candle_core::Error::Cuda(Box::new(
                InjectedOom,
            ))));
        }
        Ok(())
    }

    /// How many batches of `stage` failed so far (clones share the count).
    pub fn fired(&self, stage: Stage) -> u64 {
        self.fired[stage as usize].load(Ordering::Relaxed)
    }
}

/// What [`Faults`] fail with: a CUDA allocation failure as candle reports it.
#[derive(Debug)]
struct InjectedOom;

impl std::fmt::Display for InjectedOom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\") (injected by a test)"
        )
    }
}

impl std::error::Error for InjectedOom {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WeightsSource;

    fn oom() -> Error {
        Error::Candle(candle_core::Error::Cuda(Box::new(InjectedOom)))
    }

    #[test]
    fn out_of_memory_is_told_from_other_failures() {
        assert!(is_oom(&oom()));
        assert!(is_oom(&Error::Candle(candle_core::Error::Msg(
            "CublasError(CUBLAS_STATUS_ALLOC_FAILED)".into()
        ))));
        // candle wraps some errors with a backtrace or context: still found
        assert!(is_oom(&Error::Candle(
            candle_core::Error::Cuda(Box::new(InjectedOom)).context("conv2d")
        )));
        assert!(!is_oom(&Error::Input("no such blob".into())));
        assert!(!is_oom(&Error::Candle(candle_core::Error::Msg(
            "shape mismatch".into()
        ))));
    }

    #[test]
    fn halving_retries_down_to_what_fits() {
        let mut tried = Vec::new();
        let (v, b) = with_halving(64, "image", |b| {
            tried.push(b);
            if b > 5 {
                Err(oom())
            } else {
                Ok(b * 10)
            }
        })
        .unwrap();
        assert_eq!((v, b), (40, 4));
        assert_eq!(tried, [64, 32, 16, 8, 4]);
        // another error is not retried
        let mut calls = 0;
        let e = with_halving(8, "image", |_| -> Result<()> {
            calls += 1;
            Err(Error::Input("bad".into()))
        })
        .unwrap_err();
        assert_eq!((calls, e.to_string()), (1, "input: bad".to_string()));
        // nothing fits: a clear error after trying 1, which an outer batch still reads as
        // out of memory (and does not wrap again)
        let mut tried = Vec::new();
        let e = with_halving(5, "gradient row", |b| -> Result<()> {
            tried.push(b);
            Err(oom())
        })
        .unwrap_err();
        assert_eq!(tried, [5, 2, 1]);
        let msg = e.to_string();
        assert!(
            msg.contains("out of memory even for one gradient row") && msg.contains("CUDA_ERROR"),
            "{msg}"
        );
        assert!(is_oom(&e));
        let outer = with_halving(1, "image", |_| -> Result<()> {
            Err(Error::Device(msg.trim_start_matches("device: ").into()))
        })
        .unwrap_err();
        assert_eq!(outer.to_string(), msg);
        // a batch of 0 runs as 1
        assert_eq!(with_halving(0, "x", Ok).unwrap(), (1, 1));
    }

    #[test]
    fn batches_map_every_item_in_order_and_keep_the_size_that_worked() {
        let items: Vec<u32> = (0..23).collect();
        let mut batch = 16;
        let mut sizes = Vec::new();
        let out = in_batches(&items, &mut batch, "item", |chunk| {
            sizes.push(chunk.len());
            if chunk.len() > 3 {
                return Err(oom());
            }
            Ok(chunk.iter().map(|x| x * 2).collect())
        })
        .unwrap();
        assert_eq!(out, items.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(batch, 2, "16 -> 8 -> 4 -> 2");
        assert_eq!(&sizes[..4], [16, 8, 4, 2]);
        assert!(sizes[4..].iter().all(|&s| s <= 2));
        // a last chunk shorter than the batch does not shrink it
        let mut batch = 4;
        in_batches(&items[..6], &mut batch, "item", |c| Ok(c.to_vec())).unwrap();
        assert_eq!(batch, 4);
    }

    #[test]
    fn injected_faults_strike_above_their_limit_only() {
        let f = Faults::default().above(Stage::Rows, 3);
        assert!(f.check(Stage::Rows, 3).is_ok());
        assert!(f.check(Stage::Scan, 100).is_ok());
        let e = f.clone().check(Stage::Rows, 4).unwrap_err();
        assert!(is_oom(&e), "{e}");
        assert_eq!((f.fired(Stage::Rows), f.fired(Stage::Scan)), (1, 0));
    }

    #[test]
    fn batches_fit_the_free_memory() {
        assert_eq!(fit(Some(1000), 100, 64), 5);
        assert_eq!(fit(Some(10), 100, 64), 1, "never 0");
        assert_eq!(fit(Some(1 << 40), 100, 64), 64, "capped");
        assert_eq!(fit(None, 100, 16), 16);
        assert_eq!(fit(Some(1000), 0, 0), 1);
    }

    #[test]
    fn footprints_grow_with_what_a_pass_keeps() {
        let m = crate::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
        let f = Footprint::of(&m.net);
        let net = &m.net;
        let all: u64 = 4
            * (0..=net.layers.len())
                .map(|t| net.shape_at(t).numel() as u64)
                .sum::<u64>();
        let input = 4 * net.input.numel() as u64;
        assert!(f.scan > input && f.scan < f.state, "{f:?}");
        // the backward state keeps less than every tensor, plus a working set
        assert!(f.state < 2 * all, "{f:?} vs {all}");
        assert!(f.row >= 3 * input, "{f:?}");
        // the inference pass keeps exactly the input, blobs and output
        let kept = net.kept(false);
        let blobs: std::collections::BTreeSet<usize> =
            net.blobs.iter().map(|b| b.layer + 1).collect();
        for (t, k) in kept.iter().enumerate() {
            assert_eq!(
                *k,
                t == 0 || t == net.layers.len() || blobs.contains(&t),
                "{t}"
            );
        }
        assert!(free_bytes(&Device::Cpu).is_some_and(|b| b > 0));
    }
}
