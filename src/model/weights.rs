//! Weight files: safetensors and PyTorch `.pth` (a zip of pickles, or the legacy format
//! of PyTorch < 1.6; both read by candle's restricted unpickler, which executes no code),
//! and deterministic random weights of a
//! spec's published widths for benchmarks and tests.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use super::spec::{LayerKind, Spec};
use crate::error::{Error, Result};

/// Tensors by name, on the CPU, as float32.
pub type TensorMap = HashMap<String, Tensor>;

/// Reads every tensor of a PyTorch or safetensors weights file; the format is chosen by
/// content (zip: `.pth`; the legacy pickle format; else safetensors). `catalog::read_weights`
/// adds Caffe's `.caffemodel`.
pub fn read_weights(path: &Path) -> Result<TensorMap> {
    let mut head = [0u8; 16];
    let n = {
        use std::io::Read;
        let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        f.read(&mut head).map_err(|e| Error::io(path, e))?
    };
    if n < 4 {
        return Err(Error::weights(path, "file is too short to hold weights"));
    }
    let raw: Vec<(String, Tensor)> = if head.starts_with(b"PK\x03\x04") {
        super::pth::read_zip_file(path)?
    } else {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        if super::pth::is_legacy(&bytes) {
            super::pth::read_file(path, &bytes)?
        } else {
            safetensors_tensors(path, &bytes)?
        }
    };
    if raw.is_empty() {
        return Err(Error::weights(path, "the file holds no tensors"));
    }
    let map = raw
        .into_iter()
        .map(|(n, t)| {
            let t = t
                .to_dtype(DType::F32)
                .map_err(|e| Error::weights(path, format!("tensor `{n}`: {e}")))?;
            Ok((n, t))
        })
        .collect::<Result<TensorMap>>()?;
    check_finite(path, &map)?;
    Ok(map)
}

