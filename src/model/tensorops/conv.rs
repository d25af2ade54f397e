//! Convolutions on the tensor-op backend, every geometry (groups, depthwise, uneven
//! padding, non-square kernels and strides, dilation) by one path: an unfold by a tap table
//! (`index_select`) and one batched matrix product over the groups; a pointwise convolution
//! skips the unfold. The data gradient is the product `W^T . dY` folded back by `index_add`
//! (the adjoint of the unfold).
//!
//! Candle's own conv2d is not used: it takes one stride, dilation and padding for both axes,
//! loops over groups one by one, and its CPU path in candle-core 0.9.2 computes wrong
//! numbers when a plane's width equals its channel count (its tiled im2col takes an NCHW
//! input whose strides then equal NHWC's for channel-last). One path on every device also
//! means that `cpu-generic` tests exactly what a GPU runs.

use candle_core::{DType, Tensor};

use super::{with_sentinel, Cache, Sweep, TapOrder, Taps};
use crate::error::Result;
use crate::model::ops::conv::Conv;
use crate::model::shape::Shape;

fn chw(s: Shape) -> (usize, usize, usize) {
    match s {
        Shape::Spatial { c, h, w } => (c, h, w),
        Shape::Flat(n) => (n, 1, 1),
    }
}

/// A 1x1 convolution with stride 1 and no padding: its columns are the input itself.
fn is_pointwise(c: &Conv) -> bool {
    c.kernel.0 == [1, 1] && c.stride.0 == [1, 1] && c.pad.is_zero()
}

fn taps(c: &Conv, input: Shape, output: Shape) -> Taps {
    let ((_, h, w), (_, oh, ow)) = (chw(input), chw(output));
    Taps {
        h,
        w,
        oh,
        ow,
        sweep: Sweep::Strided {
            k: c.kernel.0,
            stride: c.stride.0,
            pad: [c.pad.begin(0), c.pad.begin(1)],
            dil: c.dilation.0,
        },
    }
}

/// Weights `[1, groups, m, k]` for a product with `[n, groups, k, _]`. Candle's CUDA matmul
/// (cuBLAS's strided batches) takes a broadcast batch only as one batch dimension, so with
/// several groups and images the weights are repeated per image (a copy much smaller than
/// the columns they multiply).
fn per_image(w: Tensor, n: usize) -> Result<Tensor> {
    let (_, groups, m, k) = w.dims4()?;
    Ok(if groups > 1 && n > 1 {
        w.broadcast_as((n, groups, m, k))?.contiguous()?
    } else {
        w
    })
}

/// The convolution of `x` (`[n, cin, h, w]`), bias added.
pub fn forward(cache: &Cache, x: &Tensor, c: &Conv, input: Shape, output: Shape) -> Result<Tensor> {
    let n = x.dims()[0];
    let ((cin, _, _), (cout, oh, ow)) = (chw(input), chw(output));
    let (g, t) = (c.groups, taps(c, input, output));
    let (k, ohw) = (t.k(), t.ohw());
    let cols = if is_pointwise(c) {
        x.reshape((n, g, cin / g, ohw))?
    } else {
        let table = t.tensor(cache, x.device(), TapOrder::TapMajor)?;
        with_sentinel(x, n * cin, t.h * t.w, 0.0)?
            .index_select(&table, 1)?
            .reshape((n, g, cin / g * k, ohw))?
    };
    let w = per_image(c.w.reshape((1, g, cout / g, cin / g * k))?, n)?;
    let y = w.broadcast_matmul(&cols)?.reshape((n, cout, oh, ow))?;
    Ok(y.broadcast_add(&c.b)?)
}

