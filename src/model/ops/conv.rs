//! Convolutions (groups, depthwise, dilation, non-square kernels and strides, uneven
//! padding): the weights, the forward, and the data gradient every backward rule passes
//! through unchanged. On the CPU they run `im2col` + one matrix product per group (the
//! kernels of [`super::super::kernels`]), or Winograd's minimal filtering for the stride-1
//! 3x3 and 5x5 ones it takes (`crate::model::winograd`, `crate::model::winograd6`, as the
//! net's [`ConvPath`] says, `fast_scheme`); on another device candle's conv2d where it
//! can take the geometry, else the host.

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::kernels::{self, ConvGeom, MatRef};
use crate::model::net::ConvPath;
use crate::model::net::{host_vec, with_host};
use crate::model::profile::{self, Phase};
use crate::model::shape::Shape;
use crate::model::spec::{Hw, Pads};
use crate::model::winograd::{self, WeightCache};
use crate::model::winograd6;

/// A convolution with its weights (`[cout, cin/groups, k, k]`).
#[derive(Clone)]
pub struct Conv {
    pub w: Tensor,
    pub b: Tensor,
    pub kernel: Hw,
    pub stride: Hw,
    pub pad: Pads,
    pub dilation: Hw,
    pub groups: usize,
    /// The CPU kernels' Winograd transforms of `w` (forward, data gradient), made on
    /// first use.
    pub fast: WeightCache,
    pub fast_t: WeightCache,
}

impl Conv {
    /// Whether candle's conv2d (one size for both axes, equal padding) can run it.
    fn is_square(&self) -> bool {
        self.kernel.is_square()
            && self.stride.is_square()
            && self.dilation.is_square()
            && self.pad.is_uniform()
    }

    /// Whether it is a 1x1 convolution with stride 1 and no padding: its `im2col` would be
    /// a copy of the input.
    fn is_pointwise(&self) -> bool {
        self.kernel.0 == [1, 1] && self.stride.0 == [1, 1] && self.pad.is_zero()
    }

    /// The same convolution with its weights in host memory.
    fn on_host(&self) -> Result<Conv> {
        Ok(Conv {
            w: self.w.to_device(&Device::Cpu)?,
            b: self.b.to_device(&Device::Cpu)?,
            ..self.clone()
        })
    }
}

fn spatial(s: Shape) -> (usize, usize, usize) {
    match s {
        Shape::Spatial { c, h, w } => (c, h, w),
        Shape::Flat(_) => unreachable!("conv shapes are spatial"),
    }
}

pub(crate) fn geom(c: &Conv, in_shape: Shape, out_shape: Shape) -> ConvGeom {
    let ((_, h, w), (_, oh, ow)) = (spatial(in_shape), spatial(out_shape));
    ConvGeom {
        h,
        w,
        oh,
        ow,
        k: c.kernel.0,
        stride: c.stride.0,
        pad: [c.pad.begin(0), c.pad.begin(1)],
        dil: c.dilation.0,
    }
}

/// Floats of `im2col` columns worth batching into one matrix product of a forward pass
/// (8 MB: the columns are still in the last-level cache when the product reads them; 32 MB
/// made AlexNet's batch-32 forward 15% slower, `bench --kernels`).
const COLS_BUDGET: usize = 2 << 20;

/// The same for the data gradient's columns (32 MB: its rows are few and sparse).
const COLS_BUDGET_BACKWARD: usize = 8 << 20;

/// Output planes (`oh * ow`) below which a pointwise convolution of several images copies
/// their planes side by side (its `im2col`) for one product over them all, instead of a
/// product per image: ResNet-50's `layer4` products (7x7 planes) run at 104-156 GFLOP/s
/// one image at a time and at 190-207 over 20 images (`bench --kernels`, `fwd b1` and
/// `fwd b32` rows of the same shapes).
const POINTWISE_BATCH_BELOW: usize = 256;

/// Images (of `n`) whose `im2col` columns (`kk` rows of `ohw`) one forward product covers.
pub(crate) fn images_per_product(kk: usize, ohw: usize, n: usize) -> usize {
    (COLS_BUDGET / (kk * ohw).max(1)).clamp(1, n.max(1))
}

