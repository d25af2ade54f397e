//! Winograd's minimal filtering on six points (0, 1, -1, 2, -2 and infinity), for the CPU
//! kernels' stride-1 convolutions: F(4x4, 3x3) (36 multiply-adds per 16 outputs and channel
//! pair, where the direct convolution spends 144 and F(2x2, 3x3) 64) and F(2x2, 5x5) (36
//! per 4 outputs, against 100). Lavin & Gray, "Fast Algorithms for Convolutional Neural
//! Networks" (2016); the matrices are the modified Toom-Cook ones, made here from the
//! points ([`Scheme`]) and checked against the direct correlation by the tests below.
//!
//! Each `m x m` block of outputs (a *tile*) is `A^T [(G g G^T) . (B^T d B)] A` of the 6x6
//! input patch `d` under it and the `r x r` filter `g` (`m + r - 1 = 6`). As in
//! [`super::winograd`]: 36 independent matrix products `M_i = U_i . V_i`, `U` as
//! `[36][cout][cin]` (made once per weights), `V` as `[cin][36][tiles]`, `M` as
//! `[36][cout][tiles]`, tiles numbered image by image, row by row, in blocks of tile rows
//! that stay in cache. The transforms run over all of a block's tiles at once (vectors of
//! the tile count, not of a tile row), so small planes vectorise too.
//!
//! The larger points (±2, and the 1/24 of `G`) cost accuracy: F(4x4, 3x3) rounds about
//! ten times more than F(2x2, 3x3), still far below the golden suite's bars
//! (`tests/golden_winograd6.rs` holds it to them).

use std::ops::Range;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::kernels::{sgemm_threads, ConvGeom, MatRef, Threads};
use super::profile::{self, Phase};
use super::winograd::product_work;

/// Points of a six-point scheme (`alpha`).
pub const ALPHA: usize = 6;

/// The finite points; the sixth is infinity.
const POINTS: [f64; ALPHA - 1] = [0.0, 1.0, -1.0, 2.0, -2.0];

/// Floats of transformed input and products (`36 * (cin + cout)` per tile) one block of
/// tile rows takes: 4 MB (16 MB measured slower on AlexNet's conv2 at batch 32: its 36
/// products no longer stayed in cache for the output transform).
const BUDGET: usize = 1 << 20;

/// One scheme F(m x m, r x r) with `m + r - 1 = 6`: its matrices, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheme {
    /// Outputs per tile side.
    pub m: usize,
    /// The filter's side.
    pub r: usize,
    /// `A^T`: `m x 6`.
    at: Vec<f32>,
    /// `G`: `6 x r`.
    g: Vec<f32>,
    /// `B^T`: `6 x 6`.
    bt: Vec<f32>,
}

impl Scheme {
    /// The scheme for an `r x r` filter: F(4x4, 3x3) or F(2x2, 5x5), made once.
    pub fn for_kernel(r: usize) -> Option<&'static Scheme> {
        static F4K3: OnceLock<Scheme> = OnceLock::new();
        static F2K5: OnceLock<Scheme> = OnceLock::new();
        match r {
            3 => Some(F4K3.get_or_init(|| Scheme::new(4, 3))),
            5 => Some(F2K5.get_or_init(|| Scheme::new(2, 5))),
            _ => None,
        }
    }

    /// Modified Toom-Cook: `A^T[i][j] = p_j^i` (infinity: the top power), `G[j][k] =
    /// p_j^k / f_j` with `f_j = prod_{l != j} (p_j - p_l)` (infinity: the top power), and
    /// row `j` of `B^T` the ascending coefficients of `prod_{l != j} (x - p_l)`
    /// (infinity's: of the product over every finite point).
    fn new(m: usize, r: usize) -> Scheme {
        let mut at = vec![0f32; m * ALPHA];
        for i in 0..m {
            for (j, p) in POINTS.iter().enumerate() {
                at[i * ALPHA + j] = p.powi(i as i32) as f32;
            }
            at[i * ALPHA + ALPHA - 1] = if i + 1 == m { 1.0 } else { 0.0 };
        }
        let mut g = vec![0f32; ALPHA * r];
        for (j, p) in POINTS.iter().enumerate() {
            let f: f64 = POINTS
                .iter()
                .enumerate()
                .filter(|(l, _)| *l != j)
                .map(|(_, q)| p - q)
                .product();
            for k in 0..r {
                g[j * r + k] = (p.powi(k as i32) / f) as f32;
            }
        }
        g[(ALPHA - 1) * r + r - 1] = 1.0;
        let poly = |skip: Option<usize>| {
            let mut c = [0f64; ALPHA];
            c[0] = 1.0;
            let mut deg = 0;
            for (l, q) in POINTS.iter().enumerate() {
                if Some(l) == skip {
                    continue;
                }
                // times (x - q)
                for d in (0..=deg).rev() {
                    c[d + 1] += c[d];
                    c[d] *= -q;
                }
                deg += 1;
            }
            c
        };
        let mut bt = vec![0f32; ALPHA * ALPHA];
        for j in 0..ALPHA {
            let c = poly((j < ALPHA - 1).then_some(j));
            for (k, v) in c.iter().enumerate() {
                bt[j * ALPHA + k] = *v as f32;
            }
        }
        Scheme { m, r, at, g, bt }
    }
}

