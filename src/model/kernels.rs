//! The CPU backend, kernels that candle lacks or does slowly: max pooling with switches
//! (argmax), Caffe's ceil-rounded average pooling, adaptive average pooling, fused LRN,
//! `im2col`/`col2im` and the matrix products of convolutions, the data
//! gradient of convolutions, and the ReLU backward rules. Each works on contiguous `f32`
//! slices; the backward kernels take a batch of gradient *rows* against the forward state of
//! one image (shared by every row). Planes are processed in parallel with rayon.

// Index loops over planes read more plainly than iterator chains here.
#![allow(clippy::needless_range_loop)]

use rayon::prelude::*;

use super::rule::Rule;
use super::spec::PoolSpec;

/// Output size along axis `axis` (0: rows, 1: columns) of a pooling window sweep over
/// `size` cells, with Caffe's ceil or PyTorch's floor rounding. Ceil mode drops a last
/// window that would start in the right/bottom padding (both frameworks do). `None` when
/// the window does not fit.
pub fn pool_out_axis(size: usize, p: &PoolSpec, axis: usize) -> Option<usize> {
    let (k, s, pb) = (p.kernel.0[axis], p.stride.0[axis], p.pad.begin(axis));
    let span = size
        .checked_add(pb)?
        .checked_add(p.pad.end(axis))?
        .checked_sub(k)?;
    let mut out = if p.ceil {
        span.div_ceil(s) + 1
    } else {
        span / s + 1
    };
    if p.ceil && pb > 0 && (out - 1) * s >= size + pb {
        out -= 1;
    }
    Some(out)
}

/// Output size of a square pooling window sweep (both axes alike).
pub fn pool_out(size: usize, p: &PoolSpec) -> Option<usize> {
    pool_out_axis(size, p, 0)
}

/// Output size of a convolution along one axis: `pads` is the padding before plus after;
/// `None` when the (dilated) kernel does not fit or the sizes overflow.
pub fn conv_out(
    size: usize,
    kernel: usize,
    stride: usize,
    pads: usize,
    dil: usize,
) -> Option<usize> {
    let eff = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    if stride == 0 {
        return None;
    }
    size.checked_add(pads)?
        .checked_sub(eff)
        .map(|s| s / stride + 1)
}

/// Rows (or columns) `start..end` of the input that output row (column) `o` of a pooling
/// sweep covers along `axis`, clipped to the input.
fn max_window(o: usize, p: &PoolSpec, size: usize, axis: usize) -> (usize, usize) {
    let o0 = (o * p.stride.0[axis]) as isize - p.pad.begin(axis) as isize;
    let start = (o0.max(0) as usize).min(size);
    let end = ((o0 + p.kernel.0[axis] as isize).max(0) as usize).min(size);
    (start, end.max(start))
}

/// `m = max(m, row)` element by element, `r = yy` where `row` won (a NaN always wins):
/// one input row of a max-pooling window. Compiled for AVX2 when the CPU has it (8 lanes
/// and blends; the SSE2 baseline leaves it scalar), chosen at run time.
fn column_max(m: &mut [f32], r: &mut [u32], row: &[f32], yy: u32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected on this CPU.
            return unsafe { column_max_avx2(m, r, row, yy) };
        }
    }
    column_max_plain(m, r, row, yy)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn column_max_avx2(m: &mut [f32], r: &mut [u32], row: &[f32], yy: u32) {
    column_max_plain(m, r, row, yy)
}

#[inline(always)]
fn column_max_plain(m: &mut [f32], r: &mut [u32], row: &[f32], yy: u32) {
    for ((m, r), &v) in m.iter_mut().zip(r.iter_mut()).zip(row) {
        #[allow(clippy::eq_op)]
        let take = (v > *m) | (v != v);
        *m = if take { v } else { *m };
        *r = if take { yy } else { *r };
    }
}

/// Max pooling of `planes` planes of `h x w`; returns the pooled values and, per output
/// element, the index in its input plane of the maximum (the first one in row-major window
/// order on ties, as PyTorch and Caffe; a NaN wins, the last one when there are several).
///
/// Separable: for each output row the maxima of its window's input rows are taken column
/// by column (with the first row reaching each), a loop over contiguous rows that the
/// compiler vectorises; then each output takes the best of its window's columns, a tie
/// going to the column whose maximum sits in the earlier row.
pub fn maxpool_forward(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    p: &PoolSpec,
    (oh, ow): (usize, usize),
) -> (Vec<f32>, Vec<u32>) {
    let mut out = vec![0f32; planes * oh * ow];
    let mut sw = vec![0u32; planes * oh * ow];
    let cols: Vec<(usize, usize)> = (0..ow).map(|ox| max_window(ox, p, w, 1)).collect();
    out.par_chunks_mut(oh * ow)
        .zip(sw.par_chunks_mut(oh * ow))
        .enumerate()
        .for_each(|(pl, (o, s))| {
            let xp = &x[pl * h * w..(pl + 1) * h * w];
            let mut cmax = vec![0f32; w];
            let mut crow = vec![0u32; w];
            for oy in 0..oh {
                let (ys, ye) = max_window(oy, p, h, 0);
                cmax.fill(f32::NEG_INFINITY);
                crow.fill(ys as u32);
                for yy in ys..ye {
                    column_max(&mut cmax, &mut crow, &xp[yy * w..(yy + 1) * w], yy as u32);
                }
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                let srow = &mut s[oy * ow..(oy + 1) * ow];
                let nan = cmax.iter().any(|v| v.is_nan());
                for ((ov, sv), &(xs, xe)) in orow.iter_mut().zip(srow.iter_mut()).zip(&cols) {
                    // a switch compares as `row * w + column`: the smaller wins a tie, the
                    // larger a NaN tie (the last NaN, as the direct scan)
                    let (mut best, mut at) = (f32::NEG_INFINITY, (ys * w + xs) as u32);
                    for xx in xs..xe {
                        let (v, idx) = (cmax[xx], crow[xx] * w as u32 + xx as u32);
                        let take = if nan {
                            let (vn, bn) = (v.is_nan(), best.is_nan());
                            (vn & (!bn | (idx > at)))
                                | (!vn & !bn & ((v > best) | ((v == best) & (idx < at))))
                        } else {
                            (v > best) | ((v == best) & (idx < at))
                        };
                        best = if take { v } else { best };
                        at = if take { idx } else { at };
                    }
                    *ov = best;
                    *sv = at;
                }
            }
        });
    (out, sw)
}

