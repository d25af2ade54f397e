//! Where models come from: built-in and generated specs, spec files and folders, ONNX
//! files, weights files of every format (safetensors, `.pth`, `.caffemodel`), the weights
//! built into the binary and those `treevis models fetch` got. Sits above the numeric core
//! (`model`) and the importers (`caffe`, `onnx`), which know nothing of each other.

use std::path::Path;

use candle_core::Device;

use crate::error::{Error, Result};
use crate::model::weights::{self, TensorMap};
use crate::model::{LoadedSpec, Model, Placement, WeightsSource};

/// Weights built into the binary for built-in specs that have them.
const BUILTIN_WEIGHTS: &[(&str, &[u8])] = &[
    ("tiny", include_bytes!("../models/tiny.safetensors")),
    ("demo", include_bytes!("../models/demo.safetensors")),
    (
        "demo-resnet",
        include_bytes!("../models/demo-resnet.safetensors"),
    ),
];

/// Loads `model` (built-in name, spec file or model folder) with its weights.
pub fn load(model: &str, weights: &WeightsSource, place: impl Into<Placement>) -> Result<Model> {
    Ok(load_with_notes(model, weights, place)?.0)
}

/// [`load`], with what an import assumed (an ONNX file's preprocessing, fixed dynamic
/// dimensions, activations read from elementwise ops).
pub fn load_with_notes(
    model: &str,
    weights: &WeightsSource,
    place: impl Into<Placement>,
) -> Result<(Model, Vec<String>)> {
    let mut notes = Vec::new();
    let (loaded, onnx_weights) = match onnx_file(model) {
        Some(path) => {
            let imported = import_onnx(path)?;
            for n in &imported.notes {
                tracing::info!("{}: {n}", path.display());
            }
            notes = imported.notes;
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
        (weights, _) => weights_for(&loaded, weights)?,
    };
    let mean = match &loaded.spec.input.mean_file {
        Some(f) => Some(mean_image(&loaded, f)?),
        None => None,
    };
    let names: Vec<String> = match weights {
        WeightsSource::File(_) => tensors.keys().cloned().collect(),
        _ => vec![],
    };
    let spec_name = loaded.spec.name.clone();
    let model = Model::from_parts(loaded, tensors, origin, mean, place).map_err(|e| match e {
        // a weights file for another network: say which built-in spec it looks like
        Error::Weights { path, msg } if !names.is_empty() => {
            let hint = match look_alike(&names) {
                Some((best, hit, of)) if best != spec_name => format!(
                    "; its tensor names look like the built-in spec `{best}` ({hit} of {of} match): try --model {best}"
                ),
                _ => String::new(),
            };
            Error::Weights {
                path,
                msg: format!("{msg}{hint}"),
            }
        }
        e => e,
    })?;
    Ok((model, notes))
}

/// The built-in spec whose tensor names best match `names`: `(spec, matching, of the
/// spec's)`, when at least half of the spec's names are there.
pub fn look_alike(names: &[String]) -> Option<(String, usize, usize)> {
    let have: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    crate::model::spec::builtin_names()
        .into_iter()
        .filter_map(|n| {
            let spec = LoadedSpec::resolve(n).ok()?.spec;
            let want = spec.tensor_names();
            let hit = want.iter().filter(|w| have.contains(w.as_str())).count();
            (!want.is_empty()).then_some((n.to_string(), hit, want.len()))
        })
        // the most matches, then the closest in size
        .max_by(|a, b| {
            (a.1 * 1000 / a.2)
                .cmp(&(b.1 * 1000 / b.2))
                .then(b.2.abs_diff(names.len()).cmp(&a.2.abs_diff(names.len())))
        })
        .filter(|(_, hit, of)| *hit * 2 >= *of)
}

/// The tensors `weights` names for `loaded`, and where they came from.
fn weights_for(
    loaded: &LoadedSpec,
    weights: &WeightsSource,
) -> Result<(weights::TensorMap, String)> {
    Ok(match weights {
        WeightsSource::Random(seed) => (
            weights::random_weights(&loaded.spec, *seed)?,
            format!("random:{seed}"),
        ),
        WeightsSource::File(p) => (read_weights(p)?, p.display().to_string()),
        WeightsSource::Default => match loaded.spec.weights.as_deref().and_then(|w| loaded.resolve_path(w)) {
            Some(p) => (read_weights(&p)?, p.display().to_string()),
            None => match BUILTIN_WEIGHTS.iter().find(|(n, _)| *n == loaded.spec.name && loaded.dir.is_none()) {
                Some((n, bytes)) => (
                    candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?,
                    format!("built-in weights of `{n}`"),
                ),
                // pretrained weights that `treevis models fetch` got
                None => match crate::fetch::fetched_weights(&loaded.spec.name).filter(|_| loaded.dir.is_none()) {
                    Some(p) => (read_weights(&p)?, p.display().to_string()),
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
    let imported = crate::onnx::import::import(&m, &name)?;
    weights::check_finite(path, &imported.tensors)?;
    Ok(imported)
}

/// Reads every tensor of a weights file: a Caffe `.caffemodel` (by its extension), else
/// by content a PyTorch `.pth` (zip or legacy) or safetensors.
pub fn read_weights(path: &Path) -> Result<TensorMap> {
    if path.extension().is_some_and(|e| e == "caffemodel") {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let raw = crate::caffe::tensors_of_caffemodel(&bytes, &path.display().to_string())?;
        if raw.is_empty() {
            return Err(Error::weights(path, "the file holds no tensors"));
        }
        let map = raw.into_iter().collect();
        weights::check_finite(path, &map)?;
        return Ok(map);
    }
    Ok(torchvision_names(weights::read_weights(path)?))
}

/// Tensor names as today's torchvision modules have them: a `module.` prefix on every name
/// (a `DataParallel` checkpoint) dropped, and the DenseNet names of torchvision's published
/// checkpoints (`denselayer1.norm.1.weight`, which torchvision's loader rewrites) written as
/// the module's (`denselayer1.norm1.weight`).
fn torchvision_names(map: TensorMap) -> TensorMap {
    let strip = !map.is_empty() && map.keys().all(|k| k.starts_with("module."));
    map.into_iter()
        .map(|(k, t)| {
            let k = if strip {
                k["module.".len()..].to_string()
            } else {
                k
            };
            (legacy_densenet_name(&k).unwrap_or(k), t)
        })
        .collect()
}

/// `...denselayerN.{norm,relu,conv}.{1,2}.{param}` -> `...denselayerN.{norm,relu,conv}{1,2}.{param}`.
fn legacy_densenet_name(k: &str) -> Option<String> {
    let parts: Vec<&str> = k.split('.').collect();
    let n = parts.len();
    if n < 4 || !parts[n - 4].starts_with("denselayer") {
        return None;
    }
    let (module, index, param) = (parts[n - 3], parts[n - 2], parts[n - 1]);
    let known = [
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    ];
    if !["norm", "relu", "conv"].contains(&module)
        || !["1", "2"].contains(&index)
        || !known.contains(&param)
    {
        return None;
    }
    Some(format!(
        "{}.{module}{index}.{param}",
        parts[..n - 3].join(".")
    ))
}

/// The spec's mean image (`mean_file`, an `.npy`), centre-cropped to the input size.
fn mean_image(loaded: &LoadedSpec, file: &str) -> Result<Vec<f32>> {
    let path = loaded.resolve_path(file).ok_or_else(|| Error::Spec {
        origin: loaded.spec.name.clone(),
        msg: format!("mean_file `{file}` cannot be resolved for a built-in spec"),
    })?;
    let arr = crate::data::npy::read_f32(&path)?;
    crate::model::crop_mean(loaded, &path, &arr.shape, &arr.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_torchvision_names_are_read_as_the_modules() {
        let t = || candle_core::Tensor::zeros(1, candle_core::DType::F32, &Device::Cpu).unwrap();
        let map: TensorMap = [
            "module.features.denseblock1.denselayer1.norm.1.weight",
            "module.features.denseblock1.denselayer12.conv.2.weight",
            "module.features.norm0.weight",
            "module.classifier.bias",
        ]
        .into_iter()
        .map(|k| (k.to_string(), t()))
        .collect();
        let mut names: Vec<String> = torchvision_names(map).into_keys().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "classifier.bias",
                "features.denseblock1.denselayer1.norm1.weight",
                "features.denseblock1.denselayer12.conv2.weight",
                "features.norm0.weight",
            ]
        );
        // one name without the prefix: nothing is stripped
        let map: TensorMap = [("module.a".to_string(), t()), ("b".to_string(), t())]
            .into_iter()
            .collect();
        assert!(torchvision_names(map).contains_key("module.a"));
        assert_eq!(legacy_densenet_name("features.conv0.weight"), None);
    }
}
