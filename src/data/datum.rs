//! Caffe's `Datum` message (caffe.proto), as `convert_imageset` stores one image per LMDB
//! record: raw `C×H×W` bytes in OpenCV's BGR order, or an encoded JPEG/PNG file
//! (`encoded: true`), with the label beside it.

use prost::Message;

use crate::error::{Error, Result};

/// `message Datum` (field numbers from caffe.proto).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Datum {
    #[prost(int32, optional, tag = "1")]
    pub channels: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub height: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub width: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "4")]
    pub data: Option<Vec<u8>>,
    #[prost(int32, optional, tag = "5")]
    pub label: Option<i32>,
    #[prost(float, repeated, packed = "false", tag = "6")]
    pub float_data: Vec<f32>,
    #[prost(bool, optional, tag = "7")]
    pub encoded: Option<bool>,
}

/// One decoded record: the image (RGB) and its label, if the record has one.
#[derive(Debug, Clone)]
pub struct DatumImage {
    pub image: image::RgbImage,
    pub label: Option<i32>,
}

/// Decodes a serialized `Datum` into an RGB image. `what` names the record in errors.
pub fn decode(bytes: &[u8], what: &str) -> Result<DatumImage> {
    let bad = |msg: String| Error::Input(format!("{what}: {msg}"));
    let d = Datum::decode(bytes).map_err(|e| bad(format!("not a Caffe Datum ({e})")))?;
    let data = d.data.unwrap_or_default();
    let image = if d.encoded.unwrap_or(false) {
        image::load_from_memory(&data)
            .map_err(|e| bad(format!("cannot decode the encoded image: {e}")))?
            .to_rgb8()
    } else {
        let dim = |v: Option<i32>, name: &str| -> Result<usize> {
            match v {
                Some(v) if v > 0 && v <= 1 << 16 => Ok(v as usize),
                _ => Err(bad(format!("{name} is {v:?}, not a positive size"))),
            }
        };
        let (c, h, w) = (
            dim(d.channels, "channels")?,
            dim(d.height, "height")?,
            dim(d.width, "width")?,
        );
        if c != 1 && c != 3 {
            return Err(bad(format!("{c} channels; images have 1 or 3")));
        }
        let plane = h * w;
        let px: Vec<u8> = if !data.is_empty() {
            if data.len() != c * plane {
                return Err(bad(format!(
                    "{} data bytes for {c}×{h}×{w} = {}",
                    data.len(),
                    c * plane
                )));
            }
            data
        } else if d.float_data.len() == c * plane {
            d.float_data
                .iter()
                .map(|v| v.round().clamp(0.0, 255.0) as u8)
                .collect()
        } else {
            return Err(bad(format!(
                "no pixel data ({} data bytes, {} floats) for {c}×{h}×{w}",
                data.len(),
                d.float_data.len()
            )));
        };
        image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
            let i = y as usize * w + x as usize;
            if c == 1 {
                image::Rgb([px[i]; 3])
            } else {
                // planes are B, G, R
                image::Rgb([px[2 * plane + i], px[plane + i], px[i]])
            }
        })
    };
    Ok(DatumImage {
        image,
        label: d.label,
    })
}

/// Serializes an RGB image as a raw (BGR, channel-major) `Datum`, as `convert_imageset`
/// without `--encoded` writes it.
pub fn encode_raw(img: &image::RgbImage, label: Option<i32>) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let plane = (w * h) as usize;
    let mut data = vec![0u8; 3 * plane];
    for (i, p) in img.pixels().enumerate() {
        data[i] = p.0[2];
        data[plane + i] = p.0[1];
        data[2 * plane + i] = p.0[0];
    }
    Datum {
        channels: Some(3),
        height: Some(h as i32),
        width: Some(w as i32),
        data: Some(data),
        label,
        float_data: Vec::new(),
        encoded: Some(false),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> image::RgbImage {
        image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8 * 40, y as u8 * 70, 200]))
    }

    #[test]
    fn raw_round_trip_keeps_pixels_and_label() {
        let img = sample();
        let d = decode(&encode_raw(&img, Some(7)), "t").unwrap();
        assert_eq!(d.image, img);
        assert_eq!(d.label, Some(7));
    }

    #[test]
    fn encoded_png_is_decoded() {
        let img = sample();
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let bytes = Datum {
            data: Some(png),
            encoded: Some(true),
            label: Some(3),
            ..Default::default()
        }
        .encode_to_vec();
        let d = decode(&bytes, "t").unwrap();
        assert_eq!(d.image, img);
    }

    #[test]
    fn bad_records_are_errors() {
        let short = Datum {
            channels: Some(3),
            height: Some(4),
            width: Some(4),
            data: Some(vec![0; 10]),
            ..Default::default()
        }
        .encode_to_vec();
        let e = decode(&short, "key 9").unwrap_err().to_string();
        assert!(e.contains("key 9") && e.contains("10 data bytes"), "{e}");
        assert!(decode(&[0xff, 0xff, 0xff], "x").is_err());
        let huge = Datum {
            channels: Some(3),
            height: Some(-1),
            width: Some(4),
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode(&huge, "x").is_err());
    }
}