/// Multiply-adds of one of the 36 products (`cout * cin * tiles` over the images, in 2x2
/// tiles) below which F(2x2, 5x5) leaves a 5x5 convolution to `im2col`: 4 times
/// F(2x2, 3x3)'s (`treevis bench --kernels`: AlexNet's conv2 gains at batch 32, not
/// reliably at batch 1).
const MIN_WORK: usize = 1 << 23;

/// Whether `n` images of a 5x5 convolution Winograd takes
/// ([`applies`](super::winograd::applies)) are enough work for F(2x2, 5x5) to gain
/// (`MIN_WORK`).
pub fn worth(g: &ConvGeom, n: usize, cin: usize, cout: usize) -> bool {
    product_work(g, n, cin, cout, 2) >= MIN_WORK
}

/// Multiply-adds of one of the 36 products of F(4x4, 3x3) (`cout * cin * tiles`, in 4x4
/// tiles) from which it takes a 3x3 convolution's forward: AlexNet's and ResNet-50's at
/// batch 32 (the least 33.5M), not at batch 1 (VGG16's 12.8M), where its heavier
/// transforms and thinner products lose to F(2x2, 3x3).
const MIN_WORK_4X4: usize = 1 << 24;

/// Whether `n` images of a 3x3 convolution Winograd takes
/// ([`applies`](super::winograd::applies)) are enough work for F(4x4, 3x3)
/// (`MIN_WORK_4X4`).
pub fn worth_4x4(g: &ConvGeom, n: usize, cin: usize, cout: usize) -> bool {
    product_work(g, n, cin, cout, 4) >= MIN_WORK_4X4
}

/// `U = G g G^T` of every filter, as `[36][cout][cin]`: `w` is `[cout, cin, r, r]`.
pub fn transform_weights(s: &Scheme, w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let (r, plane) = (s.r, cout * cin);
    let mut u = vec![0f32; ALPHA * ALPHA * plane];
    for (oc, f) in w.chunks_exact(r * r).enumerate().take(plane) {
        // G g: [6][r]
        let mut gg = [[0f32; 5]; ALPHA];
        for (i, row) in gg.iter_mut().enumerate() {
            for (b, v) in row.iter_mut().enumerate().take(r) {
                *v = (0..r).map(|a| s.g[i * r + a] * f[a * r + b]).sum();
            }
        }
        // (G g) G^T
        for (i, row) in gg.iter().enumerate() {
            for j in 0..ALPHA {
                let v: f32 = (0..r).map(|b| row[b] * s.g[j * r + b]).sum();
                u[(i * ALPHA + j) * plane + oc] = v;
            }
        }
    }
    u
}

/// The geometry of the data gradient of a stride-1 `r x r` convolution `g` as a
/// convolution of its output gradient with the flipped, transposed filters
/// ([`transform_weights_transposed`]): padding `r - 1 - p` on each side, so `None` where
/// the forward padding exceeds `r - 1` on a side.
pub fn backward_geom(g: &ConvGeom) -> Option<ConvGeom> {
    let r = g.k[0];
    // the forward's end padding: oh = h + begin + end - (r - 1)
    let end = |o: usize, size: usize, begin: usize| (o + r - 1).checked_sub(size + begin);
    let (e0, e1) = (end(g.oh, g.h, g.pad[0])?, end(g.ow, g.w, g.pad[1])?);
    if g.pad[0].max(g.pad[1]).max(e0).max(e1) > r - 1 || g.k[1] != r {
        return None;
    }
    Some(ConvGeom {
        h: g.oh,
        w: g.ow,
        oh: g.h,
        ow: g.w,
        pad: [r - 1 - g.pad[0], r - 1 - g.pad[1]],
        ..*g
    })
}

