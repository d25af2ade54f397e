//! Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
//! Convolutional Neural Networks", 2016) for the CPU kernels' stride-1 3x3 convolutions.
//!
//! Each 2x2 block of outputs (a *tile*) is `A^T [(G g G^T) . (B^T d B)] A` of the 4x4
//! input patch `d` under it and the 3x3 filter `g`: in the transformed domain a
//! convolution is 16 independent matrix products `M_i = U_i . V_i` (`U_i`: `[cout, cin]`,
//! transformed weights; `V_i`: `[cin, tiles]`, transformed input), with 16 multiply-adds
//! per tile and channel pair where the direct convolution spends 36. The transforms are
//! additions (and halvings in `G`), so the result equals the direct convolution up to
//! round-off: the golden suite and `tests` below hold it to the same bars as `im2col`.
//!
//! Layouts: `U` is `[16][cout][cin]` (made once per weights, [`WeightCache`]); `V` is
//! `[cin][16][tiles]` (each channel's 16 rows written by one thread) and read through a
//! row stride; `M` is `[16][cout][tiles]`. Tiles are numbered image by image, row by row.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use candle_core::{Tensor, TensorId};
use rayon::prelude::*;

use super::kernels::{sgemm_threads, ConvGeom, MatRef, Threads};
use super::profile::{self, Phase};

/// Input and output channels below which the direct convolution stays: the 16 products
/// have `cin` terms each, and a first layer's 3 channels leave them nearly all packing
/// (`treevis bench --kernels` prints both ways for every stride-1 3x3 convolution).
const MIN_CHANNELS: usize = 16;

/// Multiply-adds of one of the 16 products (`cout * cin * tiles` over the images) below
/// which the direct convolution stays: small planes at batch 1 spend more on the 16
/// hand-offs and transforms than the products save (demo-resnet's 4x4 to 16x16 planes,
/// `treevis bench --kernels --models demo-resnet`).
const MIN_WORK: usize = 1 << 21;

/// Floats of transformed input and products (`16 * (cin + cout) * tw` per tile row) one
/// block of tile rows takes: 8 MB. Whole images at up to 16 MB, and 2 MB blocks, measured
/// no better on ResNet-50 and AlexNet at batch 32 (`bench --kernels`, its `(im2col only)`
/// rows beside; this machine's noise is of the same size as the differences).
const BUDGET: usize = 2 << 20;

/// Whether a convolution of this geometry and these channel counts runs as Winograd: a
/// 3x3 kernel (here, or by F(4x4, 3x3) in [`super::winograd6`]) or a 5x5 one (F(2x2, 5x5)
/// there) at stride 1 without dilation, one group, enough channels.
pub fn applies(g: &ConvGeom, groups: usize, cin: usize, cout: usize) -> bool {
    (g.k == [3, 3] || g.k == [5, 5])
        && g.stride == [1, 1]
        && g.dil == [1, 1]
        && groups == 1
        && cin >= MIN_CHANNELS
        && cout >= MIN_CHANNELS
}

/// Whether `n` images (or gradient rows) of a convolution that [`applies`] are enough work
/// for Winograd to gain (`MIN_WORK`).
pub fn worth(g: &ConvGeom, n: usize, cin: usize, cout: usize) -> bool {
    product_work(g, n, cin, cout, 2) >= MIN_WORK
}

/// Multiply-adds of one of a Winograd scheme's products (`cout * cin * tiles` over `n`
/// images) with `m x m` output tiles.
pub fn product_work(g: &ConvGeom, n: usize, cin: usize, cout: usize, m: usize) -> usize {
    n * g.oh.div_ceil(m) * g.ow.div_ceil(m) * cin * cout
}

/// `U = G g G^T` of every filter, as `[16][cout][cin]`: `w` is `[cout, cin, 3, 3]`.
pub fn transform_weights(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * cout * cin];
    let plane = cout * cin;
    for (oc, g) in w.chunks_exact(9).enumerate().take(plane) {
        // G g: the rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2
        let mut gg = [[0f32; 3]; 4];
        for c in 0..3 {
            let (a, b, d) = (g[c], g[3 + c], g[6 + c]);
            gg[0][c] = a;
            gg[1][c] = 0.5 * (a + b + d);
            gg[2][c] = 0.5 * (a - b + d);
            gg[3][c] = d;
        }
        // (G g) G^T: the same on each row's three values
        for (r, row) in gg.iter().enumerate() {
            let (a, b, d) = (row[0], row[1], row[2]);
            let t = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
            for (s, v) in t.into_iter().enumerate() {
                u[(4 * r + s) * plane + oc] = v;
            }
        }
    }
    u
}