/// The values of [`maxpool_forward`] without its switches, for passes that keep none (a
/// scan of blobs, a feature-cache batch): the same separable sweep, with no row or index
/// to carry, so both steps are plain maxima (a NaN still wins, as there).
pub fn maxpool_values(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    p: &PoolSpec,
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; planes * oh * ow];
    let cols: Vec<(usize, usize)> = (0..ow).map(|ox| max_window(ox, p, w, 1)).collect();
    let rows: Vec<(usize, usize)> = (0..oh).map(|oy| max_window(oy, p, h, 0)).collect();
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(pl, o)| {
        let xp = &x[pl * h * w..(pl + 1) * h * w];
        let mut cmax = vec![0f32; w];
        for (orow, &(ys, ye)) in o.chunks_mut(ow).zip(&rows) {
            cmax.fill(f32::NEG_INFINITY);
            for yy in ys..ye {
                row_max(&mut cmax, &xp[yy * w..(yy + 1) * w]);
            }
            for (ov, &(xs, xe)) in orow.iter_mut().zip(&cols) {
                *ov = cmax[xs..xe]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v));
            }
        }
    });
    out
}

/// `max(m, v)` where a NaN wins.
#[inline(always)]
fn nan_max(m: f32, v: f32) -> f32 {
    #[allow(clippy::eq_op)]
    let take = (v > m) | (v != v);
    if take {
        v
    } else {
        m
    }
}

/// `m = max(m, row)` element by element ([`nan_max`]), compiled for AVX2 when the CPU has
/// it, as [`column_max`].
fn row_max(m: &mut [f32], row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected on this CPU.
            return unsafe { row_max_avx2(m, row) };
        }
    }
    row_max_plain(m, row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_max_avx2(m: &mut [f32], row: &[f32]) {
    row_max_plain(m, row)
}

#[inline(always)]
fn row_max_plain(m: &mut [f32], row: &[f32]) {
    for (m, &v) in m.iter_mut().zip(row) {
        *m = nan_max(*m, v);
    }
}

/// Gradient of max pooling: each row's output gradient goes to the switch of its element.
/// `g` is `[rows, planes, oh*ow]`; `sw` the switches of one image `[planes, oh*ow]`
/// (shared by every row) or of every row.
pub fn maxpool_backward(
    g: &[f32],
    sw: &[u32],
    planes: usize,
    in_hw: usize,
    out_hw: usize,
) -> Vec<f32> {
    let rows = g.len() / (planes * out_hw);
    let mut dx = vec![0f32; rows * planes * in_hw];
    let sw_planes = sw.len() / out_hw;
    dx.par_chunks_mut(in_hw).enumerate().for_each(|(rp, d)| {
        let pl = rp % sw_planes;
        let gp = &g[rp * out_hw..(rp + 1) * out_hw];
        let sp = &sw[pl * out_hw..(pl + 1) * out_hw];
        for (gv, &s) in gp.iter().zip(sp) {
            d[s as usize] += gv;
        }
    });
    dx
}

/// Window bounds of average pooling along `axis`. With `count_include_pad` (Caffe's and
/// PyTorch's default) the divisor counts padding but not the part of a ceil-mode window
/// hanging past the padded input; without, only the cells inside the input.
pub(crate) fn avg_window(o: usize, p: &PoolSpec, size: usize, axis: usize) -> Window {
    let start = (o * p.stride.0[axis]) as isize - p.pad.begin(axis) as isize;
    let end = (start + p.kernel.0[axis] as isize).min((size + p.pad.end(axis)) as isize);
    let s = start.max(0) as usize;
    let e = (end.max(0) as usize).min(size);
    let count = if p.count_include_pad {
        (end - start) as usize
    } else {
        e.saturating_sub(s).max(1)
    };
    (s, e, count)
}

/// A window of average pooling along one axis: `[start, end)` in the input and the divisor.
pub(crate) type Window = (usize, usize, usize);

/// Average pooling of `planes` planes with per-axis windows `wy(oy)`, `wx(ox)`.
fn average_forward(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    wy: impl Fn(usize) -> Window + Sync,
    wx: impl Fn(usize) -> Window + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; planes * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(pl, o)| {
        let xp = &x[pl * h * w..(pl + 1) * h * w];
        for oy in 0..oh {
            let (ys, ye, cy) = wy(oy);
            for ox in 0..ow {
                let (xs, xe, cx) = wx(ox);
                let mut s = 0f32;
                for yy in ys..ye {
                    for xx in xs..xe {
                        s += xp[yy * w + xx];
                    }
                }
                o[oy * ow + ox] = s / (cy * cx) as f32;
            }
        }
    });
    out
}

/// The gradient of [`average_forward`]: each output's gradient spread over its window.
fn average_backward(
    g: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    wy: impl Fn(usize) -> Window + Sync,
    wx: impl Fn(usize) -> Window + Sync,
) -> Vec<f32> {
    let mut dx = vec![0f32; planes * h * w];
    dx.par_chunks_mut(h * w).enumerate().for_each(|(pl, d)| {
        let gp = &g[pl * oh * ow..(pl + 1) * oh * ow];
        for oy in 0..oh {
            let (ys, ye, cy) = wy(oy);
            for ox in 0..ow {
                let (xs, xe, cx) = wx(ox);
                let v = gp[oy * ow + ox] / (cy * cx) as f32;
                for yy in ys..ye {
                    for xx in xs..xe {
                        d[yy * w + xx] += v;
                    }
                }
            }
        }
    });
    dx
}

pub fn avgpool_forward(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    p: &PoolSpec,
    out: (usize, usize),
) -> Vec<f32> {
    average_forward(
        x,
        planes,
        (h, w),
        out,
        |o| avg_window(o, p, h, 0),
        |o| avg_window(o, p, w, 1),
    )
}

