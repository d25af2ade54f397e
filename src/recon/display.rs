//! Turning a raw gradient at the input into an image to look at. Every mode is named; the
//! raw gradient itself is always available to export (`.npy`).

use candle_core::Tensor;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::spec::ColorOrder;
use crate::model::Model;

/// How a gradient is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Display {
    /// cnn_treevis: `clip(mean + gradient)`, de-preprocessed: a grey (mean) background, no
    /// rescaling, so magnitudes compare across nodes but deep paths saturate.
    Mean,
    /// Per-image normalisation: grey 0.5 plus the gradient scaled so its largest absolute
    /// value (over all channels) reaches 0 or 1. Never saturates, whatever the path depth;
    /// magnitudes do not compare across images.
    #[default]
    Norm,
}

/// The input image (`[3, H, W]`, preprocessed) or a gradient shown with `mode`, as RGB.
pub fn render(model: &Model, grad: &Tensor, mode: Display) -> Result<RgbImage> {
    let input = &model.spec().input;
    let dims = grad.dims().to_vec();
    let (h, w) = match dims.as_slice() {
        [3, h, w] => (*h, *w),
        d => {
            return Err(Error::Shape(format!(
                "a reconstruction is [3, H, W], got {d:?}"
            )))
        }
    };
    let g = crate::model::net::host_vec(grad)?;
    let plane = h * w;
    let value: Box<dyn Fn(usize, usize) -> f32> = match mode {
        Display::Mean => {
            let mean_img = model.mean_image.as_ref().filter(|m| m.len() == 3 * plane);
            Box::new(move |c, i| {
                let mean = mean_img.map(|m| m[c * plane + i]).unwrap_or(input.mean[c]);
                (g[c * plane + i] * input.std[c] + mean) / input.scale
            })
        }
        Display::Norm => {
            let m = g.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = if m > 0.0 { 0.5 / m } else { 0.0 };
            Box::new(move |c, i| 0.5 + g[c * plane + i] * s)
        }
    };
    Ok(to_rgb(h, w, input.color, value))
}

/// The preprocessed input `[3, H, W]` back as the image the network saw.
pub fn render_input(model: &Model, input_chw: &Tensor) -> Result<RgbImage> {
    render(model, input_chw, Display::Mean)
}

fn to_rgb(h: usize, w: usize, order: ColorOrder, value: impl Fn(usize, usize) -> f32) -> RgbImage {
    let mut img = RgbImage::new(w as u32, h as u32);
    for (i, px) in img.pixels_mut().enumerate() {
        for (k, out) in px.0.iter_mut().enumerate() {
            let c = match order {
                ColorOrder::Rgb => k,
                ColorOrder::Bgr => 2 - k,
            };
            *out = (value(c, i).clamp(0.0, 1.0) * 255.0).round() as u8;
        }
    }
    img
}
