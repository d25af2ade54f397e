//! The shape of one image's activation at a point of the net (no batch dimension).

use crate::error::{Error, Result};

/// Shape of one image's activation at some point of the net (no batch dimension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Shape {
    Spatial { c: usize, h: usize, w: usize },
    Flat(usize),
}

impl Shape {
    pub fn channels(&self) -> usize {
        match *self {
            Shape::Spatial { c, .. } => c,
            Shape::Flat(n) => n,
        }
    }
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Spatial { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }
    /// Spatial positions per channel (1 for flat blobs).
    pub fn plane(&self) -> usize {
        match *self {
            Shape::Spatial { h, w, .. } => h * w,
            Shape::Flat(_) => 1,
        }
    }
    /// Dims with a leading batch dimension.
    pub fn dims(&self, batch: usize) -> Vec<usize> {
        match *self {
            Shape::Spatial { c, h, w } => vec![batch, c, h, w],
            Shape::Flat(n) => vec![batch, n],
        }
    }
    pub fn from_dims(d: &[usize]) -> Result<Shape> {
        match d {
            [c, h, w] => Ok(Shape::Spatial {
                c: *c,
                h: *h,
                w: *w,
            }),
            [n] => Ok(Shape::Flat(*n)),
            _ => Err(Error::Shape(format!("expected [C,H,W] or [N], got {d:?}"))),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shape::Spatial { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}