pub fn avgpool_backward(
    g: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    p: &PoolSpec,
    out: (usize, usize),
) -> Vec<f32> {
    average_backward(
        g,
        planes,
        (h, w),
        out,
        |o| avg_window(o, p, h, 0),
        |o| avg_window(o, p, w, 1),
    )
}

/// Bin of adaptive average pooling (PyTorch's definition): `[start, end)` and its size.
pub(crate) fn adaptive_bin(o: usize, out: usize, size: usize) -> Window {
    let (s, e) = ((o * size) / out, ((o + 1) * size).div_ceil(out));
    (s, e, e - s)
}

pub fn adaptive_avgpool_forward(
    x: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    average_forward(
        x,
        planes,
        (h, w),
        (oh, ow),
        |o| adaptive_bin(o, oh, h),
        |o| adaptive_bin(o, ow, w),
    )
}

pub fn adaptive_avgpool_backward(
    g: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    average_backward(
        g,
        planes,
        (h, w),
        (oh, ow),
        |o| adaptive_bin(o, oh, h),
        |o| adaptive_bin(o, ow, w),
    )
}

/// LRN across channels (Caffe's `LRN`, PyTorch's `LocalResponseNorm`):
/// `scale_c = k + alpha/size * sum_{c' in window(c)} x_c'^2`, `y_c = x_c * scale_c^-beta`.
/// Input `[n, c, hw]` (any n); returns `(y, scale)`.
pub fn lrn_forward(
    x: &[f32],
    c: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
    k: f32,
) -> (Vec<f32>, Vec<f32>) {
    let mut y = vec![0f32; x.len()];
    let mut scale = vec![0f32; x.len()];
    let half = (size - 1) / 2;
    let a = alpha / size as f32;
    y.par_chunks_mut(c * hw)
        .zip(scale.par_chunks_mut(c * hw))
        .enumerate()
        .for_each(|(img, (yi, si))| {
            let xi = &x[img * c * hw..(img + 1) * c * hw];
            let squares: Vec<f32> = xi.iter().map(|v| v * v).collect();
            channel_window_sums(&squares, c, hw, half, |ch, acc| {
                let base = ch * hw;
                for p in 0..hw {
                    let s = k + a * acc[p].max(0.0);
                    si[base + p] = s;
                    yi[base + p] = xi[base + p] * s.powf(-beta);
                }
            });
        });
    (y, scale)
}

/// True gradient of LRN for gradient rows against one image's `x`, `y`, `scale`
/// (`[c, hw]` each, shared by every row) or every row's:
/// `dx_c = g_c * scale_c^-beta - 2*alpha*beta/size * x_c * sum_{c': c in window(c')} g_c' * y_c' / scale_c'`.
#[allow(clippy::too_many_arguments)]
pub fn lrn_backward(
    g: &[f32],
    x: &[f32],
    y: &[f32],
    scale: &[f32],
    c: usize,
    hw: usize,
    size: usize,
    alpha: f32,
    beta: f32,
) -> Vec<f32> {
    let mut dx = vec![0f32; g.len()];
    let half = (size - 1) / 2;
    let coef = 2.0 * alpha * beta / size as f32;
    // ratio_c' = g_c' * y_c' / scale_c' per row, then a window sum over channels.
    let images = x.len() / (c * hw);
    dx.par_chunks_mut(c * hw).enumerate().for_each(|(r, d)| {
        let gr = &g[r * c * hw..(r + 1) * c * hw];
        let o = (r % images) * c * hw;
        let (x, y, scale) = (&x[o..o + c * hw], &y[o..o + c * hw], &scale[o..o + c * hw]);
        let ratio: Vec<f32> = (0..c * hw).map(|i| gr[i] * y[i] / scale[i]).collect();
        channel_window_sums(&ratio, c, hw, half, |ch, acc| {
            let base = ch * hw;
            for p in 0..hw {
                let i = base + p;
                d[i] = gr[i] * scale[i].powf(-beta) - coef * x[i] * acc[p];
            }
        });
    });
    dx
}

/// Geometry of one convolution: input and output planes, and per axis (`[rows, cols]`)
/// the kernel, stride, padding before the first cell, and dilation.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    pub h: usize,
    pub w: usize,
    pub oh: usize,
    pub ow: usize,
    pub k: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dil: [usize; 2],
}

impl ConvGeom {
    /// Cells of one kernel window (`kh * kw`).
    pub fn window(&self) -> usize {
        self.k[0] * self.k[1]
    }

    /// Offsets in the input of kernel tap `(ky, kx)` relative to an output cell's origin.
    fn offsets(&self, ky: usize, kx: usize) -> (isize, isize) {
        (
            (ky * self.dil[0]) as isize - self.pad[0] as isize,
            (kx * self.dil[1]) as isize - self.pad[1] as isize,
        )
    }
}

