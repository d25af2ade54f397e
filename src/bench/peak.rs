//! The machine's measured floating-point peak: a loop of independent fused multiply-adds
//! on the widest vectors the CPU has (AVX-512, else AVX2+FMA, else plain SSE2 adds and
//! multiplies), on one thread and on every rayon thread at once. It is the ceiling the
//! GEMM table of `treevis bench --kernels` is measured against.

use std::time::Instant;

/// The vector instructions the peak loop ran.
pub fn isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    "scalar"
}

/// Independent accumulators of the loop: at least FMA latency x FMA pipes (4 x 2 on Zen 4,
/// 4 x 2 on Skylake-SP) so that the pipes never wait.
const ACC: usize = 12;

/// `iters` rounds of `ACC` vector FMAs; returns the floating-point operations done and a
/// value that depends on every result (so the loop is not removed).
fn fma_loop(iters: u64) -> (f64, f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected on this CPU.
            return unsafe { fma_avx512(iters) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected on this CPU.
            return unsafe { fma_avx2(iters) };
        }
    }
    fma_plain(iters)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
    let mut acc = [_mm512_set1_ps(1.0); ACC];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm512_fmadd_ps(*v, a, b);
        }
    }
    let mut s = _mm512_setzero_ps();
    for v in acc {
        s = _mm512_add_ps(s, v);
    }
    let flops = iters as f64 * (ACC * 16 * 2) as f64;
    (flops, _mm512_reduce_add_ps(s))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_avx2(iters: u64) -> (f64, f32) {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
    let mut acc = [_mm256_set1_ps(1.0); ACC];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = _mm256_fmadd_ps(*v, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for v in acc {
        s = _mm256_add_ps(s, v);
    }
    _mm256_storeu_ps(out.as_mut_ptr(), s);
    let flops = iters as f64 * (ACC * 8 * 2) as f64;
    (flops, out.iter().sum())
}

fn fma_plain(iters: u64) -> (f64, f32) {
    let mut acc = [1f32; ACC * 4];
    for _ in 0..iters {
        for v in acc.iter_mut() {
            *v = v.mul_add(0.999_999, 1e-7);
        }
    }
    let flops = iters as f64 * (ACC * 4 * 2) as f64;
    (flops, acc.iter().sum())
}

/// GFLOP/s of the FMA loop on one thread and on all `threads` rayon threads at once (each
/// thread runs the same count; the wall time of the slowest counts), best of 5 tries of
/// about 0.2 s each.
pub fn measure() -> Peak {
    let iters = 4_000_000u64;
    let best = |all: bool| -> f64 {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                let flops: f64 = if all {
                    rayon::broadcast(|_| {
                        let (f, v) = fma_loop(iters);
                        std::hint::black_box(v);
                        f
                    })
                    .iter()
                    .sum()
                } else {
                    let (f, v) = fma_loop(iters);
                    std::hint::black_box(v);
                    f
                };
                flops / t.elapsed().as_secs_f64() / 1e9
            })
            .fold(0.0, f64::max)
    };
    Peak {
        isa: isa(),
        one_thread: best(false),
        all_threads: best(true),
        threads: rayon::current_num_threads(),
    }
}

/// The measured peak.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Peak {
    pub isa: &'static str,
    pub one_thread: f64,
    pub all_threads: f64,
    pub threads: usize,
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_loops_count_the_same_work() {
        // every variant adds the same value to each lane; their sums per lane agree
        let (f, v) = super::fma_loop(1000);
        let (fp, vp) = super::fma_plain(1000);
        assert!(f > 0.0 && fp > 0.0);
        let lanes = f / (1000.0 * 2.0);
        let lanes_plain = fp / (1000.0 * 2.0);
        let per = |v: f32, n: f64| v as f64 / n;
        assert!((per(v, lanes) - per(vp, lanes_plain)).abs() < 1e-5);
    }
}