/// The geometry of the data gradient of a stride-1 3x3 convolution `g` as a convolution
/// of its output gradient (`oh x ow`) with the flipped, transposed filters
/// ([`transform_weights_transposed`]): padding `2 - p` on each side, so `None` where the
/// forward padding exceeds 2 on a side.
pub fn backward_geom(g: &ConvGeom) -> Option<ConvGeom> {
    // the forward's end padding: oh = h + begin + end - 2
    let end = |o: usize, size: usize, begin: usize| (o + 2).checked_sub(size + begin);
    let (e0, e1) = (end(g.oh, g.h, g.pad[0])?, end(g.ow, g.w, g.pad[1])?);
    if g.pad[0].max(g.pad[1]).max(e0).max(e1) > 2 {
        return None;
    }
    Some(ConvGeom {
        h: g.oh,
        w: g.ow,
        oh: g.h,
        ow: g.w,
        pad: [2 - g.pad[0], 2 - g.pad[1]],
        ..*g
    })
}

/// [`transform_weights`] of the filters of the data gradient: `w` (`[cout, cin, 3, 3]`)
/// flipped in both axes with its channel axes swapped (`[cin, cout, 3, 3]`), so the
/// result is `[16][cin][cout]`.
pub fn transform_weights_transposed(w: &[f32], cout: usize, cin: usize) -> Vec<f32> {
    let mut wt = vec![0f32; cin * cout * 9];
    for o in 0..cout {
        for c in 0..cin {
            for k in 0..9 {
                wt[(c * cout + o) * 9 + 8 - k] = w[(o * cin + c) * 9 + k];
            }
        }
    }
    transform_weights(&wt, cin, cout)
}

/// `out` (`[n, cout, oh, ow]`) += the convolution of the `n` images `x` (`[n, cin, h, w]`)
/// with the filters whose transform is `u` ([`transform_weights`]), plus `bias`, then
/// through a ReLU when `relu` (so `out` holds zeros, or a residual the convolution is
/// added to). `g` must be a 3x3 convolution that [`applies`].
#[allow(clippy::too_many_arguments)]
pub fn forward(
    x: &[f32],
    n: usize,
    cin: usize,
    g: &ConvGeom,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
) {
    forward_in_blocks(x, n, cin, g, u, bias, relu, out, BUDGET)
}

/// [`forward`] in blocks of tile rows (over all the images, in order) whose transformed
/// input and products take at most `budget` floats (at least one row): the transforms
/// expand each output 4 times, so a block that stays in cache between the input
/// transform, the products and the output transform saves that traffic.
#[allow(clippy::too_many_arguments)]
fn forward_in_blocks(
    x: &[f32],
    n: usize,
    cin: usize,
    g: &ConvGeom,
    u: &[f32],
    bias: &[f32],
    relu: bool,
    out: &mut [f32],
    budget: usize,
) {
    let cout = bias.len();
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let all_rows = n * th;
    let block = (budget / (16 * (cin + cout) * tw).max(1)).clamp(1, all_rows.max(1));
    let (mut v, mut m) = (Vec::new(), Vec::new());
    for r0 in (0..all_rows).step_by(block) {
        let rows = r0..(r0 + block).min(all_rows);
        let t = rows.len() * tw;
        v.resize(16 * cin * t, 0.0);
        m.resize(16 * cout * t, 0.0);
        profile::timed(Phase::WinogradIn, 0, || {
            input_transform(x, cin, g, rows.clone(), &mut v)
        });
        let flops = 2 * (16 * cout * cin * t) as u64;
        profile::timed(Phase::ConvGemm, flops, || {
            m.par_chunks_mut(cout * t).enumerate().for_each(|(i, dst)| {
                sgemm_threads(
                    dst,
                    (cout, t, cin),
                    MatRef::rows(&u[i * cout * cin..][..cout * cin], cin),
                    MatRef {
                        data: &v[i * t..],
                        rs: 16 * t,
                        cs: 1,
                    },
                    false,
                    Threads::One,
                )
            })
        });
        profile::timed(Phase::WinogradOut, 0, || {
            output_transform(&m, g, bias, relu, rows, out)
        });
    }
}