/// Scatters convolution columns back onto the input (the adjoint of [`im2col`]), for the
/// data gradient of a convolution. `cols` is `[groups, cin_g * kh * kw, rows * oh * ow]`
/// (each column row holds every row's `oh * ow` values side by side); `out` receives
/// `[rows, groups * cin_g, h, w]`.
pub fn col2im(
    cols: &[f32],
    rows: usize,
    groups: usize,
    cin_g: usize,
    g: &ConvGeom,
    out: &mut [f32],
) {
    let cin = cin_g * groups;
    let (h, w, oh, ow, [kh, kw]) = (g.h, g.w, g.oh, g.ow, g.k);
    let (sy, sx) = (g.stride[0], g.stride[1]);
    let ohw = oh * ow;
    let kk = cin_g * kh * kw;
    let row_stride = rows * ohw;
    assert_eq!(out.len(), rows * cin * h * w, "col2im output size");
    out.fill(0.0);
    out.par_chunks_mut(h * w)
        .enumerate()
        .for_each(|(rc, plane)| {
            let r = rc / cin;
            let c = rc % cin;
            let (grp, cl) = (c / cin_g, c % cin_g);
            let base = grp * kk * row_stride + r * ohw;
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = (cl * kh + ky) * kw + kx;
                    let src = &cols[base + row * row_stride..base + row * row_stride + ohw];
                    let (dy, dx) = g.offsets(ky, kx);
                    for oy in 0..oh {
                        let iy = (oy * sy) as isize + dy;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let prow = &mut plane[iy as usize * w..(iy as usize + 1) * w];
                        let srow = &src[oy * ow..(oy + 1) * ow];
                        if sx == 1 {
                            // contiguous: valid ox range where 0 <= ox + dx < w
                            let lo = (-dx).max(0) as usize;
                            let hi = ((w as isize - dx).min(ow as isize)).max(0) as usize;
                            for ox in lo..hi {
                                prow[(ox as isize + dx) as usize] += srow[ox];
                            }
                        } else {
                            for (ox, &v) in srow.iter().enumerate() {
                                let ix = (ox * sx) as isize + dx;
                                if ix >= 0 && ix < w as isize {
                                    prow[ix as usize] += v;
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// Channels `chans` of rows `rows` of `g` (`[rows, c, plane]`) laid out channel-major,
/// `[chans, rows, plane]`: one matrix whose columns span every row, for one product.
pub fn gather_group(
    g: &[f32],
    rows: std::ops::Range<usize>,
    c: usize,
    chans: std::ops::Range<usize>,
    plane: usize,
) -> Vec<f32> {
    let m = rows.len();
    let mut out = vec![0f32; chans.len() * m * plane];
    for (o, ch) in chans.enumerate() {
        for (j, r) in rows.clone().enumerate() {
            out[(o * m + j) * plane..][..plane]
                .copy_from_slice(&g[(r * c + ch) * plane..][..plane]);
        }
    }
    out
}

/// Calls `each(ch, window)` for every channel with the sum over the LRN window around
/// `ch` (channels `ch - half ..= ch + half`, clipped) of `vals` (`[c, hw]`), kept as a
/// running sum.
fn channel_window_sums(
    vals: &[f32],
    c: usize,
    hw: usize,
    half: usize,
    mut each: impl FnMut(usize, &[f32]),
) {
    let mut acc = vec![0f32; hw];
    let plane = |i: usize| &vals[i * hw..(i + 1) * hw];
    for cc in 0..half.min(c) {
        for (a, v) in acc.iter_mut().zip(plane(cc)) {
            *a += v;
        }
    }
    for ch in 0..c {
        if ch + half < c {
            for (a, v) in acc.iter_mut().zip(plane(ch + half)) {
                *a += v;
            }
        }
        if ch > half {
            for (a, v) in acc.iter_mut().zip(plane(ch - half - 1)) {
                *a -= v;
            }
        }
        each(ch, &acc);
    }
}

/// A row-major or strided view of a matrix for [`sgemm`].
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    /// Row stride and column stride, in elements.
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major `[cols_of_original...]` matrix with `orig_cols` columns.
    pub fn transposed(data: &'a [f32], orig_cols: usize) -> Self {
        MatRef {
            data,
            rs: 1,
            cs: orig_cols,
        }
    }
    fn check(&self, r: usize, c: usize) {
        if r > 0 && c > 0 {
            assert!(
                (r - 1) * self.rs + (c - 1) * self.cs < self.data.len(),
                "matrix view out of bounds"
            );
        }
    }
}

/// How a matrix product uses threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only.
    One,
    /// The `gemm` crate's own parallel loop on this many rayon threads.
    Crate(usize),
    /// The product cut into this many blocks of columns (or of rows, when there are more
    /// rows), each a single-threaded product on its own rayon thread. On 2 cores this
    /// scales 1.6-2x where the crate's loop often gains nothing (`treevis bench
    /// --kernels` prints both).
    Split(usize),
}

/// Products below this many multiply-adds run on one thread (a rayon hand-off costs more).
const SPLIT_MIN_WORK: usize = 1 << 20;

/// Columns or rows of one block of a split product: a multiple of the microkernel's
/// 16-float vectors.
const SPLIT_ALIGN: usize = 16;

/// `dst[m x n] (row-major) = (accumulate ? dst : 0) + lhs[m x k] . rhs[k x n]`, on all
/// rayon threads (the `gemm` crate's kernels, split by [`Threads::Split`]).
pub fn sgemm(
    dst: &mut [f32],
    m: usize,
    n: usize,
    k: usize,
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
) {
    sgemm_threads(
        dst,
        (m, n, k),
        lhs,
        rhs,
        accumulate,
        Threads::Split(rayon::current_num_threads()),
    )
}

/// A pointer that may cross to another rayon thread: the blocks of a split product write
/// disjoint parts of one destination.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: each thread writes only its own block of the destination (see `sgemm_threads`).
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// [`sgemm`] with the threading chosen.
pub fn sgemm_threads(
    dst: &mut [f32],
    (m, n, k): (usize, usize, usize),
    lhs: MatRef,
    rhs: MatRef,
    accumulate: bool,
    threads: Threads,
) {
    assert!(dst.len() >= m * n, "dst too small");
    lhs.check(m, k);
    rhs.check(k, n);
    if m == 0 || n == 0 {
        return;
    }
    let d = SendPtr(dst.as_mut_ptr());
    // SAFETY (every call below): `block` reads `lhs` rows `r0..r0+rows` and `rhs` columns
    // `c0..c0+cols`, all inside the views checked above, and writes `dst` rows
    // `r0..r0+rows`, columns `c0..c0+cols` of a row-major `m x n` matrix that `dst` (of at
    // least `m * n` elements, borrowed exclusively) holds.
    let block = |r0: usize, rows: usize, c0: usize, cols: usize, par: gemm::Parallelism| unsafe {
        gemm::gemm(
            rows,
            cols,
            k,
            d.get().add(r0 * n + c0),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr().add(r0 * lhs.rs),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(c0 * rhs.cs),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    };
    match threads {
        Threads::Crate(t) if t > 1 => block(0, m, 0, n, gemm::Parallelism::Rayon(t)),
        Threads::Split(t) if t > 1 && m * n * k >= SPLIT_MIN_WORK => {
            // cut the longer side into `t` aligned blocks (fewer when it is short)
            let (long, by_cols) = if n >= m { (n, true) } else { (m, false) };
            let per = long.div_ceil(t).next_multiple_of(SPLIT_ALIGN).min(long);
            let parts = long.div_ceil(per);
            (0..parts).into_par_iter().for_each(|i| {
                let (s, len) = (i * per, per.min(long - i * per));
                if by_cols {
                    block(0, m, s, len, gemm::Parallelism::None)
                } else {
                    block(s, len, 0, n, gemm::Parallelism::None)
                }
            });
        }
        _ => block(0, m, 0, n, gemm::Parallelism::None),
    }
}

/// `im2col` for `n` images of one group: `x` holds the images' `[cin_g, h, w]` planes at
/// `image_stride` apart; the result is `[cin_g * kh * kw, n * oh * ow]`, each column row
/// holding every image's `oh * ow` values side by side (so one matrix product covers them
/// all). Parallel over column rows.
pub fn im2col(x: &[f32], n: usize, image_stride: usize, cin_g: usize, g: &ConvGeom) -> Vec<f32> {
    let (h, w, oh, ow, [kh, kw]) = (g.h, g.w, g.oh, g.ow, g.k);
    let ohw = oh * ow;
    let mut cols = vec![0f32; cin_g * kh * kw * n * ohw];
    cols.par_chunks_mut(n * ohw)
        .enumerate()
        .for_each(|(row, dst_row)| {
            let (c, kyx) = (row / (kh * kw), row % (kh * kw));
            let (ky, kx) = (kyx / kw, kyx % kw);
            let (dy, dx) = g.offsets(ky, kx);
            // the output columns whose input column `ox * stride + dx` is inside the row
            let sx = g.stride[1];
            let first = (if dx < 0 { (-dx) as usize } else { 0 }).div_ceil(sx);
            let last = if (w as isize) > dx {
                ((w as isize - dx - 1) as usize / sx + 1).min(ow)
            } else {
                0
            };
            for (img, dst) in dst_row.chunks_mut(ohw).enumerate() {
                let plane = &x[img * image_stride + c * h * w..][..h * w];
                for oy in 0..oh {
                    let iy = (oy * g.stride[0]) as isize + dy;
                    if iy < 0 || iy >= h as isize || first >= last {
                        continue;
                    }
                    let prow = &plane[iy as usize * w..(iy as usize + 1) * w];
                    let drow = &mut dst[oy * ow + first..oy * ow + last];
                    let start = (first * sx) as isize + dx;
                    let src = &prow[start as usize..];
                    if sx == 1 {
                        drow.copy_from_slice(&src[..drow.len()]);
                    } else {
                        for (d, v) in drow.iter_mut().zip(src.iter().step_by(sx)) {
                            *d = *v;
                        }
                    }
                }
            }
        });
    cols
}

/// Rows up to which the linear kernels below beat a general matrix product.
pub const SMALL_ROWS: usize = 8;

/// Dot product, compiled for AVX-512 or AVX2+FMA when the CPU has them (chosen at run
/// time), plain SSE2 otherwise.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected on this CPU.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were detected on this CPU.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_plain(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_plain(a, b)
}

#[inline(always)]
fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y[r] = b + W x[r]` for a few rows: each weight row is read once for all rows, in
/// parallel over output units (a memory-bound product; a general matmul wastes it).
pub fn linear_forward_small(x: &[f32], rows: usize, w: &[f32], b: &[f32]) -> Vec<f32> {
    let out = b.len();
    let fin = w.len() / out;
    let mut yt = vec![0f32; out * rows];
    yt.par_chunks_mut(rows * 32)
        .enumerate()
        .for_each(|(ci, chunk)| {
            for (j, cell) in chunk.chunks_mut(rows).enumerate() {
                let o = ci * 32 + j;
                let wr = &w[o * fin..(o + 1) * fin];
                for (r, c) in cell.iter_mut().enumerate() {
                    *c = b[o] + dot(&x[r * fin..(r + 1) * fin], wr);
                }
            }
        });
    let mut y = vec![0f32; rows * out];
    for o in 0..out {
        for r in 0..rows {
            y[r * out + o] = yt[o * rows + r];
        }
    }
    y
}

/// `dx[r] = W^T g[r]` for a few rows, skipping the zero entries of `g` (gradients under
/// ReLU rules are sparse: a seed at one unit reads one weight row). Parallel over input
/// features.
pub fn linear_backward_small(g: &[f32], rows: usize, w: &[f32], fin: usize) -> Vec<f32> {
    let out = w.len() / fin;
    let nz: Vec<(usize, usize, f32)> = (0..out)
        .flat_map(|o| (0..rows).map(move |r| (o, r)))
        .filter_map(|(o, r)| {
            let v = g[r * out + o];
            (v != 0.0).then_some((o, r, v))
        })
        .collect();
    let chunk = 512;
    let mut dxt: Vec<Vec<f32>> = (0..fin.div_ceil(chunk)).map(|_| Vec::new()).collect();
    dxt.par_iter_mut().enumerate().for_each(|(ci, buf)| {
        let (lo, hi) = (ci * chunk, ((ci + 1) * chunk).min(fin));
        *buf = vec![0f32; rows * (hi - lo)];
        for &(o, r, v) in &nz {
            let wr = &w[o * fin + lo..o * fin + hi];
            let d = &mut buf[r * (hi - lo)..(r + 1) * (hi - lo)];
            for (dv, wv) in d.iter_mut().zip(wr) {
                *dv += v * wv;
            }
        }
    });
    let mut dx = vec![0f32; rows * fin];
    for (ci, buf) in dxt.iter().enumerate() {
        let lo = ci * chunk;
        let width = buf.len() / rows.max(1);
        for r in 0..rows {
            dx[r * fin + lo..r * fin + lo + width]
                .copy_from_slice(&buf[r * width..(r + 1) * width]);
        }
    }
    dx
}

/// Elements per task of the elementwise kernels below (64 KB: large enough that a rayon
/// hand-off is noise, small enough to balance 2-64 threads).
const ELEMENTWISE_CHUNK: usize = 1 << 14;

/// ReLU of one value: `x > 0` keeps a NaN out and passes -0.0 as 0, as `Tensor::relu`.
#[inline(always)]
pub fn relu(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

/// `max(x, 0)` of every element, in parallel (candle's CPU ReLU runs on one thread). The
/// result is collected straight into uninitialised memory (no zeroing pass first).
pub fn relu_forward(x: &[f32]) -> Vec<f32> {
    x.par_iter()
        .with_min_len(ELEMENTWISE_CHUNK)
        .map(|&x| relu(x))
        .collect()
}

/// [`relu`] of every element in place, in parallel.
pub fn relu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(ELEMENTWISE_CHUNK).for_each(|c| {
        for v in c {
            *v = relu(*v);
        }
    });
}

/// `a + b` element by element, in parallel, with the ReLU that alone consumes the sum
/// when `fused_relu`; an error when the lengths differ.
pub fn add(a: &[f32], b: &[f32], fused_relu: bool) -> crate::error::Result<Vec<f32>> {
    if a.len() != b.len() {
        return Err(crate::error::Error::Internal(format!(
            "adding tensors of {} and {} elements",
            a.len(),
            b.len()
        )));
    }
    Ok(a.par_iter()
        .with_min_len(ELEMENTWISE_CHUNK)
        .zip(b)
        .map(|(a, b)| if fused_relu { relu(a + b) } else { a + b })
        .collect())
}

/// Calls `f(g, y)` for every element of the gradient rows `g` with the matching element of
/// `y`: one image's tensor shared by every row (`g.len()` a multiple of `y.len()`) or every
/// row's own. In parallel, in chunks that map onto contiguous pieces of `y`.
pub fn for_rows_of(g: &mut [f32], y: &[f32], f: impl Fn(&mut f32, f32) + Sync) {
    let n = y.len();
    if n == 0 {
        return;
    }
    let chunk = (1..=64)
        .map(|d| n / d)
        .find(|c| *c > 0 && n.is_multiple_of(*c) && *c <= 1 << 15)
        .unwrap_or(n);
    g.par_chunks_mut(chunk).enumerate().for_each(|(ci, row)| {
        let off = (ci * chunk) % n;
        let len = row.len();
        for (gv, &yv) in row.iter_mut().zip(&y[off..off + len]) {
            f(gv, yv);
        }
    });
}

/// The ReLU backward rules on gradient rows against one image's ReLU output `y` (shared by
/// every row) or every row's (`y > 0` exactly where the ReLU input `x > 0`). In place.
pub fn relu_rule(g: &mut [f32], y: &[f32], rule: Rule) {
    for_rows_of(g, y, |gv, yv| {
        let pass = match rule {
            Rule::Gradient => yv > 0.0,
            Rule::Deconv => *gv > 0.0,
            Rule::Guided => yv > 0.0 && *gv > 0.0,
            Rule::GuidedNeg => yv > 0.0 && *gv < 0.0,
        };
        if !pass {
            *gv = 0.0;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(kernel: usize, stride: usize, pad: usize, ceil: bool) -> PoolSpec {
        PoolSpec::square(kernel, stride, pad, ceil)
    }

    #[test]
    fn pool_rounding_matches_caffe_and_pytorch() {
        // 55 -> 27 either way (CaffeNet pool1); 20 with k3 s2: floor 9, ceil 10
        assert_eq!(pool_out(55, &pool(3, 2, 0, true)), Some(27));
        assert_eq!(pool_out(20, &pool(3, 2, 0, false)), Some(9));
        assert_eq!(pool_out(20, &pool(3, 2, 0, true)), Some(10));
        // ceil with padding drops a window starting in the padding
        assert_eq!(pool_out(5, &pool(2, 2, 1, true)), Some(3));
        assert_eq!(pool_out(2, &pool(3, 2, 0, false)), None);
    }

    #[test]
    fn maxpool_switches_take_the_first_max() {
        // one 2x3 plane with ties, kernel 2 stride 1
        let x = [1.0, 3.0, 3.0, 0.0, 3.0, 2.0];
        let (out, sw) = maxpool_forward(&x, 1, (2, 3), &pool(2, 1, 0, false), (1, 2));
        assert_eq!(out, vec![3.0, 3.0]);
        assert_eq!(sw, vec![1, 1]);
        let dx = maxpool_backward(&[1.0, 2.0], &sw, 1, 6, 2);
        assert_eq!(dx, vec![0.0, 3.0, 0.0, 0.0, 0.0, 0.0]);
    }

    /// The direct definition: every window scanned in row-major order.
    fn maxpool_naive(
        x: &[f32],
        (h, w): (usize, usize),
        p: &PoolSpec,
        (oh, ow): (usize, usize),
    ) -> (Vec<f32>, Vec<u32>) {
        let (mut out, mut sw) = (Vec::new(), Vec::new());
        for oy in 0..oh {
            let (ys, ye) = max_window(oy, p, h, 0);
            for ox in 0..ow {
                let (xs, xe) = max_window(ox, p, w, 1);
                let (mut best, mut arg) = (f32::NEG_INFINITY, ys * w + xs);
                for yy in ys..ye {
                    for xx in xs..xe {
                        let v = x[yy * w + xx];
                        if v > best || v.is_nan() {
                            (best, arg) = (v, yy * w + xx);
                        }
                    }
                }
                out.push(best);
                sw.push(arg as u32);
            }
        }
        (out, sw)
    }

    #[test]
    fn separable_maxpool_matches_the_direct_scan() {
        // few distinct values (many ties), NaNs, padding, ceil windows, uneven strides
        for (seed, (k, st, pad, ceil)) in [
            (3, 2, 0, true),
            (3, 2, 1, false),
            (2, 2, 0, false),
            (3, 1, 1, true),
            (5, 3, 2, true),
        ]
        .into_iter()
        .enumerate()
        {
            let (h, w) = (11, 13);
            let mut x: Vec<f32> = pseudo(h * w, seed as u32 + 5)
                .iter()
                .map(|v| (v * 3.0).round())
                .collect();
            if seed % 2 == 1 {
                x[17] = f32::NAN;
                x[20] = f32::NAN;
            }
            let p = pool(k, st, pad, ceil);
            let (oh, ow) = (
                pool_out_axis(h, &p, 0).unwrap(),
                pool_out_axis(w, &p, 1).unwrap(),
            );
            let (got, gsw) = maxpool_forward(&x, 1, (h, w), &p, (oh, ow));
            let (want, wsw) = maxpool_naive(&x, (h, w), &p, (oh, ow));
            assert_eq!(gsw, wsw, "switches, case {seed}");
            let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
            assert!(
                got.iter().zip(&want).all(|(a, b)| same(*a, *b)),
                "case {seed}"
            );
            let values = maxpool_values(&x, 1, (h, w), &p, (oh, ow));
            assert!(
                values.iter().zip(&want).all(|(a, b)| same(*a, *b)),
                "values only, case {seed}"
            );
        }
    }

    #[test]
    fn im2col_matches_the_definition() {
        // padding wider than the stride, strides 1-3, dilation, non-square everything
        for (k, stride, pad, dil) in [
            ([3, 3], [1, 1], [1, 1], [1, 1]),
            ([3, 2], [2, 3], [2, 1], [1, 1]),
            ([5, 5], [3, 2], [4, 2], [1, 2]),
            ([2, 3], [1, 2], [0, 3], [2, 1]),
        ] {
            let (h, w, cin, n) = (9, 11, 2, 2);
            let oh = conv_out(h, k[0], stride[0], 2 * pad[0], dil[0]).unwrap();
            let ow = conv_out(w, k[1], stride[1], 2 * pad[1], dil[1]).unwrap();
            let g = ConvGeom {
                h,
                w,
                oh,
                ow,
                k,
                stride,
                pad,
                dil,
            };
            let x = pseudo(n * cin * h * w, 9);
            let cols = im2col(&x, n, cin * h * w, cin, &g);
            let mut want = vec![0f32; cols.len()];
            for c in 0..cin {
                for ky in 0..k[0] {
                    for kx in 0..k[1] {
                        let row = (c * k[0] + ky) * k[1] + kx;
                        for img in 0..n {
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let iy =
                                        (oy * stride[0] + ky * dil[0]) as isize - pad[0] as isize;
                                    let ix =
                                        (ox * stride[1] + kx * dil[1]) as isize - pad[1] as isize;
                                    if (0..h as isize).contains(&iy)
                                        && (0..w as isize).contains(&ix)
                                    {
                                        want[(row * n + img) * oh * ow + oy * ow + ox] = x
                                            [((img * cin + c) * h + iy as usize) * w + ix as usize];
                                    }
                                }
                            }
                        }
                    }
                }
            }
            assert_eq!(
                cols, want,
                "k {k:?} stride {stride:?} pad {pad:?} dil {dil:?}"
            );
        }
    }

    #[test]
    fn ceil_avgpool_divides_by_the_clipped_window() {
        // 3x3 plane, k2 s2 ceil: windows [0,2) and [2,3) -> divisors 4, 2, 2, 1
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let p = pool(2, 2, 0, true);
        assert_eq!(pool_out(3, &p), Some(2));
        let out = avgpool_forward(&x, 1, (3, 3), &p, (2, 2));
        assert_eq!(out, vec![3.0, 4.5, 7.5, 9.0]);
    }

    /// Finite differences of `sum(weights * f(x))` against an analytic backward.
    fn check_grad(
        f: impl Fn(&[f32]) -> Vec<f32>,
        back: impl Fn(&[f32], &[f32]) -> Vec<f32>,
        x: &[f32],
    ) {
        let y = f(x);
        let wts: Vec<f32> = (0..y.len())
            .map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.4)
            .collect();
        let dx = back(x, &wts);
        let eps = 1e-2f32;
        for i in 0..x.len() {
            let mut xp = x.to_vec();
            xp[i] += eps;
            let mut xm = x.to_vec();
            xm[i] -= eps;
            let lp: f64 = f(&xp)
                .iter()
                .zip(&wts)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let lm: f64 = f(&xm)
                .iter()
                .zip(&wts)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let num = ((lp - lm) / (2.0 * eps as f64)) as f32;
            assert!(
                (num - dx[i]).abs() < 2e-3 * (1.0 + num.abs()),
                "i={i}: numeric {num} analytic {}",
                dx[i]
            );
        }
    }

    fn pseudo(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    #[test]
    fn lrn_backward_matches_finite_differences() {
        let (c, hw, size, alpha, beta, k) = (6, 4, 5, 0.3, 0.75, 1.2);
        let x = pseudo(c * hw, 17);
        check_grad(
            |x| lrn_forward(x, c, hw, size, alpha, beta, k).0,
            |x, g| {
                let (y, s) = lrn_forward(x, c, hw, size, alpha, beta, k);
                lrn_backward(g, x, &y, &s, c, hw, size, alpha, beta)
            },
            &x,
        );
    }

    #[test]
    fn pooling_backwards_match_finite_differences() {
        let x = pseudo(2 * 7 * 7, 3);
        let p = pool(3, 2, 1, true);
        let o = pool_out(7, &p).unwrap();
        check_grad(
            |x| avgpool_forward(x, 2, (7, 7), &p, (o, o)),
            |_, g| avgpool_backward(g, 2, (7, 7), &p, (o, o)),
            &x,
        );
        check_grad(
            |x| adaptive_avgpool_forward(x, 2, (7, 7), (3, 5)),
            |_, g| adaptive_avgpool_backward(g, 2, (7, 7), (3, 5)),
            &x,
        );
        // distinct values so the argmax is stable under the perturbation
        let xd: Vec<f32> = (0..2 * 7 * 7)
            .map(|i| ((i * 37) % 98) as f32 * 0.1)
            .collect();
        check_grad(
            |x| maxpool_forward(x, 2, (7, 7), &p, (o, o)).0,
            |x, g| {
                let (_, sw) = maxpool_forward(x, 2, (7, 7), &p, (o, o));
                maxpool_backward(g, &sw, 2, 49, o * o)
            },
            &xd,
        );
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for every geometry
        // (kernel, stride, pads [top, left, bottom, right], dilation), square and not
        for (k, stride, pad, dil) in [
            ([3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            ([5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
            ([3, 3], [2, 2], [2, 2, 2, 2], [2, 2]),
            ([11, 11], [4, 4], [0, 0, 0, 0], [1, 1]),
            ([3, 5], [2, 1], [0, 2, 1, 1], [1, 2]),
            ([1, 7], [1, 3], [0, 3, 0, 2], [1, 1]),
        ] {
            let (h, w, cin) = (13, 12, 3);
            let oh = conv_out(h, k[0], stride[0], pad[0] + pad[2], dil[0]).unwrap();
            let ow = conv_out(w, k[1], stride[1], pad[1] + pad[3], dil[1]).unwrap();
            let g = ConvGeom {
                h,
                w,
                oh,
                ow,
                k,
                stride,
                pad: [pad[0], pad[1]],
                dil,
            };
            let x = pseudo(cin * h * w, 5);
            let c = pseudo(cin * g.window() * oh * ow, 9);
            // two images (the second a shifted copy), so the side-by-side layout is covered
            let x2: Vec<f32> = x
                .iter()
                .chain(x.iter().map(|v| v * 0.5 - 0.1).collect::<Vec<_>>().iter())
                .copied()
                .collect();
            let x = x2;
            let c: Vec<f32> = c.iter().chain(c.iter().rev()).copied().collect();
            let cols = im2col(&x, 2, cin * h * w, cin, &g);
            let mut back = vec![0f32; 2 * cin * h * w];
            col2im(&c, 2, 1, cin, &g, &mut back);
            let lhs: f64 = cols
                .iter()
                .zip(&c)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let rhs: f64 = x
                .iter()
                .zip(&back)
                .map(|(a, b)| (*a as f64) * (*b as f64))
                .sum();
            let mag: f64 = cols
                .iter()
                .zip(&c)
                .map(|(a, b)| ((*a as f64) * (*b as f64)).abs())
                .sum();
            assert!(
                (lhs - rhs).abs() < 1e-6 * mag,
                "{k:?} {stride:?} {pad:?} {dil:?}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn small_linear_kernels_match_a_plain_product() {
        let (rows, fin, out) = (3, 37, 70);
        let x = pseudo(rows * fin, 1);
        let w = pseudo(out * fin, 2);
        let b = pseudo(out, 3);
        let y = linear_forward_small(&x, rows, &w, &b);
        let mut g = pseudo(rows * out, 4);
        g[5] = 0.0;
        let dx = linear_backward_small(&g, rows, &w, fin);
        for r in 0..rows {
            for o in 0..out {
                let want: f32 = b[o]
                    + (0..fin)
                        .map(|i| x[r * fin + i] * w[o * fin + i])
                        .sum::<f32>();
                assert!((y[r * out + o] - want).abs() < 1e-4, "y {r} {o}");
            }
            for i in 0..fin {
                let want: f32 = (0..out).map(|o| g[r * out + o] * w[o * fin + i]).sum();
                assert!((dx[r * fin + i] - want).abs() < 1e-4, "dx {r} {i}");
            }
        }
    }

    #[test]
    fn sgemm_handles_transposed_views() {
        // a = [[1,2,3],[4,5,6]] (2x3); a^T . b with b = [[1],[1]] (2x1) -> [5,7,9]
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 1.0];
        let mut d = [0.0; 3];
        sgemm(
            &mut d,
            3,
            1,
            2,
            MatRef::transposed(&a, 3),
            MatRef::rows(&b, 1),
            false,
        );
        assert_eq!(d, [5.0, 7.0, 9.0]);
        sgemm(
            &mut d,
            3,
            1,
            2,
            MatRef::transposed(&a, 3),
            MatRef::rows(&b, 1),
            true,
        );
        assert_eq!(d, [10.0, 14.0, 18.0]);
    }

    #[test]
    fn split_products_match_a_plain_product() {
        // long n (split by columns), long m (split by rows), blocks that do not divide
        // evenly, transposed views on either side, accumulation; small integers are exact
        for (m, n, k, a_t, b_t) in [
            (5, 301, 700, false, false),
            (300, 7, 600, true, false),
            (40, 170, 333, false, true),
            (129, 130, 131, true, true),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
            let lhs = if a_t {
                MatRef::transposed(&a, m)
            } else {
                MatRef::rows(&a, k)
            };
            let rhs = if b_t {
                MatRef::transposed(&b, k)
            } else {
                MatRef::rows(&b, n)
            };
            let at = |r: usize, c: usize, v: &MatRef| v.data[r * v.rs + c * v.cs];
            let mut want = vec![1f32; m * n];
            for r in 0..m {
                for c in 0..n {
                    want[r * n + c] += (0..k).map(|i| at(r, i, &lhs) * at(i, c, &rhs)).sum::<f32>();
                }
            }
            for t in [
                Threads::One,
                Threads::Crate(2),
                Threads::Split(2),
                Threads::Split(3),
            ] {
                let mut d = vec![1f32; m * n];
                sgemm_threads(&mut d, (m, n, k), lhs, rhs, true, t);
                assert_eq!(d, want, "{m}x{n}x{k} {t:?}");
            }
        }
    }

    #[test]
    fn relu_rules_follow_the_reference_table() {
        let y = [1.0, 0.0, 2.0, 0.0];
        let g0 = [1.0, 1.0, -1.0, -1.0];
        let run = |r| {
            let mut g = g0;
            relu_rule(&mut g, &y, r);
            g
        };
        assert_eq!(run(Rule::Gradient), [1.0, 0.0, -1.0, 0.0]);
        assert_eq!(run(Rule::Deconv), [1.0, 1.0, 0.0, 0.0]);
        assert_eq!(run(Rule::Guided), [1.0, 0.0, 0.0, 0.0]);
        assert_eq!(run(Rule::GuidedNeg), [0.0, 0.0, -1.0, 0.0]);
    }
}
