//! LRN across channels on the tensor-op backend, the same definition as the CPU kernel's
//! ([`crate::model::kernels::lrn_forward`]): channel windows summed over shifted slices of the
//! channel-padded tensor.

use candle_core::Tensor;

use super::pick;
use crate::error::Result;

/// `sum_{c' in [c - half, c + half]} t_c'` for every channel `c` of `t` (`[n, c, ...]`).
fn channel_window_sum(t: &Tensor, half: usize) -> Result<Tensor> {
    let c = t.dims()[1];
    let padded = t.pad_with_zeros(1, half, half)?;
    let mut acc = padded.narrow(1, 0, c)?;
    for j in 1..=2 * half {
        acc = (acc + padded.narrow(1, j, c)?)?;
    }
    Ok(acc)
}

/// `(y, scale)` of LRN of `x`.
pub fn forward(x: &Tensor, size: usize, alpha: f32, beta: f32, k: f32) -> Result<(Tensor, Tensor)> {
    let half = (size - 1) / 2;
    let scale = channel_window_sum(&x.sqr()?, half)?
        .relu()?
        .affine((alpha / size as f32) as f64, k as f64)?;
    let y = (x * scale.powf(-(beta as f64))?)?;
    Ok((y, scale))
}

/// The true gradient of LRN for gradient rows `g` against image `img`'s `x`, `y` and
/// `scale` (or every row's).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Tensor,
    x: &Tensor,
    y: &Tensor,
    scale: &Tensor,
    img: Option<usize>,
    size: usize,
    alpha: f32,
    beta: f32,
) -> Result<Tensor> {
    let (x, y, scale) = (pick(x, img)?, pick(y, img)?, pick(scale, img)?);
    let half = (size - 1) / 2;
    let coef = 2.0 * alpha * beta / size as f32;
    let ratio = g.broadcast_mul(&(y / &scale)?)?;
    let acc = channel_window_sum(&ratio, half)?;
    let direct = g.broadcast_mul(&scale.powf(-(beta as f64))?)?;
    Ok((direct - acc.broadcast_mul(&x)?.affine(coef as f64, 0.0)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kernels;
    use crate::model::tensorops::tests::host;
    use candle_core::Device;

    #[test]
    fn lrn_matches_the_cpu_kernel() {
        let dev = Device::Cpu;
        let (c, hw) = (7, 6);
        let x = Tensor::randn(0f32, 2.0, (2, c, 2, 3), &dev).unwrap();
        let (y, scale) = forward(&x, 5, 1e-2, 0.75, 2.0).unwrap();
        let (want_y, want_s) = kernels::lrn_forward(&host(&x), c, hw, 5, 1e-2, 0.75, 2.0);
        let d = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(d(&host(&y), &want_y) < 1e-5);
        assert!(d(&host(&scale), &want_s) < 1e-5);
        let g = Tensor::randn(0f32, 1.0, (3, c, 2, 3), &dev).unwrap();
        let dx = backward(&g, &x, &y, &scale, Some(1), 5, 1e-2, 0.75).unwrap();
        let n = c * hw;
        let want = kernels::lrn_backward(
            &host(&g),
            &host(&x)[n..],
            &want_y[n..],
            &want_s[n..],
            c,
            hw,
            5,
            1e-2,
            0.75,
        );
        assert!(d(&host(&dx), &want) < 1e-5, "{}", d(&host(&dx), &want));
    }
}
