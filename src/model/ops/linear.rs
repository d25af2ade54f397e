//! Fully connected layers: weights, forward, and the data gradient (small row counts by
//! the dot kernels, larger ones by a matrix product).

use candle_core::{Device, Tensor};

use crate::error::Result;
use crate::model::kernels;
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

fn forward(x: &Tensor, l: &Linear) -> Result<Tensor> {
    let rows = x.dims()[0];
    if x.device().is_cpu() && rows <= kernels::SMALL_ROWS {
        let out = l.w.dims()[0];
        let b = host_vec(&l.b)?;
        let y = with_host(x, |xs| {
            with_host(&l.w, |ws| kernels::linear_forward_small(xs, rows, ws, &b))
        })??;
        return Ok(Tensor::from_vec(y, (rows, out), &Device::Cpu)?);
    }
    Ok(x.matmul(&l.w.t()?)?.broadcast_add(&l.b)?)
}

pub(crate) fn linear_backward(g: &Tensor, l: &Linear) -> Result<Tensor> {
    profile::timed(Phase::Linear, flops(g.dims()[0], l), || backward(g, l))
}

fn backward(g: &Tensor, l: &Linear) -> Result<Tensor> {
    let rows = g.dims()[0];
    if g.device().is_cpu() && rows <= kernels::SMALL_ROWS {
        let fin = l.w.dims()[1];
        let dx = with_host(g, |gs| {
            with_host(&l.w, |ws| kernels::linear_backward_small(gs, rows, ws, fin))
        })??;
        return Ok(Tensor::from_vec(dx, (rows, fin), &Device::Cpu)?);
    }
    Ok(g.matmul(&l.w)?)
}