/// `V = B^T d B` of every tile in the tile rows `rows` (numbered over all the images
/// `x`, image by image) of every channel, into `v` (`[cin][16][rows * tw]`). Per channel and tile row, the four input rows under it are
/// padded into a buffer with their even and odd columns apart, combined (`B^T`) whole,
/// then each tile's four columns (`B`) as shifted slices: every loop runs over contiguous
/// memory, so the compiler vectorises it.
fn input_transform(x: &[f32], cin: usize, g: &ConvGeom, rows: Range<usize>, v: &mut [f32]) {
    let (h, w) = (g.h, g.w);
    let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
    let t = rows.len() * tw;
    let (pt, pl) = (g.pad[0] as isize, g.pad[1]);
    // padded column `q = xx + pl` of input column `xx`; tile `tx` reads `2 tx .. 2 tx + 4`,
    // so columns `0 .. 2 (tw + 1)`: even ones at `q / 2`, odd ones at `half + q / 2`
    let half = tw + 1;
    let wp = 2 * half;
    let cols = w.min(wp.saturating_sub(pl));
    v.par_chunks_mut(16 * t).enumerate().for_each(|(c, vc)| {
        let mut buf = vec![0f32; 4 * wp];
        let mut e = vec![0f32; 4 * wp];
        for row in rows.clone() {
            let (j, ty) = (row / th, row % th);
            let plane = &x[(j * cin + c) * h * w..][..h * w];
            {
                for (r, dst) in buf.chunks_exact_mut(wp).enumerate() {
                    dst.fill(0.0);
                    let y = (2 * ty + r) as isize - pt;
                    if (0..h as isize).contains(&y) {
                        let src = &plane[y as usize * w..][..cols];
                        for (xx, &val) in src.iter().enumerate() {
                            let q = xx + pl;
                            dst[(q & 1) * half + (q >> 1)] = val;
                        }
                    }
                }
                let (r0, rest) = buf.split_at(wp);
                let (r1, rest) = rest.split_at(wp);
                let (r2, r3) = rest.split_at(wp);
                let (e0, rest) = e.split_at_mut(wp);
                let (e1, rest) = rest.split_at_mut(wp);
                let (e2, e3) = rest.split_at_mut(wp);
                for q in 0..wp {
                    e0[q] = r0[q] - r2[q];
                    e1[q] = r1[q] + r2[q];
                    e2[q] = r2[q] - r1[q];
                    e3[q] = r1[q] - r3[q];
                }
                let base = (row - rows.start) * tw;
                for (r, er) in e.chunks_exact(wp).enumerate() {
                    // columns 2tx, 2tx+1, 2tx+2, 2tx+3 of the tile
                    let (ev, od) = er.split_at(half);
                    let (a, b, cc, d) = (&ev[..tw], &od[..tw], &ev[1..], &od[1..]);
                    let (v0, rest) = vc[4 * r * t..(4 * r + 4) * t].split_at_mut(t);
                    let (v1, rest) = rest.split_at_mut(t);
                    let (v2, v3) = rest.split_at_mut(t);
                    let dst = (
                        &mut v0[base..base + tw],
                        &mut v1[base..base + tw],
                        &mut v2[base..base + tw],
                        &mut v3[base..base + tw],
                    );
                    for k in 0..tw {
                        dst.0[k] = a[k] - cc[k];
                        dst.1[k] = b[k] + cc[k];
                        dst.2[k] = cc[k] - b[k];
                        dst.3[k] = b[k] - d[k];
                    }
                }
            }
        }
    });
}

