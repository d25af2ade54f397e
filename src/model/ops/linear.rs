//! Fully connected layers: weights, forward, and the data gradient (small row counts by
//! the dot kernels, larger ones by a matrix product on the CPU, candle's elsewhere).

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::kernels::{self, MatRef};
use crate::model::net::{host_vec, with_host};
use crate::model::profile::{self, Phase};

#[derive(Clone)]
pub struct Linear {
    /// `[out, in]`
    pub w: Tensor,
    /// `[1, out]`
    pub b: Tensor,
}

/// Operations of a product of `rows` rows with the weights.
fn flops(rows: usize, l: &Linear) -> u64 {
    2 * (rows * l.w.elem_count()) as u64
}

pub(crate) fn linear_forward(x: &Tensor, l: &Linear) -> Result<Tensor> {
    profile::timed(Phase::Linear, flops(x.dims()[0], l), || forward(x, l))
}

/// `f(t, w)` on the host slices of `t` (`[rows, _]`) and the weights, its result a
/// `[rows, cols]` tensor.
fn on_host(
    t: &Tensor,
    l: &Linear,
    cols: usize,
    f: impl FnOnce(&[f32], &[f32]) -> Vec<f32>,
) -> Result<Tensor> {
    let rows = t.dims()[0];
    let v = with_host(t, |ts| with_host(&l.w, |ws| f(ts, ws)))??;
    Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
}

fn forward(x: &Tensor, l: &Linear) -> Result<Tensor> {
    let rows = x.dims()[0];
    if !x.device().is_cpu() {
        return Ok(x.matmul(&l.w.t()?)?.broadcast_add(&l.b)?);
    }
    let (out, fin) = (l.w.dims()[0], l.w.dims()[1]);
    let b = host_vec(&l.b)?;
    on_host(x, l, out, |xs, ws| {
        if rows <= kernels::SMALL_ROWS {
            return kernels::linear_forward_small(xs, rows, ws, &b);
        }
        // Y^T = W . X^T on the bias columns, then transposed: with the weights as the
        // row-major lhs this runs 4.7x faster than Y = X . W^T with a transposed view
        // of the weights (164 against 35 GFLOP/s for fc6 at 32 rows, `bench --kernels`)
        let mut yt: Vec<f32> = b
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, rows))
            .collect();
        let (w, xt) = (MatRef::rows(ws, fin), MatRef::transposed(xs, fin));
        kernels::sgemm(&mut yt, out, rows, fin, w, xt, true);
        let mut y = vec![0f32; rows * out];
        for (o, col) in yt.chunks_exact(rows).enumerate() {
            for (r, v) in col.iter().enumerate() {
                y[r * out + o] = *v;
            }
        }
        y
    })
}

pub(crate) fn linear_backward(g: &Tensor, l: &Linear) -> Result<Tensor> {
    profile::timed(Phase::Linear, flops(g.dims()[0], l), || backward(g, l))
}

fn backward(g: &Tensor, l: &Linear) -> Result<Tensor> {
    let rows = g.dims()[0];
    if !g.device().is_cpu() {
        return Ok(g.matmul(&l.w)?);
    }
    let (out, fin) = (l.w.dims()[0], l.w.dims()[1]);
    on_host(g, l, fin, |gs, ws| {
        if rows <= kernels::SMALL_ROWS {
            return kernels::linear_backward_small(gs, rows, ws, fin);
        }
        // dX = dY . W
        let mut dx = vec![0f32; rows * fin];
        let (dy, w) = (MatRef::rows(gs, out), MatRef::rows(ws, fin));
        kernels::sgemm(&mut dx, rows, fin, out, dy, w, false);
        dx
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::max_abs_diff as max_diff;

    #[test]
    fn every_row_count_matches_candle() {
        let dev = Device::Cpu;
        let (out, fin) = (37, 300);
        let l = Linear {
            w: Tensor::randn(0f32, 1.0, (out, fin), &dev).unwrap(),
            b: Tensor::randn(0f32, 1.0, (1, out), &dev).unwrap(),
        };
        // the dot kernels (up to SMALL_ROWS) and the matrix products above them
        for rows in [1, kernels::SMALL_ROWS, kernels::SMALL_ROWS + 1, 33] {
            let x = Tensor::randn(0f32, 1.0, (rows, fin), &dev).unwrap();
            let want = x
                .matmul(&l.w.t().unwrap())
                .unwrap()
                .broadcast_add(&l.b)
                .unwrap();
            let got = linear_forward(&x, &l).unwrap();
            assert_eq!(got.dims(), [rows, out]);
            assert!(max_diff(&got, &want) < 1e-3, "forward, {rows} rows");
            let g = Tensor::randn(0f32, 1.0, (rows, out), &dev).unwrap();
            let got = linear_backward(&g, &l).unwrap();
            assert!(
                max_diff(&got, &g.matmul(&l.w).unwrap()) < 1e-3,
                "backward, {rows} rows"
            );
        }
    }
}