/// Convolution, plus `residual` (a tensor of the output's shape: the other term of a
/// residual Add the convolution's output goes to alone, see `Net::convs_in_adds`) when
/// given, through a ReLU when `relu`: on the CPU, a stride-1 3x3 or 5x5 one by the Winograd
/// scheme [`fast_scheme`] picks as `path` says; any other `im2col` of a chunk of images per group,
/// then one matrix product per chunk and group. The CPU paths all accumulate onto the
/// output, which starts as the residual (or zeros), so the Add costs no pass of its own;
/// the bias and the ReLU are applied while the rows are in cache. Elsewhere candle's
/// conv2d.
pub(crate) fn conv_forward(
    x: &Tensor,
    c: &Conv,
    in_shape: Shape,
    out_shape: Shape,
    relu: bool,
    residual: Option<&Tensor>,
    path: ConvPath,
) -> Result<Tensor> {
    if !x.device().is_cpu() {
        if c.is_square() {
            let y = x.conv2d(&c.w, c.pad.begin(0), c.stride.h(), c.dilation.h(), c.groups)?;
            let mut y = y.broadcast_add(&c.b)?;
            if let Some(r) = residual {
                y = (y + r)?;
            }
            return Ok(if relu { y.relu()? } else { y });
        }
        // candle's conv2d takes one size for both axes: run this one on the host
        let r = residual.map(|r| r.to_device(&Device::Cpu)).transpose()?;
        let y = conv_forward(
            &x.to_device(&Device::Cpu)?,
            &c.on_host()?,
            in_shape,
            out_shape,
            relu,
            r.as_ref(),
            path,
        )?;
        return Ok(y.to_device(x.device())?);
    }
    let n = x.dims()[0];
    let ((cin, h, w), (cout, _, _)) = (spatial(in_shape), spatial(out_shape));
    let g = geom(c, in_shape, out_shape);
    let ohw = g.oh * g.ow;
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let kk = cin_g * g.window();
    let chunk = images_per_product(kk, ohw, n);
    let bias = host_vec(&c.b)?;
    let mut out = match residual {
        Some(r) if r.dims() != [n, cout, g.oh, g.ow] => {
            return Err(crate::error::Error::Shape(format!(
                "a residual of shape {:?} added to a convolution output of {:?}",
                r.dims(),
                [n, cout, g.oh, g.ow]
            )))
        }
        Some(r) => with_host(r, |rs| rs.to_vec())?,
        None => vec![0f32; n * cout * ohw],
    };
    if c.is_pointwise() && (n == 1 || ohw >= POINTWISE_BATCH_BELOW) {
        with_host(x, |xs| {
            with_host(&c.w, |ws| {
                pointwise(xs, ws, &bias, c.groups, ohw, relu, &mut out)
            })
        })??;
        return Ok(Tensor::from_vec(out, (n, cout, g.oh, g.ow), &Device::Cpu)?);
    }
    if let Some(s) = fast_scheme(path, &g, c.groups, n, (cin, cout), false) {
        let u = c.fast.get(&c.w, s as u8, || {
            with_host(&c.w, |ws| s.transform(ws, cout, cin, false))
        })?;
        with_host(x, |xs| s.forward(xs, n, cin, &g, &u, &bias, relu, &mut out))?;
        return Ok(Tensor::from_vec(out, (n, cout, g.oh, g.ow), &Device::Cpu)?);
    }
    with_host(x, |xs| {
        with_host(&c.w, |ws| {
            for i0 in (0..n).step_by(chunk) {
                let m = chunk.min(n - i0);
                for grp in 0..c.groups {
                    let xg = &xs[(i0 * cin + grp * cin_g) * h * w..];
                    let cols = profile::timed(Phase::Im2col, 0, || {
                        kernels::im2col(xg, m, cin * h * w, cin_g, &g)
                    });
                    let flops = 2 * (cout_g * m * ohw * kk) as u64;
                    let wg = &ws[grp * cout_g * kk..][..cout_g * kk];
                    let bias_g = &bias[grp * cout_g..(grp + 1) * cout_g];
                    if m == 1 {
                        let dst = &mut out[(i0 * cout + grp * cout_g) * ohw..][..cout_g * ohw];
                        add_bias(dst, ohw, bias_g);
                        profile::timed(Phase::ConvGemm, flops, || {
                            kernels::sgemm(
                                dst,
                                cout_g,
                                ohw,
                                kk,
                                MatRef::rows(wg, kk),
                                MatRef::rows(&cols, ohw),
                                true,
                            )
                        });
                        if relu {
                            kernels::relu_in_place(dst);
                        }
                    } else {
                        let mut tmp = vec![0f32; cout_g * m * ohw];
                        profile::timed(Phase::ConvGemm, flops, || {
                            kernels::sgemm(
                                &mut tmp,
                                cout_g,
                                m * ohw,
                                kk,
                                MatRef::rows(wg, kk),
                                MatRef::rows(&cols, m * ohw),
                                false,
                            )
                        });
                        for (o, b) in bias_g.iter().enumerate() {
                            for j in 0..m {
                                let src = &tmp[(o * m + j) * ohw..][..ohw];
                                let dst =
                                    &mut out[((i0 + j) * cout + grp * cout_g + o) * ohw..][..ohw];
                                if relu {
                                    for (d, s) in dst.iter_mut().zip(src) {
                                        *d = kernels::relu(*d + s + b);
                                    }
                                } else {
                                    for (d, s) in dst.iter_mut().zip(src) {
                                        *d += s + b;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        })
    })??;
    Ok(Tensor::from_vec(out, (n, cout, g.oh, g.ow), &Device::Cpu)?)
}

/// Adds `bias[o]` to row `o` (of `len`) of `dst`.
fn add_bias(dst: &mut [f32], len: usize, bias: &[f32]) {
    for (row, b) in dst.chunks_mut(len).zip(bias) {
        row.iter_mut().for_each(|v| *v += b);
    }
}

/// A pointwise convolution (1x1, stride 1, no padding) of the images in `xs`, whose
/// columns are the images' planes themselves: one product per image and group straight
/// from the input onto `out` (`[n, cout, hw]`, accumulated), with the bias.
fn pointwise(
    xs: &[f32],
    ws: &[f32],
    bias: &[f32],
    groups: usize,
    hw: usize,
    relu: bool,
    out: &mut [f32],
) {
    let cout = bias.len();
    let (cout_g, cin_g) = (cout / groups, ws.len() / cout);
    for (img, y) in out.chunks_mut(cout * hw).enumerate() {
        for (grp, yg) in y.chunks_mut(cout_g * hw).enumerate() {
            add_bias(yg, hw, &bias[grp * cout_g..]);
            let xg = &xs[(img * groups + grp) * cin_g * hw..][..cin_g * hw];
            let wg = &ws[grp * cout_g * cin_g..][..cout_g * cin_g];
            profile::timed(Phase::ConvGemm, 2 * (cout_g * hw * cin_g) as u64, || {
                kernels::sgemm(
                    yg,
                    cout_g,
                    hw,
                    cin_g,
                    MatRef::rows(wg, cin_g),
                    MatRef::rows(xg, hw),
                    true,
                )
            });
            if relu {
                kernels::relu_in_place(yg);
            }
        }
    }
}

/// Data gradient of a convolution: on the CPU, a stride-1 3x3 one whose gradient is
/// dense by Winograd's F(2x2, 3x3) on the flipped filters (as `path` says, as in
/// [`conv_forward`]); any other for a chunk of rows per group one product `W_g^T . dY` (a
/// transposed view of the weights, no copy) then `col2im`; elsewhere candle's transposed
/// convolution.
pub(crate) fn conv_backward(
    g: &Tensor,
    c: &Conv,
    in_shape: Shape,
    out_shape: Shape,
    path: ConvPath,
) -> Result<Tensor> {
    let rows = g.dims()[0];
    let ((cin, h, _), (cout, oh, _)) = (spatial(in_shape), spatial(out_shape));
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    if !g.device().is_cpu() {
        if !c.is_square() {
            // candle's transposed convolution takes one size for both axes
            let g = g.to_device(&Device::Cpu)?;
            let dx = conv_backward(&g, &c.on_host()?, in_shape, out_shape, path)?;
            return Ok(dx.to_device(g.device())?);
        }
        let (k, s, p, d) = (c.kernel.h(), c.stride.h(), c.pad.begin(0), c.dilation.h());
        let mut parts = Vec::with_capacity(c.groups);
        for grp in 0..c.groups {
            let gg = g.narrow(1, grp * cout_g, cout_g)?.contiguous()?;
            let wg = c.w.narrow(0, grp * cout_g, cout_g)?.contiguous()?;
            let full = (oh - 1) * s + d * (k - 1) + 1;
            let out_pad = (h + 2 * p) - full;
            parts.push(gg.conv_transpose2d(&wg, p, out_pad, s, d)?);
        }
        return Ok(Tensor::cat(&parts, 1)?);
    }
    let geo = geom(c, in_shape, out_shape);
    let wino = fast_scheme(path, &geo, c.groups, rows, (cin, cout), true)
        .and_then(|s| Some((s, s.backward_geom(&geo)?)));
    if let Some((s, gb)) = wino {
        // a dense gradient only: a seed's few channels go to the direct product below
        let dx = with_host(g, |gs| -> Result<Option<Vec<f32>>> {
            if 2 * active_channels(gs, 0..rows, cout, 0..cout, oh * geo.ow).len() < cout {
                return Ok(None);
            }
            let u = c.fast_t.get(&c.w, s as u8, || {
                with_host(&c.w, |ws| s.transform(ws, cout, cin, true))
            })?;
            let mut dx = vec![0f32; rows * cin * geo.h * geo.w];
            s.forward(gs, rows, cout, &gb, &u, &vec![0.0; cin], false, &mut dx);
            Ok(Some(dx))
        })??;
        if let Some(dx) = dx {
            return Ok(Tensor::from_vec(
                dx,
                (rows, cin, geo.h, geo.w),
                &Device::Cpu,
            )?);
        }
    }
    let ohw = geo.oh * geo.ow;
    let kk = cin_g * geo.window();
    let chunk = (COLS_BUDGET_BACKWARD / (kk * ohw)).clamp(1, rows);
    let plane_in = cin * geo.h * geo.w;
    let mut dx = vec![0f32; rows * plane_in];
    with_host(g, |gs| {
        with_host(&c.w, |ws| {
            for r0 in (0..rows).step_by(chunk) {
                let m = chunk.min(rows - r0);
                let mut cols = vec![0f32; c.groups * kk * m * ohw];
                for (grp, dst) in cols.chunks_mut(kk * m * ohw).enumerate() {
                    let wg = &ws[grp * cout_g * kk..][..cout_g * kk];
                    // Output channels whose gradient is zero in every row of the chunk add
                    // nothing: a seed or a filter leaves one channel, so the first product
                    // after it shrinks from `cout_g` terms to a handful.
                    let active = active_channels(
                        gs,
                        r0..r0 + m,
                        cout,
                        grp * cout_g..(grp + 1) * cout_g,
                        ohw,
                    );
                    if active.is_empty() {
                        dst.fill(0.0);
                        continue;
                    }
                    let (w_buf, rhs_buf);
                    let (w_act, rhs, k_act) = if active.len() * 2 < cout_g {
                        w_buf = active
                            .iter()
                            .flat_map(|&o| wg[o * kk..(o + 1) * kk].iter().copied())
                            .collect::<Vec<f32>>();
                        let mut b = vec![0f32; active.len() * m * ohw];
                        for (a, &o) in active.iter().enumerate() {
                            for j in 0..m {
                                b[(a * m + j) * ohw..][..ohw].copy_from_slice(
                                    &gs[((r0 + j) * cout + grp * cout_g + o) * ohw..][..ohw],
                                );
                            }
                        }
                        rhs_buf = b;
                        (&w_buf[..], &rhs_buf[..], active.len())
                    } else if m == 1 {
                        (
                            wg,
                            &gs[(r0 * cout + grp * cout_g) * ohw..][..cout_g * ohw],
                            cout_g,
                        )
                    } else {
                        rhs_buf = kernels::gather_group(
                            gs,
                            r0..r0 + m,
                            cout,
                            grp * cout_g..(grp + 1) * cout_g,
                            ohw,
                        );
                        (wg, &rhs_buf[..], cout_g)
                    };
                    let flops = 2 * (kk * m * ohw * k_act) as u64;
                    profile::timed(Phase::ConvGemmBackward, flops, || {
                        kernels::sgemm(
                            dst,
                            kk,
                            m * ohw,
                            k_act,
                            MatRef::transposed(w_act, kk),
                            MatRef::rows(rhs, m * ohw),
                            false,
                        )
                    });
                }
                profile::timed(Phase::Col2im, 0, || {
                    kernels::col2im(
                        &cols,
                        m,
                        c.groups,
                        cin_g,
                        &geo,
                        &mut dx[r0 * plane_in..(r0 + m) * plane_in],
                    )
                });
            }
        })
    })??;
    Ok(Tensor::from_vec(
        dx,
        (rows, cin, geo.h, geo.w),
        &Device::Cpu,
    )?)
}

/// A Winograd scheme of the CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// F(2x2, 3x3) ([`winograd`]).
    F2k3,
    /// F(4x4, 3x3) ([`winograd6`]).
    F4k3,
    /// F(2x2, 5x5) ([`winograd6`]).
    F2k5,
}

impl Scheme {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::F2k3 => "F(2x2, 3x3)",
            Scheme::F4k3 => "F(4x4, 3x3)",
            Scheme::F2k5 => "F(2x2, 5x5)",
        }
    }

    fn six(self) -> Option<&'static winograd6::Scheme> {
        match self {
            Scheme::F2k3 => None,
            Scheme::F4k3 => winograd6::Scheme::for_kernel(3),
            Scheme::F2k5 => winograd6::Scheme::for_kernel(5),
        }
    }

    /// The transformed weights `w` (`[cout, cin, r, r]`), of the data gradient's filters
    /// when `transposed`.
    pub(crate) fn transform(
        self,
        w: &[f32],
        cout: usize,
        cin: usize,
        transposed: bool,
    ) -> Vec<f32> {
        match (self.six(), transposed) {
            (None, false) => winograd::transform_weights(w, cout, cin),
            (None, true) => winograd::transform_weights_transposed(w, cout, cin),
            (Some(s), false) => winograd6::transform_weights(s, w, cout, cin),
            (Some(s), true) => winograd6::transform_weights_transposed(s, w, cout, cin),
        }
    }

    /// The data gradient's geometry as a forward convolution, where the scheme takes it.
    pub(crate) fn backward_geom(self, g: &ConvGeom) -> Option<ConvGeom> {
        match self {
            Scheme::F2k3 => winograd::backward_geom(g),
            _ => winograd6::backward_geom(g),
        }
    }

    /// `out += ` the convolution (see [`winograd::forward`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        self,
        x: &[f32],
        n: usize,
        cin: usize,
        g: &ConvGeom,
        u: &[f32],
        bias: &[f32],
        relu: bool,
        out: &mut [f32],
    ) {
        match self.six() {
            None => winograd::forward(x, n, cin, g, u, bias, relu, out),
            Some(s) => winograd6::forward(s, x, n, cin, g, u, bias, relu, out),
        }
    }
}

/// The Winograd scheme a convolution of this geometry takes for `n` images (or, `grad`,
/// for its data gradient of `n` rows), as `path` says: none below 16 channels, strided,
/// dilated or grouped. `Auto`, for a 3x3 convolution's forward: F(4x4, 3x3) where the work
/// is large ([`winograd6::worth_4x4`]: batch 32 of AlexNet and ResNet-50, not batch 1),
/// else F(2x2, 3x3) where it gains ([`winograd::worth`]); for its data gradient F(2x2,
/// 3x3) where it gains. For a 5x5 convolution's forward F(2x2, 5x5) where the work is 4
/// times F(2x2, 3x3)'s ([`winograd6::worth`]), never for its data gradient. Measured with
/// `bench --kernels` (each layer alone, four runs on a noisy machine): at batch 32 F(4x4,
/// 3x3) beat F(2x2, 3x3) in 21 of 28 rows of AlexNet and ResNet-50, at batch 1 it lost in
/// most; whole AlexNet batch-32 passes ran faster with it in 3 of 4 runs, ResNet-50's
/// level. F(2x2, 5x5) on AlexNet's conv2 gained 1.06-1.58x at batch 32, 0.59-1.60x at
/// batch 1, and 0.58-1.21x for one gradient row; F(4x4, 3x3)'s data gradient of one row
/// 0.48-1.90x.
pub(crate) fn fast_scheme(
    path: ConvPath,
    g: &ConvGeom,
    groups: usize,
    n: usize,
    (cin, cout): (usize, usize),
    grad: bool,
) -> Option<Scheme> {
    if !winograd::applies(g, groups, cin, cout) {
        return None;
    }
    let three = g.k == [3, 3];
    match path {
        ConvPath::Direct => None,
        ConvPath::Winograd if three => Some(Scheme::F2k3),
        ConvPath::Winograd4 if three => Some(Scheme::F4k3),
        ConvPath::Winograd | ConvPath::Winograd4 => Some(Scheme::F2k5),
        ConvPath::Auto if three && !grad && winograd6::worth_4x4(g, n, cin, cout) => {
            Some(Scheme::F4k3)
        }
        ConvPath::Auto if three => winograd::worth(g, n, cin, cout).then_some(Scheme::F2k3),
        ConvPath::Auto => (!grad && winograd6::worth(g, n, cin, cout)).then_some(Scheme::F2k5),
    }
}

/// The channels of `chans` (as offsets from its start) whose gradient is nonzero in some
/// row of `rows`; `gs` is `[rows, channels, hw]` with `channels` in all.
fn active_channels(
    gs: &[f32],
    rows: std::ops::Range<usize>,
    channels: usize,
    chans: std::ops::Range<usize>,
    hw: usize,
) -> Vec<usize> {
    let base = chans.start;
    chans
        .filter(|&o| {
            rows.clone().any(|r| {
                gs[(r * channels + o) * hw..][..hw]
                    .iter()
                    .any(|v| *v != 0.0)
            })
        })
        .map(|o| o - base)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{conv_forward, Conv, ConvPath, Shape};
    use candle_core::{Device, Tensor};

    #[test]
    fn grouped_conv_matches_candle() {
        let dev = Device::Cpu;
        // (cin, cout, groups, stride, kernel, pad, batch): depthwise, grouped, pointwise (a
        // product per image at batch 1, one over the images' planes side by side above)
        for (cin, cout, groups, stride, k, pad, n) in [
            (8, 8, 8, 1, 3, 1, 1),
            (8, 8, 8, 2, 3, 1, 2),
            (4, 8, 2, 1, 3, 1, 3),
            (48, 48, 48, 2, 3, 1, 1),
            (6, 10, 1, 1, 1, 0, 1),
            (6, 10, 1, 1, 1, 0, 3),
            (6, 10, 2, 1, 1, 0, 2),
            (6, 10, 1, 2, 1, 0, 2),
        ] {
            let x = Tensor::randn(0f32, 1.0, (n, cin, 9, 9), &dev).unwrap();
            let w = Tensor::randn(0f32, 1.0, (cout, cin / groups, k, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 1.0, (1, cout, 1, 1), &dev).unwrap();
            let c = Conv {
                w: w.clone(),
                b: b.clone(),
                kernel: k.into(),
                stride: stride.into(),
                pad: pad.into(),
                dilation: 1.into(),
                groups,
                fast: Default::default(),
                fast_t: Default::default(),
            };
            let want = x
                .conv2d(&w, pad, stride, 1, groups)
                .unwrap()
                .broadcast_add(&b)
                .unwrap();
            let oh = want.dims()[2];
            let (in_shape, out_shape) = (
                Shape::Spatial { c: cin, h: 9, w: 9 },
                Shape::Spatial {
                    c: cout,
                    h: oh,
                    w: oh,
                },
            );
            let got =
                conv_forward(&x, &c, in_shape, out_shape, false, None, ConvPath::Auto).unwrap();
            // the fused ReLU epilogue gives the ReLU of the output
            let fused =
                conv_forward(&x, &c, in_shape, out_shape, true, None, ConvPath::Auto).unwrap();
            let d_relu = super::super::max_abs_diff(&fused, &want.relu().unwrap());
            assert!(d_relu < 1e-4, "fused relu: {d_relu}");
            let d = super::super::max_abs_diff(&got, &want);
            assert!(d < 1e-4, "{cin} {cout} {groups} {stride} k{k} n{n}: {d}");
        }
    }
}