/// [`transform_weights`] of the filters of the data gradient: `w` (`[cout, cin, r, r]`)
/// flipped in both axes with its channel axes swapped, so the result is `[36][cin][cout]`.
pub fn transform_weights_transposed(s: &Scheme, w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let rr = s.r * s.r;
    let mut wt = vec![0f32; cin * cout * rr];
    for o in 0..cout {
        for c in 0..cin {
            for k in 0..rr {
                wt[(c * cout + o) * rr + rr - 1 - k] = w[(o * cin + c) * rr + k];
            }
        }
    }
    transform_weights(s, &wt, cin, cout)
}

/// `out` (`[n, cout, oh, ow]`) += the convolution of the `n` images `x` (`[n, cin, h, w]`)
/// with the filters whose transform is `u` ([`transform_weights`] of `s`), plus `bias`,
/// then through a ReLU when `relu`. `g` must satisfy
/// [`applies`](super::winograd::applies), with `s.r` its kernel.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    s: &Scheme,
    x: &[f32],
    n: usize,
    cin: usize,
    g: &ConvGeom,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    forward_in_blocks(s, x, (n, cin), g, u, bias, relu, out, BUDGET)
}

/// [`forward`] in blocks of tile rows (over all the images, in order) whose transformed
/// input and products take at most `budget` floats (at least one row).
#[allow(clippy::too_many_arguments)]
fn forward_in_blocks(
    s: &Scheme,
    x: &[f32],
    (n, cin): (usize, usize),
    g: &ConvGeom,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    budget: usize,
) {
    let cout = bias.len();
    let (th, tw) = (g.oh.div_ceil(s.m), g.ow.div_ceil(s.m));
    let all_rows = n * th;
    let per_row = ALPHA * ALPHA * (cin + cout) * tw;
    let block = (budget / per_row.max(1)).clamp(1, all_rows.max(1));
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for r0 in (0..all_rows).step_by(block) {
        let rows = r0..(r0 + block).min(all_rows);
        let t = rows.len() * tw;
        v.resize(ALPHA * ALPHA * cin * t, 0.0);
        m.resize(ALPHA * ALPHA * cout * t, 0.0);
        profile::timed(Phase::WinogradIn, 0, || {
            input_transform(s, x, cin, g, rows.clone(), &mut v)
        });
        let flops = 2 * (ALPHA * ALPHA * cout * cin * t) as u64;
        profile::timed(Phase::ConvGemm, flops, || {
            m.par_chunks_mut(cout * t).enumerate().for_each(|(i, dst)| {
                sgemm_threads(
                    dst,
                    (cout, t, cin),
                    MatRef::rows(&u[i * cout * cin..][..cout * cin], cin),
                    MatRef {
                        data: &v[i * t..],
                        rs: ALPHA * ALPHA * t,
                        cs: 1,
                    },
                    false,
                    Threads::One,
                )
            })
        });
        profile::timed(Phase::WinogradOut, 0, || {
            output_transform(s, &m, g, bias, relu, rows, out)
        });
    }
}

/// `dst[..] += c * src[..]` (vectorised by the compiler).
#[inline]
fn axpy(dst: &mut [f32], c: f32, src: &[f32]) {
    for (d, v) in dst.iter_mut().zip(src) {
        *d += c * v;
    }
}

/// The left factor of a transform on vectors of `t` tiles: `dst[i][b] = sum_a coef[i][a]
/// src(a, b)` for `rows` rows `i` (`coef`: `rows x 6`) and the 6 columns `b`, where
/// `src(6 a + b)` is element `(a, b)`'s vector.
fn left<'a>(
    coef: &[f32],
    rows: usize,
    t: usize,
    dst: &mut [f32],
    src: impl Fn(usize) -> &'a [f32],
) {
    dst[..rows * ALPHA * t].fill(0.0);
    for i in 0..rows {
        for a in 0..ALPHA {
            let c = coef[i * ALPHA + a];
            if c != 0.0 {
                for b in 0..ALPHA {
                    axpy(&mut dst[(i * ALPHA + b) * t..][..t], c, src(a * ALPHA + b));
                }
            }
        }
    }
}

