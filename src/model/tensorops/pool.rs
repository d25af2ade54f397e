//! Max, average and adaptive average pooling on tap tables: a gather unfolds the windows,
//! a reduction pools them; the backward scatters each output's gradient back (to its switch,
//! or spread over its window by `index_add`).

use candle_core::{DType, Tensor};

use super::{first_argmax, pick, with_sentinel, Cache, Key, Sweep, TapOrder, Taps};
use crate::error::Result;
use crate::model::kernels::avg_window;
use crate::model::shape::Shape;
use crate::model::spec::PoolSpec;

fn hw(s: Shape) -> (usize, usize) {
    match s {
        Shape::Spatial { h, w, .. } => (h, w),
        Shape::Flat(_) => (1, 1),
    }
}

/// The windows of pooling `p` (or adaptive bins, `None`) from `input` to `output`.
pub(crate) fn taps(p: Option<&PoolSpec>, input: Shape, output: Shape) -> Taps {
    let ((h, w), (oh, ow)) = (hw(input), hw(output));
    let sweep = match p {
        Some(p) => Sweep::Strided {
            k: p.kernel.0,
            stride: p.stride.0,
            pad: [p.pad.begin(0), p.pad.begin(1)],
            dil: [1, 1],
        },
        None => Sweep::Adaptive,
    };
    Taps {
        h,
        w,
        oh,
        ow,
        sweep,
    }
}

/// Max pooling of `x` (`[n, c, h, w]`): the output and the switches `[n, c, oh*ow]` (the
/// index in its input plane of each output's first maximum, as the CPU kernel's).
pub fn maxpool_forward(
    cache: &Cache,
    x: &Tensor,
    p: &PoolSpec,
    input: Shape,
    output: Shape,
) -> Result<(Tensor, Tensor)> {
    let n = x.dims()[0];
    let c = input.channels();
    let t = taps(Some(p), input, output);
    let (k, ohw) = (t.k(), t.ohw());
    let table = t.tensor(cache, x.device(), TapOrder::OutputMajor)?;
    let xs = with_sentinel(x, n * c, t.h * t.w, f32::NEG_INFINITY)?;
    let windows = xs.index_select(&table, 1)?.reshape((n * c, ohw, k))?;
    let (first, max) = first_argmax(cache, &windows)?;
    let at = first
        .broadcast_add(&cache.strides(x.device(), ohw, k)?)?
        .to_dtype(DType::U32)?
        .flatten_all()?;
    let switches = table.index_select(&at, 0)?.reshape((n, c, ohw))?;
    Ok((max.reshape(output.dims(n))?, switches))
}

/// The gradient of max pooling: each row's output gradient goes to its switch. `switches`
/// are the forward state's (`[n, c, oh*ow]`), of image `img` or of every row.
pub fn maxpool_backward(
    g: &Tensor,
    switches: &Tensor,
    img: Option<usize>,
    input: Shape,
    output: Shape,
) -> Result<Tensor> {
    let rows = g.dims()[0];
    let (c, plane, ohw) = (input.channels(), input.plane(), output.plane());
    let sw = pick(switches, img)?
        .broadcast_as((rows, c, ohw))?
        .contiguous()?
        .reshape((rows * c, ohw))?;
    let g = g.contiguous()?.reshape((rows * c, ohw))?;
    // a window wholly outside the input (none in a valid net) switches to the sentinel
    let dx = Tensor::zeros((rows * c, plane + 1), DType::F32, g.device())?
        .scatter_add(&sw, &g, 1)?
        .narrow(1, 0, plane)?;
    Ok(dx.reshape(input.dims(rows))?)
}

/// Per output cell `1 / divisor` (`[oh*ow]`) of average pooling `p` (adaptive bins for
/// `None`), as the CPU kernels count cells.
fn inverse_divisor(
    cache: &Cache,
    t: &Taps,
    p: Option<&PoolSpec>,
    device: &candle_core::Device,
) -> Result<Tensor> {
    cache.get(Key::AvgScale(*t, p.copied()), || {
        let mut v = Vec::with_capacity(t.ohw());
        for oy in 0..t.oh {
            for ox in 0..t.ow {
                let (cy, cx) = match p {
                    Some(p) => (avg_window(oy, p, t.h, 0).2, avg_window(ox, p, t.w, 1).2),
                    None => (
                        crate::model::kernels::adaptive_bin(oy, t.oh, t.h).2,
                        crate::model::kernels::adaptive_bin(ox, t.ow, t.w).2,
                    ),
                };
                v.push(1.0 / (cy * cx) as f32);
            }
        }
        let n = v.len();
        crate::model::transfer::upload(v, n, device)
    })
}

/// Average pooling `p` of `x`, or adaptive average pooling for `None`.
pub fn avgpool_forward(
    cache: &Cache,
    x: &Tensor,
    p: Option<&PoolSpec>,
    input: Shape,
    output: Shape,
) -> Result<Tensor> {
    let n = x.dims()[0];
    let c = input.channels();
    let t = taps(p, input, output);
    let (k, ohw) = (t.k(), t.ohw());
    let table = t.tensor(cache, x.device(), TapOrder::OutputMajor)?;
    let xs = with_sentinel(x, n * c, t.h * t.w, 0.0)?;
    let sums = xs
        .index_select(&table, 1)?
        .reshape((n * c, ohw, k))?
        .sum(2)?;
    let y = sums.broadcast_mul(&inverse_divisor(cache, &t, p, x.device())?)?;
    Ok(y.reshape(output.dims(n))?)
}