/// Refuses weights that hold NaN or infinite values: every output of the net would be NaN.
pub fn check_finite(path: &Path, map: &TensorMap) -> Result<()> {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    for name in names {
        let values = map[name]
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| Error::weights(path, format!("tensor `{name}`: {e}")))?;
        let bad = values.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(Error::weights(
                path,
                format!(
                    "tensor `{name}` holds {bad} NaN or infinite value{} (of {})",
                    if bad == 1 { "" } else { "s" },
                    values.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The tensors of a safetensors file's bytes.
pub fn safetensors_tensors(path: &Path, bytes: &[u8]) -> Result<Vec<(String, Tensor)>> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        Error::weights(
            path,
            format!("not a valid safetensors file ({e}); truncated or corrupt?"),
        )
    })?;
    st.tensors()
        .into_iter()
        .filter(|(name, view)| !name.ends_with("num_batches_tracked") || is_float(view.dtype()))
        .map(|(name, view)| {
            if !is_float(view.dtype()) {
                return Err(Error::weights(
                    path,
                    format!(
                        "tensor `{name}` holds {:?} values; weights must be floating-point",
                        view.dtype()
                    ),
                ));
            }
            let t = candle_core::safetensors::Load::load(&view, &Device::Cpu)
                .map_err(|e| Error::weights(path, format!("tensor `{name}`: {e}")))?;
            Ok((name, t))
        })
        .collect()
}

fn is_float(d: safetensors::Dtype) -> bool {
    use safetensors::Dtype as D;
    matches!(d, D::F16 | D::BF16 | D::F32 | D::F64)
}

/// Writes tensors as safetensors.
pub fn write_safetensors(map: &TensorMap, path: &Path) -> Result<()> {
    candle_core::safetensors::save(map, path).map_err(|e| Error::weights(path, e.to_string()))
}

/// A small deterministic generator (SplitMix64) so random weights are the same everywhere.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[-1, 1)`.
    pub fn next_sym(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The most values one weight tensor may hold (8 GiB of float32).
pub const MAX_PARAMS: usize = 1 << 31;

/// Random weights of the spec's published widths (`out` of every conv and linear layer),
/// He-uniform scaled so activations keep their range through the net, small positive
/// biases; BatchNorm layers get an identity-like affine map with varied statistics.
pub fn random_weights(spec: &Spec, seed: u64) -> Result<TensorMap> {
    let mut rng = SplitMix::new(seed);
    let mut map = TensorMap::new();
    let wiring = super::graph::wire(spec).map_err(|msg| Error::Spec {
        origin: spec.name.clone(),
        msg,
    })?;
    let input = super::net::Shape::Spatial {
        c: 3,
        h: spec.input.size[0],
        w: spec.input.size[1],
    };
    super::net::check_size(input).map_err(|msg| Error::Spec {
        origin: spec.name.clone(),
        msg: format!("the input {input} {msg}"),
    })?;
    let mut shapes: Vec<super::net::Shape> = Vec::with_capacity(wiring.len());
    let mut total = 0usize;
    for (li, &si) in wiring.order.iter().enumerate() {
        let layer = &spec.layers[si];
        let in_shapes: Vec<_> = wiring.inputs[li]
            .iter()
            .map(|&t| if t == 0 { input } else { shapes[t - 1] })
            .collect();
        let shape = in_shapes[0];
        let (wshape, fan_in, out, wname, bname, bias_term) = match &layer.kind {
            LayerKind::Conv {
                out,
                kernel,
                groups,
                depthwise,
                weight,
                bias,
                bias_term,
                ..
            } => {
                let out = out.ok_or_else(|| no_width(spec, &layer.name))?;
                let cin = if *depthwise {
                    1
                } else {
                    shape.channels() / groups
                };
                (
                    vec![out, cin, kernel.h(), kernel.w()],
                    cin * kernel.h() * kernel.w(),
                    out,
                    weight.clone(),
                    bias.clone(),
                    *bias_term,
                )
            }
            LayerKind::Linear {
                out,
                weight,
                bias,
                bias_term,
            } => {
                let out = out.ok_or_else(|| no_width(spec, &layer.name))?;
                let fin = shape.numel();
                (
                    vec![out, fin],
                    fin,
                    out,
                    weight.clone(),
                    bias.clone(),
                    *bias_term,
                )
            }
            LayerKind::Batchnorm { .. } => {
                let c = shape.channels();
                let mut vals = |lo: f32, hi: f32| -> Result<Tensor> {
                    let v: Vec<f32> = (0..c)
                        .map(|_| lo + (hi - lo) * (rng.next_sym() + 1.0) * 0.5)
                        .collect();
                    Ok(Tensor::from_vec(v, c, &Device::Cpu)?)
                };
                for (suffix, lo, hi) in [
                    ("weight", 0.8, 1.2),
                    ("bias", -0.05, 0.05),
                    ("running_mean", -0.05, 0.05),
                    ("running_var", 0.8, 1.2),
                ] {
                    map.insert(format!("{}.{suffix}", layer.name), vals(lo, hi)?);
                }
                shapes.push(super::net::infer_shape(spec, layer, &in_shapes, None)?);
                continue;
            }
            LayerKind::Prelu => {
                // PyTorch's initial slope
                let t = Tensor::from_vec(
                    vec![0.25f32; shape.channels()],
                    shape.channels(),
                    &Device::Cpu,
                )?;
                map.insert(format!("{}.weight", layer.name), t);
                shapes.push(super::net::infer_shape(spec, layer, &in_shapes, None)?);
                continue;
            }
            LayerKind::Add(o) | LayerKind::Sub(o) | LayerKind::Mul(o) | LayerKind::Div(o)
                if o.constant.is_some() =>
            {
                // a scalar: the identity of a product, a small shift of a sum
                let v = match layer.kind {
                    LayerKind::Mul(_) | LayerKind::Div(_) => 1.0f32,
                    _ => 0.1,
                };
                let t = Tensor::from_vec(vec![v], 1, &Device::Cpu)?;
                map.insert(format!("{}.constant", layer.name), t);
                shapes.push(super::net::infer_shape(spec, layer, &in_shapes, None)?);
                continue;
            }
            _ => {
                shapes.push(super::net::infer_shape(spec, layer, &in_shapes, None)?);
                continue;
            }
        };
        // the output shape first: it says what is too large before anything is allocated
        shapes.push(super::net::infer_shape(spec, layer, &in_shapes, Some(out))?);
        let n = wshape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&n| n <= MAX_PARAMS)
            .ok_or_else(|| Error::Spec {
                origin: spec.name.clone(),
                msg: format!(
                    "layer `{}`: weights of shape {wshape:?} are more than {MAX_PARAMS} values",
                    layer.name
                ),
            })?;
        total = total.saturating_add(n);
        if let Some(avail) = crate::sysmem::available_bytes() {
            if total as u64 * 4 > avail {
                return Err(Error::Spec {
                    origin: spec.name.clone(),
                    msg: format!(
                        "random weights up to layer `{}` need {} MB, more than the {} MB of memory available",
                        layer.name,
                        (total as u64 * 4) >> 20,
                        avail >> 20
                    ),
                });
            }
        }
        let bound = (6.0 / fan_in.max(1) as f32).sqrt();
        let w: Vec<f32> = (0..n).map(|_| rng.next_sym() * bound).collect();
        map.insert(
            wname.unwrap_or_else(|| format!("{}.weight", layer.name)),
            Tensor::from_vec(w, wshape.clone(), &Device::Cpu)?,
        );
        if bias_term {
            let b: Vec<f32> = (0..out).map(|_| 0.01 + 0.01 * rng.next_sym()).collect();
            map.insert(
                bname.unwrap_or_else(|| format!("{}.bias", layer.name)),
                Tensor::from_vec(b, out, &Device::Cpu)?,
            );
        }
    }
    Ok(map)
}

fn no_width(spec: &Spec, layer: &str) -> Error {
    Error::Spec {
        origin: spec.name.clone(),
        msg: format!("layer `{layer}` has no `out` width, so random weights cannot be made"),
    }
}