/// The data gradient of the convolution for gradient rows `g` (`[rows, cout, oh, ow]`).
pub fn backward(
    cache: &Cache,
    g: &Tensor,
    c: &Conv,
    input: Shape,
    output: Shape,
) -> Result<Tensor> {
    let rows = g.dims()[0];
    let ((cin, h, w), (cout, oh, ow)) = (chw(input), chw(output));
    let groups = c.groups;
    let t = taps(c, input, output);
    let (k, ohw, plane) = (t.k(), t.ohw(), h * w);
    let wt = per_image(
        c.w.reshape((1, groups, cout / groups, cin / groups * k))?
            .transpose(2, 3)?,
        rows,
    )?;
    let cols = wt
        .broadcast_matmul(
            &g.contiguous()?
                .reshape((rows, groups, cout / groups, oh * ow))?,
        )?
        .reshape((rows * cin, k * ohw))?;
    if is_pointwise(c) {
        return Ok(cols.reshape((rows, cin, h, w))?);
    }
    let table = t.tensor(cache, g.device(), TapOrder::TapMajor)?;
    let dx = Tensor::zeros((rows * cin, plane + 1), DType::F32, g.device())?
        .index_add(&table, &cols, 1)?
        .narrow(1, 0, plane)?;
    Ok(dx.reshape((rows, cin, h, w))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::spec::Pads;
    use crate::model::tensorops::tests::host;
    use candle_core::Device;

    /// Forward and data gradient against the CPU kernels over the geometries the zoo has:
    /// strided, padded unevenly, dilated, grouped, depthwise (with a multiplier),
    /// non-square; several gradient rows.
    /// `(cin, cout, groups, kernel, stride, pads, dilation)`
    type Case = (
        usize,
        usize,
        usize,
        [usize; 2],
        [usize; 2],
        [usize; 4],
        [usize; 2],
    );

    #[test]
    fn convolutions_match_the_cpu_kernels() {
        let dev = Device::Cpu;
        let cache = Cache::default();
        // (cin, cout, groups, kernel, stride, pads, dilation)
        let cases: [Case; 9] = [
            (3, 8, 1, [5, 5], [2, 2], [2, 2, 2, 2], [1, 1]),
            (4, 6, 2, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            (4, 6, 1, [3, 3], [2, 2], [0, 0, 1, 1], [1, 1]),
            (4, 4, 1, [3, 3], [1, 1], [2, 2, 2, 2], [2, 2]),
            (6, 6, 6, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
            (3, 6, 3, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            (4, 5, 1, [1, 7], [1, 1], [0, 3, 0, 3], [1, 1]),
            (4, 5, 1, [3, 3], [2, 1], [1, 1, 1, 1], [1, 1]),
            (5, 7, 1, [1, 1], [1, 1], [0, 0, 0, 0], [1, 1]),
        ];
        for (cin, cout, groups, k, s, p, d) in cases {
            let (h, w) = (9, 8);
            let c = Conv {
                w: Tensor::randn(0f32, 1.0, (cout, cin / groups, k[0], k[1]), &dev).unwrap(),
                b: Tensor::randn(0f32, 1.0, (1, cout, 1, 1), &dev).unwrap(),
                kernel: crate::model::spec::Hw(k),
                stride: crate::model::spec::Hw(s),
                pad: Pads(p),
                dilation: crate::model::spec::Hw(d),
                groups,
                fast: Default::default(),
                fast_t: Default::default(),
            };
            let out = |size: usize, a: usize| {
                crate::model::kernels::conv_out(size, k[a], s[a], p[a] + p[a + 2], d[a]).unwrap()
            };
            let input = Shape::Spatial { c: cin, h, w };
            let output = Shape::Spatial {
                c: cout,
                h: out(h, 0),
                w: out(w, 1),
            };
            let x = Tensor::randn(0f32, 1.0, (2, cin, h, w), &dev).unwrap();
            let y = forward(&cache, &x, &c, input, output).unwrap();
            let want = crate::model::ops::conv::conv_forward(
                &x,
                &c,
                input,
                output,
                false,
                None,
                crate::model::net::ConvPath::Winograd,
            )
            .unwrap();
            let scale = host(&want).iter().fold(0f32, |m, v| m.max(v.abs()));
            let dy = host(&y)
                .iter()
                .zip(host(&want))
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                dy < 1e-5 * scale,
                "{cin} {cout} g{groups} k{k:?} s{s:?} p{p:?} d{d:?}: forward {dy}"
            );
            let g = Tensor::randn(0f32, 1.0, (3, cout, out(h, 0), out(w, 1)), &dev).unwrap();
            let dx = backward(&cache, &g, &c, input, output).unwrap();
            let want = crate::model::ops::conv::conv_backward(
                &g,
                &c,
                input,
                output,
                crate::model::net::ConvPath::Winograd,
            )
            .unwrap();
            let scale = host(&want).iter().fold(0f32, |m, v| m.max(v.abs()));
            let dd = host(&dx)
                .iter()
                .zip(host(&want))
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                dd < 1e-5 * scale,
                "{cin} {cout} g{groups} k{k:?} s{s:?} p{p:?} d{d:?}: backward {dd}"
            );
        }
    }
}