/// The gradient of [`avgpool_forward`]: each output's gradient spread over its window.
pub fn avgpool_backward(
    cache: &Cache,
    g: &Tensor,
    p: Option<&PoolSpec>,
    input: Shape,
    output: Shape,
) -> Result<Tensor> {
    let rows = g.dims()[0];
    let c = input.channels();
    let t = taps(p, input, output);
    let (k, ohw, plane) = (t.k(), t.ohw(), t.h * t.w);
    let table = t.tensor(cache, g.device(), TapOrder::OutputMajor)?;
    let share = g
        .reshape((rows * c, ohw))?
        .broadcast_mul(&inverse_divisor(cache, &t, p, g.device())?)?
        .unsqueeze(2)?
        .broadcast_as((rows * c, ohw, k))?
        .contiguous()?
        .reshape((rows * c, ohw * k))?;
    let dx = Tensor::zeros((rows * c, plane + 1), DType::F32, g.device())?
        .index_add(&table, &share, 1)?
        .narrow(1, 0, plane)?;
    Ok(dx.reshape(input.dims(rows))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels;
    use crate::model::tensorops::tests::host;
    use candle_core::Device;

    fn spatial(c: usize, h: usize, w: usize) -> Shape {
        Shape::Spatial { c, h, w }
    }

    /// Against the CPU kernels, with ties (values on a coarse grid), padding and ceil
    /// rounding, and one image's switches shared by several gradient rows.
    #[test]
    fn pooling_matches_the_cpu_kernels() {
        let dev = Device::Cpu;
        let cache = Cache::default();
        for (k, s, pad, ceil, h) in [
            (3, 2, 0, true, 13),
            (3, 2, 1, false, 12),
            (2, 2, 0, false, 8),
            (3, 1, 1, true, 7),
        ] {
            let mut p = PoolSpec::square(k, s, pad, ceil);
            let oh = kernels::pool_out(h, &p).unwrap();
            let (input, output) = (spatial(3, h, h), spatial(3, oh, oh));
            let x = (Tensor::rand(0f32, 4.0, (2, 3, h, h), &dev)
                .unwrap()
                .floor()
                .unwrap())
            .contiguous()
            .unwrap();
            let xv = host(&x);
            let (y, sw) = maxpool_forward(&cache, &x, &p, input, output).unwrap();
            let (want, want_sw) = kernels::maxpool_forward(&xv, 6, (h, h), &p, (oh, oh));
            assert_eq!(host(&y), want);
            assert_eq!(sw.flatten_all().unwrap().to_vec1::<u32>().unwrap(), want_sw);
            let g = Tensor::rand(-1f32, 1.0, (4, 3, oh, oh), &dev).unwrap();
            let dx = maxpool_backward(&g, &sw, Some(1), input, output).unwrap();
            let want_dx =
                kernels::maxpool_backward(&host(&g), &want_sw[3 * oh * oh..], 3, h * h, oh * oh);
            let d = host(&dx)
                .iter()
                .zip(&want_dx)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(d < 1e-6, "max-pool backward {d}");
            for cip in [true, false] {
                p.count_include_pad = cip;
                let y = avgpool_forward(&cache, &x, Some(&p), input, output).unwrap();
                let want = kernels::avgpool_forward(&xv, 6, (h, h), &p, (oh, oh));
                let d = host(&y)
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(d < 1e-5, "avg-pool {k} {s} {pad} {ceil} {cip}: {d}");
                let g = Tensor::rand(-1f32, 1.0, (2, 3, oh, oh), &dev).unwrap();
                let dx = avgpool_backward(&cache, &g, Some(&p), input, output).unwrap();
                let want = kernels::avgpool_backward(&host(&g), 6, (h, h), &p, (oh, oh));
                let d = host(&dx)
                    .iter()
                    .zip(&want)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(d < 1e-6, "avg-pool backward {d}");
            }
        }
        // adaptive 7x5 -> 3x2
        let (input, output) = (spatial(2, 7, 5), spatial(2, 3, 2));
        let x = Tensor::rand(0f32, 1.0, (1, 2, 7, 5), &dev).unwrap();
        let y = avgpool_forward(&cache, &x, None, input, output).unwrap();
        let want = kernels::adaptive_avgpool_forward(&host(&x), 2, (7, 5), (3, 2));
        let d = host(&y)
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-6, "adaptive {d}");
        let g = Tensor::rand(-1f32, 1.0, (1, 2, 3, 2), &dev).unwrap();
        let dx = avgpool_backward(&cache, &g, None, input, output).unwrap();
        let want = kernels::adaptive_avgpool_backward(&host(&g), 2, (7, 5), (3, 2));
        let d = host(&dx)
            .iter()
            .zip(&want)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d < 1e-6, "adaptive backward {d}");
    }
}