/// The right factor: `dst[i][j] = init + sum_b coef[j][b] src[i][b]` for `rows` rows `i`
/// of `src` (`[rows][6][t]`) and `cols` columns `j` (`coef`: `cols x 6`).
fn right(
    coef: &[f32],
    (rows, cols): (usize, usize),
    t: usize,
    init: f32,
    dst: &mut [f32],
    src: &[f32],
) {
    for i in 0..rows {
        for j in 0..cols {
            let d = &mut dst[(i * cols + j) * t..][..t];
            d.fill(init);
            for b in 0..ALPHA {
                let c = coef[j * ALPHA + b];
                if c != 0.0 {
                    axpy(d, c, &src[(i * ALPHA + b) * t..][..t]);
                }
            }
        }
    }
}

/// `V = B^T d B` of every tile in the tile rows `rows` (numbered over all the images `x`,
/// image by image) of every channel, into `v` (`[cin][36][rows * tw]`): per channel, the
/// 6x6 patches of all the block's tiles gathered (`D`, `[36][tiles]`, from zero-padded
/// rows), then `B^T` over their rows and `B` over their columns as sums of whole vectors.
fn input_transform(
    s: &Scheme,
    x: &[f32],
    cin: usize,
    g: &ConvGeom,
    rows: Range<usize>,
    v: &mut [f32],
) {
    let (h, w, m) = (g.h, g.w, s.m);
    let (th, tw) = (g.oh.div_ceil(m), g.ow.div_ceil(m));
    let t = rows.len() * tw;
    let (pt, pl) = (g.pad[0] as isize, g.pad[1]);
    // a padded input row: tile `tx` reads columns `m tx .. m tx + 6`
    let wp = m * tw + ALPHA;
    let cols = w.min(wp.saturating_sub(pl));
    const P: usize = ALPHA * ALPHA;
    v.par_chunks_mut(P * t).enumerate().for_each_init(
        || (vec![0f32; wp], vec![0f32; P * t], vec![0f32; P * t]),
        |(prow, d, e), (c, vc)| {
            for row in rows.clone() {
                let (j, ty) = (row / th, row % th);
                let plane = &x[(j * cin + c) * h * w..][..h * w];
                let base = (row - rows.start) * tw;
                for a in 0..ALPHA {
                    prow.fill(0.0);
                    let y = (m * ty + a) as isize - pt;
                    if (0..h as isize).contains(&y) {
                        let src = &plane[y as usize * w..][..cols];
                        prow[pl..pl + cols].copy_from_slice(src);
                    }
                    for b in 0..ALPHA {
                        let dst = &mut d[(a * ALPHA + b) * t + base..][..tw];
                        for (tx, o) in dst.iter_mut().enumerate() {
                            *o = prow[m * tx + b];
                        }
                    }
                }
            }
            // E = B^T D (over the patch rows), then V = E B (over its columns)
            left(&s.bt, ALPHA, t, e, |k| &d[k * t..][..t]);
            right(&s.bt, (ALPHA, ALPHA), t, 0.0, vc, e);
        },
    );
}

