//! Images in: decoding and preprocessing exactly as a model's spec says, and `.npy` arrays.

pub mod datum;
pub mod imagedb;
pub mod lmdbfile;
pub mod npy;
pub mod source;
pub mod synth;

use std::path::Path;

use candle_core::{Device, Tensor};
use image::imageops::FilterType;

use crate::error::{Error, Result};
use crate::model::spec::{ColorOrder, InputSpec};
use crate::model::Model;

/// Decodes an image file, or an LMDB record named by its virtual path
/// ([`imagedb`]), to RGB8.
pub fn load_image(path: &Path) -> Result<image::RgbImage> {
    if let Some(rec) = imagedb::load_virtual(path) {
        return rec.map(|r| r.image);
    }
    let reader = image::ImageReader::open(path)
        .map_err(|e| Error::io(path, e))?
        .with_guessed_format()
        .map_err(|e| Error::io(path, e))?;
    let format = reader.format();
    let img = reader.decode().map_err(|e| Error::Image {
        path: path.to_path_buf(),
        msg: format!("cannot decode: {e}"),
    })?;
    if format == Some(image::ImageFormat::Jpeg) && !jpeg_is_whole(path) {
        tracing::warn!(
            "image {}: the JPEG has no end marker: it is truncated, and what is missing \
             was filled in by the decoder",
            path.display()
        );
    }
    Ok(img.to_rgb8())
}

/// Whether a JPEG file ends with its end-of-image marker (`FF D9`, possibly followed by
/// padding), as a file that was not cut short does. Decoders fill a truncated JPEG's
/// missing rows with grey and say nothing.
fn jpeg_is_whole(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return true;
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let tail_len = len.min(4096);
    let mut tail = vec![0u8; tail_len as usize];
    if f.seek(SeekFrom::Start(len - tail_len)).is_err() || f.read_exact(&mut tail).is_err() {
        return true;
    }
    let end = tail
        .iter()
        .rposition(|&b| b != 0 && b != b'\n' && b != b'\r' && b != b' ')
        .map_or(0, |i| i + 1);
    tail[..end].ends_with(&[0xFF, 0xD9])
}

/// The largest intermediate image (pixels) of a resize before its centre crop.
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Resizes (shorter side to `resize` then centre crop, or straight to the input size) and
/// normalises an RGB image into the network's input `[3, H, W]`.
pub fn preprocess(model: &Model, img: &image::RgbImage) -> Result<Tensor> {
    let v = preprocess_vec(&model.spec().input, model.mean_image.as_deref(), img)?;
    let [h, w] = model.spec().input.size;
    Ok(Tensor::from_vec(v, (3, h, w), &Device::Cpu)?)
}

/// [`preprocess`] for a bare input spec, as a flat `[3, H, W]` vector.
pub fn preprocess_vec(
    inp: &InputSpec,
    mean_image: Option<&[f32]>,
    img: &image::RgbImage,
) -> Result<Vec<f32>> {
    let [h, w] = inp.size;
    let (iw, ih) = img.dimensions();
    if iw == 0 || ih == 0 {
        return Err(Error::Input("the image is empty".into()));
    }
    let sized = match inp.resize {
        None if (iw as usize, ih as usize) == (w, h) => img.clone(),
        Some(short) => {
            let s = short as f64 / iw.min(ih) as f64;
            let (nw, nh) = (
                ((iw as f64 * s).round() as u32).max(w as u32),
                ((ih as f64 * s).round() as u32).max(h as u32),
            );
            if u64::from(nw) * u64::from(nh) <= MAX_RESIZED_PIXELS {
                let r = image::imageops::resize(img, nw, nh, FilterType::Triangle);
                let (x0, y0) = ((nw - w as u32) / 2, (nh - h as u32) / 2);
                image::imageops::crop_imm(&r, x0, y0, w as u32, h as u32).to_image()
            } else {
                // an extreme aspect ratio (a 1 x 60000 strip): resizing all of it would
                // take gigabytes, so the part the centre crop keeps is cut out first
                let cw = ((w as f64 / s).ceil() as u32).clamp(1, iw);
                let ch = ((h as f64 / s).ceil() as u32).clamp(1, ih);
                let part = image::imageops::crop_imm(img, (iw - cw) / 2, (ih - ch) / 2, cw, ch);
                image::imageops::resize(&part.to_image(), w as u32, h as u32, FilterType::Triangle)
            }
        }
        None => image::imageops::resize(img, w as u32, h as u32, FilterType::Triangle),
    };
    let plane = h * w;
    let mut v = vec![0f32; 3 * plane];
    for (i, px) in sized.pixels().enumerate() {
        for c in 0..3 {
            let src = match inp.color {
                ColorOrder::Rgb => c,
                ColorOrder::Bgr => 2 - c,
            };
            let x = px.0[src] as f32 / 255.0 * inp.scale;
            let mean = mean_image.map(|m| m[c * plane + i]).unwrap_or(inp.mean[c]);
            v[c * plane + i] = (x - mean) / inp.std[c];
        }
    }
    Ok(v)
}

/// Reads an already preprocessed float32 `[3, H, W]` input.
pub fn load_input_npy(path: &Path) -> Result<Tensor> {
    let a = npy::read_f32(path)?;
    if let Some(bad) = a.data.iter().find(|v| !v.is_finite()) {
        return Err(Error::Npy {
            path: path.to_path_buf(),
            msg: format!("the input holds {bad}: every value must be a finite number"),
        });
    }
    if a.shape.len() != 3 || a.shape[0] != 3 {
        return Err(Error::Npy {
            path: path.to_path_buf(),
            msg: format!("input must be [3, H, W], got {:?}", a.shape),
        });
    }
    Ok(Tensor::from_vec(a.data, a.shape, &Device::Cpu)?)
}

/// A deterministic synthetic test image (rings, stripes and a square in colour), so the
/// default command needs no file.
pub fn pattern_image(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32 - 0.5, y as f32 / h as f32 - 0.5);
        let r = (fx * fx + fy * fy).sqrt();
        let rings = ((r * 40.0).sin() * 0.5 + 0.5) * 255.0;
        let stripes = (((fx + fy) * 30.0).sin() * 0.5 + 0.5) * 255.0;
        let square = (fx.abs() < 0.15 && fy.abs() < 0.15) as u8 as f32 * 255.0;
        image::Rgb([rings as u8, stripes as u8, square.max(60.0) as u8])
    })
}
