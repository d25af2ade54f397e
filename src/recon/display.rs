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

impl Display {
    pub fn name(self) -> &'static str {
        match self {
            Display::Mean => "mean",
            Display::Norm => "norm",
        }
    }
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

/// Pixels between the tiles of a strip, and around them.
const GAP: u32 = 6;

/// Tiles narrower than this are enlarged (by a whole factor) in a strip.
const MIN_TILE: u32 = 128;

/// Text drawn into `img` at `(x, y)` in the 8x8 font (printable ASCII; other characters as
/// `?`), cut at the image's edge.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, color: [u8; 3]) {
    for (n, ch) in text.chars().enumerate() {
        let code = if ch.is_ascii() && !ch.is_ascii_control() {
            ch as usize
        } else {
            b'?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits >> col & 1 == 1 {
                    let (px, py) = (x + n as u32 * 8 + col, y + row as u32);
                    if px < img.width() && py < img.height() {
                        img.put_pixel(px, py, image::Rgb(color));
                    }
                }
            }
        }
    }
}

/// Words of `text` in lines of at most `width` characters (a longer word is cut).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let mut cur = String::new();
        for word in line.split_whitespace() {
            let word: String = word.chars().take(width).collect();
            if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
                lines.push(std::mem::take(&mut cur));
            }
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(&word);
        }
        lines.push(cur);
    }
    lines
}

/// Images side by side, each with its caption (wrapped to the tile's width) under it, on
/// a dark background: the picture `render --method all` and the sanity check write.
pub fn strip(tiles: &[(RgbImage, String)]) -> RgbImage {
    // small inputs (the demo network's 64 px) are enlarged so captions fit under them
    let scaled: Vec<(RgbImage, String)> = tiles
        .iter()
        .map(|(i, c)| {
            let f = MIN_TILE.div_ceil(i.width().max(1)).max(1);
            let img = if f > 1 {
                image::imageops::resize(
                    i,
                    i.width() * f,
                    i.height() * f,
                    image::imageops::FilterType::Nearest,
                )
            } else {
                i.clone()
            };
            (img, c.clone())
        })
        .collect();
    let tiles = &scaled;
    let th = tiles.iter().map(|(i, _)| i.height()).max().unwrap_or(0);
    let wrapped: Vec<Vec<String>> = tiles
        .iter()
        .map(|(i, c)| wrap(c, (i.width().max(8) / 8) as usize))
        .collect();
    let lines = wrapped.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let width = GAP + tiles.iter().map(|(i, _)| i.width() + GAP).sum::<u32>();
    let height = GAP + th + GAP / 2 + lines * 10 + GAP;
    let mut out = RgbImage::from_pixel(width.max(1), height, image::Rgb([24, 24, 24]));
    let mut x = GAP;
    for ((img, _), text) in tiles.iter().zip(&wrapped) {
        image::imageops::replace(&mut out, img, x as i64, GAP as i64);
        for (n, line) in text.iter().enumerate() {
            draw_text(
                &mut out,
                x,
                GAP + th + GAP / 2 + n as u32 * 10,
                line,
                [230, 230, 230],
            );
        }
        x += img.width() + GAP;
    }
    out
}

#[cfg(test)]
mod strip_tests {
    use super::*;

    #[test]
    fn a_strip_holds_every_tile_and_its_caption() {
        let a = RgbImage::from_pixel(160, 30, image::Rgb([255, 0, 0]));
        let b = RgbImage::from_pixel(50, 20, image::Rgb([0, 0, 255]));
        let s = strip(&[(a, "guided auto".into()), (b, "gradient manual".into())]);
        // 50 px is enlarged 3x (to 150 px, 60 high), 160 px stays
        assert_eq!(s.width(), GAP + 160 + GAP + 150 + GAP);
        assert_eq!(wrap("guided auto", 5), ["guide", "auto"]);
        assert_eq!(wrap("gradient manual", 18), ["gradient manual"]);
        assert_eq!(s.height(), GAP + 60 + GAP / 2 + 10 + GAP);
        assert_eq!(s.get_pixel(GAP, GAP).0, [255, 0, 0]);
        assert_eq!(s.get_pixel(GAP + 160 + GAP, GAP + 59).0, [0, 0, 255]);
        // caption pixels are drawn under the tiles
        let text = (GAP + 60..s.height())
            .flat_map(|y| (0..s.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| s.get_pixel(x, y).0 == [230, 230, 230])
            .count();
        assert!(text > 50, "{text} caption pixels");
    }
}
