//! A neuron's grid, as cnn_treevis drew it: the k image crops in a square grid, and the k
//! reconstruction crops in a second grid beside it, best first, row by row.

use image::{Rgb, RgbImage};

use super::Crop;
use crate::error::{Error, Result};

/// Side of one grid cell, pixels.
pub const CELL: u32 = 64;
const GAP: u32 = 2;
const BETWEEN: u32 = 12;
const BACKGROUND: Rgb<u8> = Rgb([24, 24, 24]);

fn decode(png: &[u8]) -> Result<Option<RgbImage>> {
    if png.is_empty() {
        return Ok(None);
    }
    Ok(Some(
        image::load_from_memory(png)
            .map_err(|e| Error::Input(format!("a cached crop does not decode: {e}")))?
            .to_rgb8(),
    ))
}

/// Scales `img` to fit a cell (keeping its aspect) and centres it there.
fn place(canvas: &mut RgbImage, img: &RgbImage, x0: u32, y0: u32) {
    let (w, h) = img.dimensions();
    let s = CELL as f32 / w.max(h) as f32;
    let (nw, nh) = (
        ((w as f32 * s).round() as u32).clamp(1, CELL),
        ((h as f32 * s).round() as u32).clamp(1, CELL),
    );
    let r = image::imageops::resize(img, nw, nh, image::imageops::FilterType::Triangle);
    image::imageops::replace(
        canvas,
        &r,
        (x0 + (CELL - nw) / 2) as i64,
        (y0 + (CELL - nh) / 2) as i64,
    );
}

/// Renders the two grids side by side. An entry whose reconstruction was all zero (the unit
/// was not active) leaves its cells empty.
pub fn render(crops: &[Crop]) -> Result<RgbImage> {
    let k = crops.len().max(1) as u32;
    let cols = (k as f32).sqrt().ceil() as u32;
    let rows = k.div_ceil(cols);
    let gw = cols * CELL + (cols - 1) * GAP;
    let gh = rows * CELL + (rows - 1) * GAP;
    let mut canvas = RgbImage::from_pixel(2 * gw + BETWEEN, gh, BACKGROUND);
    for (i, c) in crops.iter().enumerate() {
        let (col, row) = (i as u32 % cols, i as u32 / cols);
        let (x, y) = (col * (CELL + GAP), row * (CELL + GAP));
        if let Some(img) = decode(&c.image_png)? {
            place(&mut canvas, &img, x, y);
        }
        if let Some(img) = decode(&c.recon_png)? {
            place(&mut canvas, &img, gw + BETWEEN + x, y);
        }
    }
    Ok(canvas)
}