/// `Y = A^T M A` of every tile in the tile rows `rows` (as [`input_transform`]'s), plus
/// the bias, onto `out` (all the images, `[n, cout, oh, ow]`), then the ReLU; `m` is
/// `[16][cout][rows * tw]`. Parallel over the output planes the rows reach; per tile row
/// the sums run over contiguous slices of `M` into four output rows of `tw`
/// (vectorised), then are interleaved into the plane.
fn output_transform(
    m: &[f32],
    g: &ConvGeom,
    bias: &[f32],
    relu: bool,
    rows: Range<usize>,
    out: &mut [f32],
) {
    let cout = bias.len();
    let (oh, ow) = (g.oh, g.ow);
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let t = rows.len() * tw;
    if rows.is_empty() {
        return;
    }
    let (j0, j1) = (rows.start / th, (rows.end - 1) / th);
    let out = &mut out[j0 * cout * oh * ow..(j1 + 1) * cout * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each_init(
        || vec![0f32; 12 * tw],
        |buf, (plane, y)| {
            let (j, o) = (j0 + plane / cout, plane % cout);
            let b = bias[o];
            let (q, yy) = buf.split_at_mut(8 * tw);
            let tys = rows.start.max(j * th) - j * th..rows.end.min((j + 1) * th) - j * th;
            for ty in tys {
                let base = (j * th + ty - rows.start) * tw;
                let src = |i: usize| &m[(i * cout + o) * t + base..][..tw];
                // A^T M: per column s, the rows m0+m1+m2 (q[s]) and m1-m2-m3 (q[4+s])
                for s in 0..4 {
                    let (m0, m1, m2, m3) = (src(s), src(4 + s), src(8 + s), src(12 + s));
                    let (q0, q1) = q.split_at_mut(4 * tw);
                    let (q0, q1) = (&mut q0[s * tw..][..tw], &mut q1[s * tw..][..tw]);
                    for k in 0..tw {
                        q0[k] = m0[k] + m1[k] + m2[k];
                        q1[k] = m1[k] - m2[k] - m3[k];
                    }
                }
                // (A^T M) A: outputs (0,0), (0,1), (1,0), (1,1) of each tile
                for (row, yr) in yy.chunks_exact_mut(tw).enumerate() {
                    let (ra, col) = (row / 2, row % 2);
                    let p = |s: usize| &q[(4 * ra + s) * tw..][..tw];
                    let (p0, p1, p2, p3) = (p(0), p(1), p(2), p(3));
                    for k in 0..tw {
                        yr[k] = if col == 0 {
                            p0[k] + p1[k] + p2[k]
                        } else {
                            p1[k] - p2[k] - p3[k]
                        } + b;
                    }
                }
                for a in 0..2 {
                    let oy = 2 * ty + a;
                    if oy >= oh {
                        break;
                    }
                    let dst = &mut y[oy * ow..(oy + 1) * ow];
                    let (even, odd) = (&yy[2 * a * tw..][..tw], &yy[(2 * a + 1) * tw..][..tw]);
                    // onto what `out` holds, then the ReLU
                    let act = |v: f32| if relu { super::kernels::relu(v) } else { v };
                    for (k, pair) in dst.chunks_mut(2).enumerate() {
                        pair[0] = act(pair[0] + even[k]);
                        if let Some(second) = pair.get_mut(1) {
                            *second = act(*second + odd[k]);
                        }
                    }
                }
            }
        },
    );
}

/// A convolution's transformed weights, made on first use and kept beside the weights
/// they came from, one per transform `kind` (a scheme, forward or transposed), by tensor
/// identity: a net whose `w` is replaced, such as a randomized copy, makes its own. Weights
/// changed *in place* (a training `Var`) are not seen, so training passes do not use it.
#[derive(Default)]
pub struct WeightCache(Mutex<Vec<Kept>>);

/// A transform kept: of which weights, which kind.
type Kept = (TensorId, u8, Arc<Vec<f32>>);

impl Clone for WeightCache {
    fn clone(&self) -> Self {
        let kept = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        WeightCache(Mutex::new(kept))
    }
}

impl WeightCache {
    /// The transform of `kind` of `w`, made by `make` unless one is kept; transforms of
    /// other weights are dropped.
    pub fn get(
        &self,
        w: &Tensor,
        kind: u8,
        make: impl FnOnce() -> crate::error::Result<Vec<f32>>,
    ) -> crate::error::Result<Arc<Vec<f32>>> {
        let mut kept = self
            .0
            .lock()
            .map_err(|_| crate::error::Error::internal("the weight cache lock was poisoned"))?;
        if let Some((_, _, u)) = kept.iter().find(|(id, k, _)| *id == w.id() && *k == kind) {
            return Ok(u.clone());
        }
        let u = Arc::new(make()?);
        kept.retain(|(id, _, _)| *id == w.id());
        kept.push((w.id(), kind, u.clone()));
        Ok(u)
    }
}

/// What the tests of both Winograd modules share.
#[cfg(test)]
pub(crate) mod test_support {
    /// `len` numbers in [-1, 1), the same for the same seed.
    pub fn noise(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).max(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// `direct` plus `residual`, through a ReLU when `relu`: what a convolution written
    /// onto a residual must give.
    fn onto(mut direct: Vec<f32>, residual: &[f32], relu: bool) -> Vec<f32> {
        for (v, r) in direct.iter_mut().zip(residual) {
            *v += r;
            if relu {
                *v = v.max(0.0);
            }
        }
        direct
    }

    /// The largest difference of `have` from `want` (infinite at a NaN).
    fn max_err(want: &[f32], have: &[f32]) -> f32 {
        want.iter()
            .zip(have)
            .map(|(a, b)| (a - b).abs())
            .fold(
                0f32,
                |m, v| if v.is_nan() { f32::INFINITY } else { m.max(v) },
            )
    }

    /// The largest difference over the `n` images of `got` from what a convolution
    /// written onto `residual` must give, `direct(j)` being image `j`'s direct convolution.
    pub fn max_err_onto(
        n: usize,
        got: &[f32],
        residual: &[f32],
        relu: bool,
        direct: impl Fn(usize) -> Vec<f32>,
    ) -> f32 {
        (0..n)
            .map(|j| {
                let want = direct(j);
                let at = j * want.len()..(j + 1) * want.len();
                max_err(&onto(want, &residual[at.clone()], relu), &got[at])
            })
            .fold(0f32, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{max_err_onto, noise};
    use super::*;
    use crate::model::kernels::{im2col, sgemm};

    /// The direct convolution (`im2col` and one product) of one image.
    fn direct(x: &[f32], w: &[f32], bias: &[f32], cin: usize, g: &ConvGeom) -> Vec<f32> {
        let cout = bias.len();
        let ohw = g.oh * g.ow;
        let cols = im2col(x, 1, cin * g.h * g.w, cin, g);
        let mut y = vec![0f32; cout * ohw];
        for (row, b) in y.chunks_mut(ohw).zip(bias) {
            row.fill(*b);
        }
        sgemm(
            &mut y,
            cout,
            ohw,
            cin * 9,
            MatRef::rows(w, cin * 9),
            MatRef::rows(&cols, ohw),
            true,
        );
        y
    }

    fn geom(h: usize, w: usize, pad: [usize; 2], pad_end: [usize; 2]) -> ConvGeom {
        ConvGeom {
            h,
            w,
            oh: h + pad[0] + pad_end[0] - 2,
            ow: w + pad[1] + pad_end[1] - 2,
            k: [3, 3],
            stride: [1, 1],
            pad,
            dil: [1, 1],
        }
    }

    #[test]
    fn equals_the_direct_convolution() {
        // (h, w, pad begin, pad end, cin, cout, images): odd and even outputs, no padding,
        // uneven padding, a plane narrower than a tile row, several chunks
        for (h, w, pad, pad_end, cin, cout, n) in [
            (13, 13, [1, 1], [1, 1], 16, 24, 1),
            (8, 8, [1, 1], [1, 1], 17, 16, 3),
            (9, 6, [0, 0], [0, 0], 16, 16, 2),
            (7, 10, [2, 1], [0, 1], 20, 18, 2),
            (3, 3, [1, 1], [1, 1], 16, 16, 1),
            (2, 5, [1, 2], [1, 2], 16, 32, 2),
        ] {
            let g = geom(h, w, pad, pad_end);
            let x = noise(n * cin * h * w, 1 + h as u32);
            let wts = noise(cout * cin * 9, 7 + cin as u32);
            let bias = noise(cout, 3);
            let u = transform_weights(&wts, cout, cin);
            // the default blocks, one tile row per block, three rows (across images)
            let three = 3 * 16 * (cin + cout) * g.ow.div_ceil(2);
            // onto a residual (every output must be added to once, then the ReLU)
            let residual = noise(n * cout * g.oh * g.ow, 11);
            for (relu, budget) in [(false, BUDGET), (true, BUDGET), (false, 1), (true, three)] {
                let mut got = residual.clone();
                forward_in_blocks(&x, n, cin, &g, &u, &bias, relu, &mut got, budget);
                let d = max_err_onto(n, &got, &residual, relu, |j| {
                    direct(&x[j * cin * h * w..], &wts, &bias, cin, &g)
                });
                assert!(
                    d < 1e-4,
                    "{h}x{w} pad {pad:?}/{pad_end:?} c{cin}->{cout} n{n} budget {budget}: {d}"
                );
            }
        }
    }

    #[test]
    fn the_data_gradient_is_the_adjoint() {
        // <conv(x), y> = <x, conv^T(y)> for random x, y: the transposed run is the adjoint
        for (h, w, pad, pad_end, cin, cout) in [
            (9, 8, [1, 1], [1, 1], 16, 20),
            (7, 7, [0, 0], [0, 0], 18, 16),
            (6, 9, [2, 1], [0, 2], 16, 16),
        ] {
            let g = geom(h, w, pad, pad_end);
            let gb = backward_geom(&g).unwrap();
            let (x, y) = (noise(cin * h * w, 5), noise(cout * g.oh * g.ow, 9));
            let wts = noise(cout * cin * 9, 11);
            let mut fx = vec![0f32; y.len()];
            forward(
                &x,
                1,
                cin,
                &g,
                &transform_weights(&wts, cout, cin),
                &vec![0.0; cout],
                false,
                &mut fx,
            );
            let mut ty = vec![0f32; x.len()];
            let ut = transform_weights_transposed(&wts, cout, cin);
            forward(&y, 1, cout, &gb, &ut, &vec![0.0; cin], false, &mut ty);
            let dot =
                |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(p, q)| (p * q) as f64).sum::<f64>();
            let (l, r) = (dot(&fx, &y), dot(&x, &ty));
            assert!(
                (l - r).abs() < 1e-3 * l.abs().max(1.0),
                "{h}x{w} {pad:?}/{pad_end:?}: {l} vs {r}"
            );
        }
        let wide = ConvGeom {
            pad: [3, 1],
            oh: 12,
            ..geom(8, 8, [1, 1], [1, 1])
        };
        assert!(backward_geom(&wide).is_none(), "padding 3");
    }

    #[test]
    fn which_convolutions_apply() {
        let g = geom(8, 8, [1, 1], [1, 1]);
        assert!(applies(&g, 1, 16, 16));
        assert!(!applies(&g, 2, 16, 16), "grouped");
        assert!(!applies(&g, 1, 3, 64), "a first layer");
        assert!(!applies(
            &ConvGeom {
                stride: [2, 2],
                ..g
            },
            1,
            64,
            64
        ));
        assert!(!applies(&ConvGeom { dil: [2, 2], ..g }, 1, 64, 64));
        assert!(!applies(&ConvGeom { k: [3, 1], ..g }, 1, 64, 64));
    }

    #[test]
    fn the_cache_follows_the_weights() {
        let dev = candle_core::Device::Cpu;
        let a = Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap();
        let b = Tensor::ones(4, candle_core::DType::F32, &dev).unwrap();
        let cache = WeightCache::default();
        let made = std::cell::Cell::new(0);
        let make = |v: f32| {
            made.set(made.get() + 1);
            Ok(vec![v])
        };
        assert_eq!(*cache.get(&a, 0, || make(0.0)).unwrap(), [0.0]);
        assert_eq!(*cache.get(&a, 0, || make(9.0)).unwrap(), [0.0], "kept");
        assert_eq!(
            *cache.get(&a, 1, || make(5.0)).unwrap(),
            [5.0],
            "another kind"
        );
        assert_eq!(*cache.get(&a, 0, || make(9.0)).unwrap(), [0.0], "both kept");
        let copy = cache.clone();
        assert_eq!(
            *copy.get(&b, 0, || make(1.0)).unwrap(),
            [1.0],
            "other weights"
        );
        assert_eq!(
            *cache.get(&a, 0, || make(9.0)).unwrap(),
            [0.0],
            "the original keeps its own"
        );
        assert_eq!(*copy.get(&b, 1, || make(2.0)).unwrap(), [2.0]);
        assert_eq!(
            *copy.get(&a, 1, || make(3.0)).unwrap(),
            [3.0],
            "b's dropped"
        );
        assert_eq!(*copy.get(&b, 1, || make(4.0)).unwrap(), [4.0], "made again");
        assert_eq!(made.get(), 6);
    }
}
