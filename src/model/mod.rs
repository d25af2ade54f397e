//! The numeric model: specs, weights, the network and its forward state. Knows nothing of
//! terminals, files other than its own inputs, or async runtimes.

pub mod backend;
pub mod graph;
pub mod kernels;
pub mod net;
pub mod ops;
pub mod profile;
pub mod pth;
pub mod rule;
pub mod shape;
pub mod spec;
pub mod tensorops;
pub mod transfer;
pub mod weights;
pub mod winograd;
pub mod winograd6;
pub mod zoo;

use std::path::{Path, PathBuf};

pub use backend::{parse_device, Backend, Placement};
pub use net::{Blob, ConvPath, ForwardState, Kept, Net};
pub use ops::{act, binary};
pub use shape::Shape;
pub use spec::{LoadedSpec, Spec};

use crate::error::{Error, Result};

/// A loaded network with its class names and preprocessing data.
pub struct Model {
    pub net: Net,
    /// Class names of the top blob (numbered when the spec has no label file, or one that
    /// does not match the width of the top blob).
    pub labels: Vec<String>,
    /// Per-pixel mean `[3, H, W]` (cropped to the input size), when the spec has one.
    pub mean_image: Option<Vec<f32>>,
    /// Where the weights came from, for messages and cache keys.
    pub weights_origin: String,
}

/// Where weights come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsSource {
    /// The spec's default (its `weights` file, or built-in weights).
    Default,
    File(PathBuf),
    /// Deterministic random weights of the spec's published widths.
    Random(u64),
}

impl WeightsSource {
    pub fn parse(s: Option<&str>) -> WeightsSource {
        match s {
            None => WeightsSource::Default,
            Some("random") => WeightsSource::Random(0),
            Some(r)
                if r.strip_prefix("random:")
                    .is_some_and(|s| s.parse::<u64>().is_ok()) =>
            {
                WeightsSource::Random(r[7..].parse().unwrap_or(0))
            }
            Some(p) => WeightsSource::File(PathBuf::from(p)),
        }
    }
}

impl Model {
    /// A model from a resolved spec, its weights and its mean image (when the spec names
    /// one).
    pub fn from_parts(
        loaded: LoadedSpec,
        tensors: weights::TensorMap,
        origin: String,
        mean_image: Option<Vec<f32>>,
        place: impl Into<Placement>,
    ) -> Result<Model> {
        let net = Net::build(loaded.spec.clone(), tensors, place, Path::new(&origin))?;
        let classes = net.blobs[0].shape.channels();
        let labels = match loaded.labels()? {
            Some(l) if l.len() == classes => l,
            Some(l) => {
                tracing::warn!(
                    "label file has {} names but the top blob has {classes} units; numbering classes",
                    l.len()
                );
                numbered(classes)
            }
            None => numbered(classes),
        };
        Ok(Model {
            net,
            labels,
            mean_image,
            weights_origin: origin,
        })
    }

    pub fn spec(&self) -> &Spec {
        &self.net.spec
    }

    /// Replaces the class names; an error unless there is one per output of the top blob.
    pub fn set_labels(&mut self, labels: Vec<String>) -> Result<()> {
        let classes = self.net.blobs[0].shape.channels();
        if labels.len() != classes {
            return Err(Error::Input(format!(
                "{} class names for the {classes} outputs of `{}`",
                labels.len(),
                self.net.spec.name
            )));
        }
        self.labels = labels;
        Ok(())
    }
}

/// Class names from a text file, one per line (blank lines skipped, names trimmed).
pub fn read_labels(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

/// A per-pixel mean image `[3, H0, W0]` (`data`, read from `path`) centre-cropped to the
/// spec's input size.
pub fn crop_mean(
    loaded: &LoadedSpec,
    path: &Path,
    shape: &[usize],
    data: &[f32],
) -> Result<Vec<f32>> {
    let [h, w] = loaded.spec.input.size;
    match shape {
        [3, mh, mw] if *mh >= h && *mw >= w => {
            // centre crop, odd margins rounded as cnn_treevis (`[15:-14]` for 256 -> 227)
            let (oy, ox) = ((mh - h).div_ceil(2), (mw - w).div_ceil(2));
            let mut out = Vec::with_capacity(3 * h * w);
            for c in 0..3 {
                for y in 0..h {
                    let row = (c * mh + oy + y) * mw + ox;
                    out.extend_from_slice(&data[row..row + w]);
                }
            }
            Ok(out)
        }
        s => Err(Error::Npy {
            path: path.to_path_buf(),
            msg: format!("mean image has shape {s:?}, expected [3, H, W] at least {h}x{w}"),
        }),
    }
}
