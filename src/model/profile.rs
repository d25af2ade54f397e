//! Where the CPU kernels spend their time: wall-clock nanoseconds and floating-point
//! operations per [`Phase`], summed over every call while profiling is on (off by
//! default; then a phase costs one relaxed atomic load). `treevis bench --kernels` turns it
//! on around whole forward and backward passes to split their time into `im2col` (or
//! Winograd's transforms), matrix products and `col2im`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// A kernel step that is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Unfolding convolution inputs into columns (forward).
    Im2col,
    /// Winograd's input transform (`B^T d B`), in place of `im2col`.
    WinogradIn,
    /// Winograd's output transform (`A^T M A`, with the bias and the ReLU).
    WinogradOut,
    /// The matrix product of a convolution's forward.
    ConvGemm,
    /// The matrix product of a convolution's data gradient (`W^T . dY`).
    ConvGemmBackward,
    /// Folding columns back onto the input (backward).
    Col2im,
    /// The products of fully connected layers, forward and backward.
    Linear,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Im2col,
        Phase::WinogradIn,
        Phase::WinogradOut,
        Phase::ConvGemm,
        Phase::ConvGemmBackward,
        Phase::Col2im,
        Phase::Linear,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Im2col => "im2col",
            Phase::WinogradIn => "winograd in",
            Phase::WinogradOut => "winograd out",
            Phase::ConvGemm => "conv gemm",
            Phase::ConvGemmBackward => "conv gemm (backward)",
            Phase::Col2im => "col2im",
            Phase::Linear => "linear",
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];
static FLOPS: [AtomicU64; Phase::ALL.len()] = [const { AtomicU64::new(0) }; Phase::ALL.len()];

/// Runs `f` as part of `phase`, adding its wall time and `flops` when profiling is on.
#[inline]
pub fn timed<R>(phase: Phase, flops: u64, f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let i = phase as usize;
    NANOS[i].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    FLOPS[i].fetch_add(flops, Ordering::Relaxed);
    r
}

/// Nanoseconds and operations of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub nanos: u64,
    pub flops: u64,
}

/// Clears the counters and turns profiling on (for the whole process: profile one thing at
/// a time).
pub fn start() {
    for (n, f) in NANOS.iter().zip(&FLOPS) {
        n.store(0, Ordering::Relaxed);
        f.store(0, Ordering::Relaxed);
    }
    ON.store(true, Ordering::Relaxed);
}

/// Turns profiling off and returns what each phase took since [`start`].
pub fn stop() -> Vec<(Phase, Totals)> {
    ON.store(false, Ordering::Relaxed);
    Phase::ALL
        .iter()
        .map(|&p| {
            let i = p as usize;
            (
                p,
                Totals {
                    nanos: NANOS[i].load(Ordering::Relaxed),
                    flops: FLOPS[i].load(Ordering::Relaxed),
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_count_only_while_on() {
        timed(Phase::Linear, 7, || ());
        start();
        let v = timed(Phase::Col2im, 10, || 3);
        timed(Phase::Col2im, 5, || ());
        let t = stop();
        timed(Phase::Col2im, 100, || ());
        assert_eq!(v, 3);
        let col = t.iter().find(|(p, _)| *p == Phase::Col2im).map(|x| x.1);
        assert_eq!(col.map(|c| c.flops), Some(15));
        let lin = t.iter().find(|(p, _)| *p == Phase::Linear).map(|x| x.1);
        assert_eq!(lin.map(|c| c.flops), Some(0));
    }
}
