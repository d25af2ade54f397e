//! The ops, one file per family: each holds an op's parameters, its forward, and its
//! backward under every rule (reference sections 2 and 8). Pooling and LRN are thin enough
//! to live as kernels ([`super::kernels`], the CPU backend) called from the graph executor
//! ([`super::net`]), which dispatches every op and keeps the state their backward needs.

pub mod act;
pub mod binary;
pub mod conv;
pub mod linear;

/// The largest absolute difference of two tensors of one shape (for tests).
#[cfg(test)]
pub(crate) fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap_or(f32::INFINITY)
}
