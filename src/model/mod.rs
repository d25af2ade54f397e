//! The numeric model: specs, weights, the network and its forward state. Knows nothing of
//! terminals, files other than its own inputs, or async runtimes.

pub mod act;
pub mod graph;
pub mod kernels;
pub mod legacy_pth;
pub mod net;
pub mod rule;
pub mod spec;
pub mod train;
pub mod weights;
pub mod zoo;

use std::path::{Path, PathBuf};

use candle_core::Device;

pub use net::{Blob, ForwardState, Net, Shape};
pub use spec::{LoadedSpec, Spec};

use crate::error::{Error, Result};

/// Weights built into the binary for built-in specs that have them.
const BUILTIN_WEIGHTS: &[(&str, &[u8])] = &[
    ("tiny", include_bytes!("../../models/tiny.safetensors")),
    ("demo", include_bytes!("../../models/demo.safetensors")),
];

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
            Some(r) if r.starts_with("random:") && r[7..].parse::<u64>().is_ok() => {
                WeightsSource::Random(r[7..].parse().unwrap())
            }
            Some(p) => WeightsSource::File(PathBuf::from(p)),
        }
    }
}

/// Parses `--device`: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        _ if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal: usize = match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map_err(|_| {
                    Error::Device(format!("`{s}`: expected cuda:N with N a GPU number"))
                })?,
                None => 0,
            };
            cuda_device(ordinal)
        }
        _ => Err(Error::Device(format!(
            "unknown device `{s}`; use cpu, cuda or cuda:N"
        ))),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Device::new_cuda(ordinal).map_err(|e| Error::Device(format!("cuda:{ordinal}: {e}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(ordinal: usize) -> Result<Device> {
    Err(Error::Device(format!(
        "cuda:{ordinal} asked for, but this treevis was built without CUDA; rebuild with `cargo build --release --features cuda`"
    )))
}

impl Model {
    /// Loads `model` (built-in name, spec file or model folder) with its weights.
    pub fn load(model: &str, weights: &WeightsSource, device: &Device) -> Result<Model> {
        let (loaded, onnx_weights) = match onnx_file(model) {
            Some(path) => {
                let imported = import_onnx(path)?;
                for n in &imported.notes {
                    tracing::info!("{}: {n}", path.display());
                }
                let dir = path.parent().map(Path::to_path_buf);
                (
                    LoadedSpec {
                        spec: imported.spec,
                        dir,
                    },
                    Some(imported.tensors),
                )
            }
            None => (LoadedSpec::resolve(model)?, None),
        };
        let (tensors, origin) = match (weights, onnx_weights) {
            (WeightsSource::Default, Some(t)) => (t, model.to_string()),
            (weights, _) => Self::weights_for(&loaded, weights)?,
        };
        Self::from_parts(loaded, tensors, origin, device)
    }

    fn weights_for(
        loaded: &LoadedSpec,
        weights: &WeightsSource,
    ) -> Result<(weights::TensorMap, String)> {
        Ok(match weights {
            WeightsSource::Random(seed) => (
                weights::random_weights(&loaded.spec, *seed)?,
                format!("random:{seed}"),
            ),
            WeightsSource::File(p) => (weights::read_weights(p)?, p.display().to_string()),
            WeightsSource::Default => match loaded.spec.weights.as_deref().and_then(|w| loaded.resolve_path(w)) {
                Some(p) => (weights::read_weights(&p)?, p.display().to_string()),
                None => match BUILTIN_WEIGHTS.iter().find(|(n, _)| *n == loaded.spec.name && loaded.dir.is_none()) {
                    Some((n, bytes)) => (
                        candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?,
                        format!("built-in weights of `{n}`"),
                    ),
                    // pretrained weights that `treevis models fetch` got
                    None => match crate::fetch::fetched_weights(&loaded.spec.name).filter(|_| loaded.dir.is_none()) {
                        Some(p) => (weights::read_weights(&p)?, p.display().to_string()),
                        None => {
                            return Err(Error::Spec {
                                origin: loaded.spec.name.clone(),
                                msg: format!(
                                    "no default weights: pass --weights FILE (safetensors, .pth or .caffemodel), or --weights random{}",
                                    if crate::fetch::Registry::builtin().model.iter().any(|m| m.spec == loaded.spec.name) {
                                        format!(", or get the pretrained ones with `treevis models fetch {}`", loaded.spec.name)
                                    } else {
                                        String::new()
                                    }
                                ),
                            })
                        }
                    },
                },
            },
        })
    }

    /// A model from a resolved spec and its weights.
    pub fn from_parts(
        loaded: LoadedSpec,
        tensors: weights::TensorMap,
        origin: String,
        device: &Device,
    ) -> Result<Model> {
        let net = Net::build(loaded.spec.clone(), tensors, device, Path::new(&origin))?;
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
        let mean_image = match &loaded.spec.input.mean_file {
            Some(f) => Some(load_mean_image(&loaded, f)?),
            None => None,
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
}

/// `model` as an ONNX file, when it names one (by its extension).
pub fn onnx_file(model: &str) -> Option<&Path> {
    let p = Path::new(model);
    (p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
        && p.is_file())
    .then_some(p)
}

/// Reads an ONNX file as a spec named for the file, and its weights.
pub fn import_onnx(path: &Path) -> Result<crate::onnx::import::Imported> {
    let m = crate::onnx::OnnxModel::read(path)?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "onnx".into());
    crate::onnx::import::import(&m, &name)
}

fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

fn load_mean_image(loaded: &LoadedSpec, file: &str) -> Result<Vec<f32>> {
    let path = loaded.resolve_path(file).ok_or_else(|| Error::Spec {
        origin: loaded.spec.name.clone(),
        msg: format!("mean_file `{file}` cannot be resolved for a built-in spec"),
    })?;
    let arr = crate::data::npy::read_f32(&path)?;
    let [h, w] = loaded.spec.input.size;
    match arr.shape.as_slice() {
        [3, mh, mw] if *mh >= h && *mw >= w => {
            // centre crop, odd margins rounded as cnn_treevis (`[15:-14]` for 256 -> 227)
            let (oy, ox) = ((mh - h).div_ceil(2), (mw - w).div_ceil(2));
            let mut out = Vec::with_capacity(3 * h * w);
            for c in 0..3 {
                for y in 0..h {
                    let row = (c * mh + oy + y) * mw + ox;
                    out.extend_from_slice(&arr.data[row..row + w]);
                }
            }
            Ok(out)
        }
        s => Err(Error::Npy {
            path,
            msg: format!("mean image has shape {s:?}, expected [3, H, W] at least {h}x{w}"),
        }),
    }
}