/// `Y = A^T M A` of every tile in the tile rows `rows` (as [`input_transform`]'s), plus
/// the bias, onto `out` (all the images, `[n, cout, oh, ow]`), then the ReLU; `m` is
/// `[36][cout][rows * tw]`. Per output channel over all the block's tiles at once into
/// `[cout][m * m][tiles]`, then per output plane into its rows.
fn output_transform(
    s: &Scheme,
    mm: &[f32],
    g: &ConvGeom,
    bias: &[f32],
    relu: bool,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let (cout, m) = (bias.len(), s.m);
    let (oh, ow) = (g.oh, g.ow);
    let (th, tw) = (oh.div_ceil(m), ow.div_ceil(m));
    let t = rows.len() * tw;
    if rows.is_empty() {
        return;
    }
    let mut y = vec![0f32; cout * m * m * t];
    y.par_chunks_mut(m * m * t).enumerate().for_each_init(
        || vec![0f32; m * ALPHA * t],
        |q, (o, yo)| {
            // Q = A^T M (over the rows), then Y = Q A + b (over the columns)
            left(&s.at, m, t, q, |k| &mm[(k * cout + o) * t..][..t]);
            right(&s.at, (m, m), t, bias[o], yo, q);
        },
    );
    let (j0, j1) = (rows.start / th, (rows.end - 1) / th);
    let out = &mut out[j0 * cout * oh * ow..(j1 + 1) * cout * oh * ow];
    let act = |v: f32| if relu { super::kernels::relu(v) } else { v };
    out.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(plane, dst)| {
            let (j, o) = (j0 + plane / cout, plane % cout);
            let yo = &y[o * m * m * t..][..m * m * t];
            let tys = rows.start.max(j * th) - j * th..rows.end.min((j + 1) * th) - j * th;
            for ty in tys {
                let base = (j * th + ty - rows.start) * tw;
                for i in 0..m {
                    let oy = m * ty + i;
                    if oy >= oh {
                        break;
                    }
                    let drow = &mut dst[oy * ow..(oy + 1) * ow];
                    for jj in 0..m {
                        let src = &yo[(i * m + jj) * t + base..][..tw];
                        for (tx, v) in src.iter().enumerate() {
                            if let Some(d) = drow.get_mut(m * tx + jj) {
                                *d = act(*d + v);
                            }
                        }
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::super::winograd::applies;
    use super::super::winograd::test_support::{max_err_onto, noise};
    use super::*;

    #[test]
    fn the_schemes_are_the_papers_and_correlate_in_one_dimension() {
        // Lavin & Gray's F(4, 3) matrices, exactly
        let s = Scheme::for_kernel(3).unwrap();
        let bt: [f32; 36] = [
            4., 0., -5., 0., 1., 0., //
            0., -4., -4., 1., 1., 0., //
            0., 4., -4., -1., 1., 0., //
            0., -2., -1., 2., 1., 0., //
            0., 2., -1., -2., 1., 0., //
            0., 4., 0., -5., 0., 1.,
        ];
        assert_eq!(s.bt, bt);
        let at: [f32; 24] = [
            1., 1., 1., 1., 1., 0., //
            0., 1., -1., 2., -2., 0., //
            0., 1., 1., 4., 4., 0., //
            0., 1., -1., 8., -8., 1.,
        ];
        assert_eq!(s.at, at);
        let g6 = 1.0 / 6.0;
        let want_g = [
            0.25,
            0.,
            0.,
            -g6,
            -g6,
            -g6,
            -g6,
            g6,
            -g6,
            1. / 24.,
            1. / 12.,
            g6,
            1. / 24.,
            -1. / 12.,
            g6,
            0.,
            0.,
            1.,
        ];
        for (a, b) in s.g.iter().zip(want_g) {
            assert!((a - b).abs() < 1e-7, "{:?}", s.g);
        }
        // y = A^T [(G g) . (B^T d)] is the correlation of d with g, for both schemes
        for r in [3, 5] {
            let s = Scheme::for_kernel(r).unwrap();
            let (g, d) = (noise(r, 3), noise(ALPHA, 5));
            let gg: Vec<f32> = (0..ALPHA)
                .map(|j| (0..r).map(|k| s.g[j * r + k] * g[k]).sum())
                .collect();
            let bd: Vec<f32> = (0..ALPHA)
                .map(|j| (0..ALPHA).map(|k| s.bt[j * ALPHA + k] * d[k]).sum())
                .collect();
            for i in 0..s.m {
                let y: f32 = (0..ALPHA)
                    .map(|j| s.at[i * ALPHA + j] * gg[j] * bd[j])
                    .sum();
                let want: f32 = (0..r).map(|k| g[k] * d[i + k]).sum();
                assert!((y - want).abs() < 1e-5, "r {r} output {i}: {y} vs {want}");
            }
        }
    }

    fn direct(x: &[f32], w: &[f32], bias: &[f32], cin: usize, g: &ConvGeom) -> Vec<f32> {
        let r = g.k[0];
        let cout = bias.len();
        let mut y = vec![0f32; cout * g.oh * g.ow];
        for o in 0..cout {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut acc = bias[o] as f64;
                    for c in 0..cin {
                        for ky in 0..r {
                            for kx in 0..r {
                                let iy = (oy + ky) as isize - g.pad[0] as isize;
                                let ix = (ox + kx) as isize - g.pad[1] as isize;
                                if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                    continue;
                                }
                                let xv = x[(c * g.h + iy as usize) * g.w + ix as usize];
                                acc += (xv * w[((o * cin + c) * r + ky) * r + kx]) as f64;
                            }
                        }
                    }
                    y[(o * g.oh + oy) * g.ow + ox] = acc as f32;
                }
            }
        }
        y
    }

    fn geom(r: usize, h: usize, w: usize, pad: [usize; 2], pad_end: [usize; 2]) -> ConvGeom {
        ConvGeom {
            h,
            w,
            oh: h + pad[0] + pad_end[0] + 1 - r,
            ow: w + pad[1] + pad_end[1] + 1 - r,
            k: [r, r],
            stride: [1, 1],
            pad,
            dil: [1, 1],
        }
    }

    #[test]
    fn equals_the_direct_convolution() {
        // (r, h, w, pad begin, pad end, cin, cout, images): planes not a multiple of the
        // tile, no padding, uneven padding, a plane smaller than a tile, several images
        for (r, h, w, pad, pad_end, cin, cout, n) in [
            (3, 13, 13, [1, 1], [1, 1], 16, 24, 1),
            (3, 7, 7, [1, 1], [1, 1], 17, 16, 3),
            (3, 9, 6, [0, 0], [0, 0], 16, 16, 2),
            (3, 2, 5, [1, 2], [1, 2], 16, 32, 2),
            (5, 27, 27, [2, 2], [2, 2], 16, 20, 1),
            (5, 9, 8, [2, 1], [0, 2], 18, 16, 3),
            (5, 5, 5, [0, 0], [0, 0], 16, 16, 2),
        ] {
            let s = Scheme::for_kernel(r).unwrap();
            let g = geom(r, h, w, pad, pad_end);
            let x = noise(n * cin * h * w, 1 + h as u32);
            let wts = noise(cout * cin * r * r, 7 + cin as u32);
            let bias = noise(cout, 3);
            let u = transform_weights(s, &wts, cout, cin);
            let residual = noise(n * cout * g.oh * g.ow, 11);
            let one_row = ALPHA * ALPHA * (cin + cout) * g.ow.div_ceil(s.m);
            for (relu, budget) in [
                (false, BUDGET),
                (true, BUDGET),
                (false, 1),
                (true, 3 * one_row),
            ] {
                let mut got = residual.clone();
                forward_in_blocks(s, &x, (n, cin), &g, &u, &bias, relu, &mut got, budget);
                let d = max_err_onto(n, &got, &residual, relu, |j| {
                    direct(&x[j * cin * h * w..], &wts, &bias, cin, &g)
                });
                assert!(d < 1e-3, "r{r} {h}x{w} pad {pad:?}/{pad_end:?} n{n}: {d}");
            }
        }
    }

    #[test]
    fn the_data_gradient_is_the_adjoint() {
        for (r, h, w, pad, pad_end, cin, cout) in [
            (3, 9, 8, [1, 1], [1, 1], 16, 20),
            (3, 7, 7, [0, 0], [0, 0], 18, 16),
            (5, 11, 9, [2, 2], [2, 2], 16, 16),
            (5, 8, 10, [1, 3], [4, 0], 16, 17),
        ] {
            let s = Scheme::for_kernel(r).unwrap();
            let g = geom(r, h, w, pad, pad_end);
            let gb = backward_geom(&g).unwrap();
            let (x, y) = (noise(cin * h * w, 5), noise(cout * g.oh * g.ow, 9));
            let wts = noise(cout * cin * r * r, 11);
            let mut fx = vec![0f32; y.len()];
            let u = transform_weights(s, &wts, cout, cin);
            forward(s, &x, 1, cin, &g, &u, &vec![0.0; cout], false, &mut fx);
            let mut ty = vec![0f32; x.len()];
            let ut = transform_weights_transposed(s, &wts, cout, cin);
            forward(s, &y, 1, cout, &gb, &ut, &vec![0.0; cin], false, &mut ty);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum::<f64>();
            let (l, rr) = (dot(&fx, &y), dot(&x, &ty));
            assert!(
                (l - rr).abs() < 1e-3 * l.abs().max(1.0),
                "r{r}: {l} vs {rr}"
            );
        }
        // padding beyond r - 1 has no such form
        let mut g = geom(3, 8, 8, [1, 1], [1, 1]);
        g.pad = [3, 1];
        g.oh = 8 + 3 + 1 - 2;
        assert!(backward_geom(&g).is_none());
    }

    #[test]
    fn only_stride_one_three_and_five_kernels_of_enough_channels_apply() {
        let g = geom(3, 8, 8, [1, 1], [1, 1]);
        assert!(applies(&g, 1, 16, 16));
        assert!(applies(&geom(5, 8, 8, [2, 2], [2, 2]), 1, 64, 192));
        assert!(!applies(&geom(7, 8, 8, [3, 3], [3, 3]), 1, 64, 64));
        assert!(!applies(&g, 2, 16, 16));
        assert!(!applies(&g, 1, 3, 16));
        let strided = ConvGeom {
            stride: [2, 2],
            ..g
        };
        assert!(!applies(&strided, 1, 16, 16));
    }
}
