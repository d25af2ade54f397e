//! Caffe import: a deploy `.prototxt` (text format; current `layer` or legacy V1 `layers`
//! syntax), a binary `.caffemodel` (NetParameter with blobs, V1 or V2) and a mean
//! `.binaryproto` become a treevis model folder: `model.toml`, `weights.safetensors`,
//! `mean.npy`, `labels.txt`. Layers are wired by their bottoms and tops (branches, Eltwise
//! sums, Concat, BatchNorm + Scale); a layer treevis does not run is an error that names it.

pub mod proto;
pub mod text;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use prost::Message as _;

use crate::error::{Error, Result};
use crate::model::spec::{
    BlobSpec, ColorOrder, Hw, InputSpec, LayerKind, LayerSpec, Pads, PoolSpec, Spec, BUILTIN_LABELS,
};
use text::Message;

/// cnn_treevis's seed multipliers for CaffeNet's blobs (the reference doc's `mult` table).
const CAFFENET_MULT: [(&str, f32); 8] = [
    ("fc8", 1000.0),
    ("fc7", 4096.0),
    ("fc6", 400.0),
    ("conv5", 40.0),
    ("conv4", 40.0),
    ("conv3", 20.0),
    ("conv2", 4.0),
    ("conv1", 1.0),
];

/// CaffeNet's per-channel BGR mean, used when no mean file is given.
const IMAGENET_BGR_MEAN: [f32; 3] = [104.00699, 116.66877, 122.67892];

/// A deploy net as the prototxt describes it.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub name: String,
    /// `[channels, height, width]` of the input.
    pub input: [usize; 3],
    pub input_name: String,
    pub layers: Vec<DeployLayer>,
}

#[derive(Debug, Clone)]
pub struct DeployLayer {
    pub name: String,
    /// The V2 type name (`Convolution`); V1 enum names are translated.
    pub ty: String,
    pub bottoms: Vec<String>,
    pub tops: Vec<String>,
    pub msg: Message,
    pub line: usize,
}

fn bad(origin: &str, line: usize, msg: impl std::fmt::Display) -> Error {
    Error::Input(format!("{origin}:{line}: {msg}"))
}

fn parse_num<T: std::str::FromStr>(origin: &str, v: (&str, usize), what: &str) -> Result<T> {
    v.0.parse().map_err(|_| {
        bad(
            origin,
            v.1,
            format!("`{what}: {}` is not a valid number", v.0),
        )
    })
}

fn dims_of(origin: &str, m: &Message) -> Result<Vec<usize>> {
    m.scalars("dim")
        .map(|d| parse_num(origin, d, "dim"))
        .collect()
}

/// In a deploy net, a layer runs unless a rule keeps it to the TRAIN phase.
fn in_test_phase(l: &Message) -> bool {
    let phase = |m: &Message| m.scalar("phase").map(|p| p.0.to_string());
    let included = l.messages("include").collect::<Vec<_>>();
    if !included.is_empty()
        && !included
            .iter()
            .any(|r| phase(r).as_deref() != Some("TRAIN"))
    {
        return false;
    }
    !l.messages("exclude")
        .any(|r| phase(r).as_deref() == Some("TEST"))
}

/// Reads a deploy prototxt.
pub fn parse_deploy(text: &str, origin: &str) -> Result<Deploy> {
    let m = text::parse(text, origin)?;
    let name = m
        .scalar("name")
        .map(|s| s.0.to_string())
        .unwrap_or_default();
    let v2: Vec<&Message> = m.messages("layer").collect();
    let v1: Vec<&Message> = m.messages("layers").collect();
    if !v2.is_empty() && !v1.is_empty() {
        return Err(bad(
            origin,
            1,
            "mixes `layer` (current) and `layers` (V1) entries",
        ));
    }
    let lines: Vec<usize> = m
        .fields
        .iter()
        .filter(|f| f.name == "layer" || f.name == "layers")
        .map(|f| f.line)
        .collect();
    let mut layers = Vec::new();
    for (i, l) in v2.iter().chain(&v1).enumerate() {
        let line = lines[i];
        if !in_test_phase(l) {
            continue;
        }
        let lname = l
            .scalar("name")
            .map(|s| s.0.to_string())
            .unwrap_or_else(|| format!("layer{i}"));
        let raw = l
            .scalar("type")
            .ok_or_else(|| bad(origin, line, format!("layer `{lname}` has no type")))?
            .0;
        let ty = if v1.is_empty() {
            raw.to_string()
        } else {
            proto::v1_text_type_name(raw)
                .map(str::to_string)
                .unwrap_or_else(|| raw.to_string())
        };
        layers.push(DeployLayer {
            name: lname,
            ty,
            bottoms: l.scalars("bottom").map(|s| s.0.to_string()).collect(),
            tops: l.scalars("top").map(|s| s.0.to_string()).collect(),
            msg: (*l).clone(),
            line,
        });
    }
    // the input: `input` + `input_dim`/`input_shape`, or an Input layer
    let mut input_name = m.scalar("input").map(|s| s.0.to_string());
    let mut dims: Vec<usize> = m
        .scalars("input_dim")
        .map(|d| parse_num(origin, d, "input_dim"))
        .collect::<Result<_>>()?;
    if let Some(s) = m.message("input_shape") {
        dims = dims_of(origin, s)?;
    }
    if let Some(pos) = layers.iter().position(|l| l.ty == "Input") {
        let l = layers.remove(pos);
        let shape = l
            .msg
            .message("input_param")
            .and_then(|p| p.message("shape"))
            .ok_or_else(|| bad(origin, l.line, "Input layer without input_param { shape }"))?;
        dims = dims_of(origin, shape)?;
        input_name = l.tops.first().cloned();
    }
    let input =
        match dims.as_slice() {
            [_, c, h, w] | [c, h, w] if *c > 0 && *h > 0 && *w > 0 => [*c, *h, *w],
            [] => return Err(bad(
                origin,
                1,
                "no input shape: give `input_dim` x4, `input_shape { dim ... }` or an Input layer",
            )),
            d => {
                return Err(bad(
                    origin,
                    1,
                    format!("input shape {d:?} is not [N,] C, H, W"),
                ))
            }
        };
    Ok(Deploy {
        name,
        input,
        input_name: input_name.unwrap_or_else(|| "data".into()),
        layers,
    })
}

fn param<'a>(l: &'a DeployLayer, name: &str) -> Option<&'a Message> {
    l.msg.message(name)
}

/// A `uint32` field that may be repeated (`kernel_size: 3` or twice for h and w), or given
/// as `NAME_h`/`NAME_w`; non-square values are refused.
/// A per-axis size: `name` once (both axes) or twice (`[h, w]`), or `NAME_h` and `NAME_w`
/// (`kernel_h` for `kernel_size`).
fn hw(
    origin: &str,
    l: &DeployLayer,
    p: Option<&Message>,
    name: &str,
    default: Option<usize>,
) -> Result<Hw> {
    let missing = || bad(origin, l.line, format!("layer `{}` needs {name}", l.name));
    let Some(p) = p else {
        return default.map(Hw::square).ok_or_else(missing);
    };
    let vals: Vec<usize> = p
        .scalars(name)
        .map(|v| parse_num(origin, v, name))
        .collect::<Result<_>>()?;
    let base = name.trim_end_matches("_size");
    let axis = |suffix: &str| {
        p.scalar(&format!("{base}{suffix}"))
            .map(|v| parse_num::<usize>(origin, v, name))
            .transpose()
    };
    let (h, w) = (axis("_h")?, axis("_w")?);
    match (vals.as_slice(), h, w) {
        ([], None, None) => default.map(Hw::square).ok_or_else(missing),
        ([v], None, None) => Ok(Hw::square(*v)),
        ([vh, vw], None, None) => Ok(Hw([*vh, *vw])),
        ([], Some(h), Some(w)) => Ok(Hw([h, w])),
        _ => Err(bad(
            origin,
            l.line,
            format!(
                "layer `{}`: {name} takes one or two values, or both {base}_h and {base}_w",
                l.name
            ),
        )),
    }
}

/// Caffe pads each axis alike on both sides.
fn pads(origin: &str, l: &DeployLayer, p: Option<&Message>) -> Result<Pads> {
    let Hw([h, w]) = hw(origin, l, p, "pad", Some(0))?;
    Ok(Pads([h, w, h, w]))
}

fn opt_f32(origin: &str, p: Option<&Message>, name: &str, default: f32) -> Result<f32> {
    match p.and_then(|p| p.scalar(name)) {
        Some(v) => parse_num(origin, v, name),
        None => Ok(default),
    }
}

fn opt_bool(p: Option<&Message>, name: &str, default: bool) -> bool {
    p.and_then(|p| p.scalar(name))
        .map(|v| v.0 == "true" || v.0 == "1")
        .unwrap_or(default)
}

/// A deploy net as a treevis spec: the layers, the tree's blobs (every Convolution and
/// InnerProduct output, after its in-place ReLU), and Caffe's preprocessing.
pub fn to_spec(d: &Deploy, origin: &str, name: &str, mean_file: Option<&str>) -> Result<Spec> {
    Ok(to_graph_spec(d, origin, name, mean_file)?.0)
}

/// [`to_spec`], with the BatchNorm layers and the Scale layers merged into them (`(bn,
/// scale)`, for their weights). Layers are wired by their `bottom`s and `top`s (in-place
/// layers rewrite a blob; Split layers alias it): branches, Eltwise sums and Concat join
/// them. A chain's tree blobs are every Convolution and InnerProduct output after its
/// ReLU, as cnn_treevis had them; a graph's are the reference's section 8 articulation
/// blobs, named by their Caffe tops.
pub fn to_graph_spec(
    d: &Deploy,
    origin: &str,
    name: &str,
    mean_file: Option<&str>,
) -> Result<(Spec, Vec<(String, String)>)> {
    let mut layers: Vec<LayerSpec> = Vec::new();
    let mut blobs: Vec<(String, String)> = Vec::new(); // (blob, layer whose output it is)
                                                       // per Caffe blob: the spec layer writing it now (`data`: the input), and whether it
                                                       // is spatial
    let mut producer: HashMap<String, (String, bool)> = HashMap::new();
    producer.insert(
        d.input_name.clone(),
        (crate::model::graph::INPUT.to_string(), true),
    );
    // per spec layer: the Caffe top its output is known as
    let mut top_of: HashMap<String, String> = HashMap::new();
    let mut merged: Vec<(String, String)> = Vec::new();
    let mut chain = true;
    for l in &d.layers {
        let srcs: Vec<(String, bool)> = l
            .bottoms
            .iter()
            .map(|b| {
                producer.get(b).cloned().ok_or_else(|| {
                    bad(
                        origin,
                        l.line,
                        format!(
                            "layer `{}` reads `{b}`, which no earlier layer writes",
                            l.name
                        ),
                    )
                })
            })
            .collect::<Result<_>>()?;
        if l.ty == "Split" {
            let src = srcs.first().cloned().ok_or_else(|| {
                bad(
                    origin,
                    l.line,
                    format!("Split layer `{}` reads nothing", l.name),
                )
            })?;
            for t in &l.tops {
                producer.insert(t.clone(), src.clone());
            }
            continue;
        }
        let joins = matches!(l.ty.as_str(), "Eltwise" | "Concat");
        if l.tops.len() != 1 || srcs.is_empty() || (!joins && srcs.len() != 1) {
            return Err(bad(
                origin,
                l.line,
                format!(
                    "layer `{}` ({}) has {} inputs and {} outputs; treevis runs layers with one output, and one input except Eltwise and Concat",
                    l.name, l.ty, l.bottoms.len(), l.tops.len()
                ),
            ));
        }
        let prev = layers
            .last()
            .map(|x| x.name.clone())
            .unwrap_or_else(|| crate::model::graph::INPUT.to_string());
        let mut input_names: Vec<String> = srcs.iter().map(|s| s.0.clone()).collect();
        chain &= input_names == [prev.clone()];
        let mut spatial = srcs[0].1;
        if l.ty == "Scale" {
            // folded into the BatchNorm it follows
            let bn = &srcs[0].0;
            let follows_bn = layers
                .iter()
                .any(|x| &x.name == bn && matches!(x.kind, LayerKind::Batchnorm { .. }))
                && !merged.iter().any(|(b, _)| b == bn);
            if !follows_bn {
                return Err(bad(
                    origin,
                    l.line,
                    format!("Scale layer `{}` does not follow a BatchNorm; treevis reads Scale only as BatchNorm's affine part", l.name),
                ));
            }
            let p = param(l, "scale_param");
            if !opt_bool(p, "bias_term", false) {
                return Err(bad(
                    origin,
                    l.line,
                    format!("Scale layer `{}` without a bias is not supported", l.name),
                ));
            }
            merged.push((bn.clone(), l.name.clone()));
            producer.insert(l.tops[0].clone(), (bn.clone(), spatial));
            top_of.insert(bn.clone(), l.tops[0].clone());
            continue;
        }
        let kind = match l.ty.as_str() {
            "BatchNorm" => {
                let p = param(l, "batch_norm_param");
                if p.and_then(|p| p.scalar("use_global_stats")).is_some_and(|v| v.0 == "false") {
                    return Err(bad(origin, l.line, format!("BatchNorm `{}` uses batch statistics (use_global_stats: false); a deploy net uses the stored ones", l.name)));
                }
                LayerKind::Batchnorm {
                    eps: opt_f32(origin, p, "eps", 1e-5)?,
                }
            }
            "Eltwise" => {
                let p = param(l, "eltwise_param");
                let op = p.and_then(|p| p.scalar("operation")).map(|v| v.0).unwrap_or("SUM");
                let coeffs: Vec<f32> = p
                    .map(|p| p.scalars("coeff").map(|v| parse_num(origin, v, "coeff")).collect::<Result<_>>())
                    .transpose()?
                    .unwrap_or_default();
                if (op != "SUM" && op != "1") || coeffs.iter().any(|c| *c != 1.0) {
                    return Err(bad(origin, l.line, format!("Eltwise `{}`: only a plain SUM (coefficients 1) is supported, not {op} {coeffs:?}", l.name)));
                }
                LayerKind::Add(Default::default())
            }
            "Concat" => {
                let p = param(l, "concat_param");
                let axis = p
                    .and_then(|p| p.scalar("axis").or_else(|| p.scalar("concat_dim")))
                    .map(|v| v.0)
                    .unwrap_or("1");
                if axis != "1" {
                    return Err(bad(origin, l.line, format!("Concat `{}` along axis {axis}: treevis concatenates channels (axis 1)", l.name)));
                }
                LayerKind::Concat
            }
            "Convolution" => {
                let p = param(l, "convolution_param");
                if !opt_bool(p, "bias_term", true) {
                    tracing::info!("`{}` has no bias; a zero bias is written", l.name);
                }
                LayerKind::Conv {
                    out: p
                        .and_then(|p| p.scalar("num_output"))
                        .map(|v| parse_num(origin, v, "num_output"))
                        .transpose()?,
                    kernel: hw(origin, l, p, "kernel_size", None)?,
                    stride: hw(origin, l, p, "stride", Some(1))?,
                    pad: pads(origin, l, p)?,
                    dilation: hw(origin, l, p, "dilation", Some(1))?,
                    groups: p
                        .and_then(|p| p.scalar("group"))
                        .map(|v| parse_num(origin, v, "group"))
                        .transpose()?
                        .unwrap_or(1),
                    depthwise: false,
                    weight: None,
                    bias: None,
                    bias_term: true,
                }
            }
            "ReLU" => {
                if opt_f32(origin, param(l, "relu_param"), "negative_slope", 0.0)? != 0.0 {
                    return Err(bad(
                        origin,
                        l.line,
                        format!("layer `{}`: leaky ReLU (negative_slope) is not supported", l.name),
                    ));
                }
                LayerKind::Relu
            }
            "Pooling" => {
                let p = param(l, "pooling_param");
                let method = p.and_then(|p| p.scalar("pool")).map(|v| v.0).unwrap_or("MAX");
                let global = opt_bool(p, "global_pooling", false);
                let round = p.and_then(|p| p.scalar("round_mode")).map(|v| v.0).unwrap_or("CEIL");
                if global {
                    match method {
                        "AVE" | "1" => LayerKind::AdaptiveAvgpool { output: [1, 1] },
                        _ => return Err(bad(origin, l.line, format!("layer `{}`: global {method} pooling is not supported", l.name))),
                    }
                } else {
                    let spec = PoolSpec {
                        kernel: hw(origin, l, p, "kernel_size", None)?,
                        stride: hw(origin, l, p, "stride", Some(1))?,
                        pad: pads(origin, l, p)?,
                        ceil: round != "FLOOR" && round != "1",
                        count_include_pad: true,
                    };
                    match method {
                        "MAX" | "0" => LayerKind::Maxpool(spec),
                        "AVE" | "1" => LayerKind::Avgpool(spec),
                        m => return Err(bad(origin, l.line, format!("layer `{}`: {m} pooling is not supported", l.name))),
                    }
                }
            }
            "LRN" => {
                let p = param(l, "lrn_param");
                let region = p.and_then(|p| p.scalar("norm_region")).map(|v| v.0).unwrap_or("ACROSS_CHANNELS");
                if region != "ACROSS_CHANNELS" && region != "0" {
                    return Err(bad(origin, l.line, format!("layer `{}`: LRN within channels is not supported", l.name)));
                }
                LayerKind::Lrn {
                    size: p
                        .and_then(|p| p.scalar("local_size"))
                        .map(|v| parse_num(origin, v, "local_size"))
                        .transpose()?
                        .unwrap_or(5),
                    alpha: opt_f32(origin, p, "alpha", 1.0)?,
                    beta: opt_f32(origin, p, "beta", 0.75)?,
                    k: opt_f32(origin, p, "k", 1.0)?,
                }
            }
            "InnerProduct" => {
                let p = param(l, "inner_product_param");
                if opt_bool(p, "transpose", false) {
                    return Err(bad(origin, l.line, format!("layer `{}`: transposed InnerProduct is not supported", l.name)));
                }
                if let Some(a) = p.and_then(|p| p.scalar("axis")) {
                    if a.0 != "1" {
                        return Err(bad(origin, l.line, format!("layer `{}`: InnerProduct axis {} is not supported", l.name, a.0)));
                    }
                }
                if spatial {
                    let f = format!("{}_flatten", l.name);
                    let inputs = (!chain).then(|| input_names.clone());
                    layers.push(LayerSpec {
                        name: f.clone(),
                        inputs,
                        kind: LayerKind::Flatten,
                    });
                    input_names = vec![f];
                    spatial = false;
                }
                LayerKind::Linear {
                    out: p
                        .and_then(|p| p.scalar("num_output"))
                        .map(|v| parse_num(origin, v, "num_output"))
                        .transpose()?,
                    weight: None,
                    bias: None,
                    bias_term: true,
                }
            }
            "Dropout" => LayerKind::Dropout {
                p: opt_f32(origin, param(l, "dropout_param"), "dropout_ratio", 0.5)?,
            },
            "Softmax" => LayerKind::Softmax,
            "Flatten" => {
                spatial = false;
                LayerKind::Flatten
            }
            other => {
                return Err(bad(
                    origin,
                    l.line,
                    format!(
                        "layer `{}` has type `{other}`, which treevis does not run (it runs Convolution, ReLU, Pooling, LRN, InnerProduct, BatchNorm + Scale, Eltwise SUM, Concat, Split, Dropout, Softmax, Flatten; use a deploy net)",
                        l.name
                    ),
                ))
            }
        };
        match &kind {
            LayerKind::Conv { .. } | LayerKind::Linear { .. } => {
                blobs.push((l.tops[0].clone(), l.name.clone()));
            }
            LayerKind::Relu => {
                // the blob of the layer the ReLU reads (in place: rewrites) is its
                // post-ReLU output
                if let Some(b) = blobs.iter_mut().rev().find(|b| b.0 == l.bottoms[0]) {
                    b.1 = l.name.clone();
                }
            }
            _ => {}
        }
        if layers.iter().any(|x| x.name == l.name) {
            return Err(bad(
                origin,
                l.line,
                format!("layer `{}` is defined twice", l.name),
            ));
        }
        let prev = layers
            .last()
            .map(|x| x.name.clone())
            .unwrap_or_else(|| crate::model::graph::INPUT.to_string());
        let inputs = (input_names != [prev]).then_some(input_names);
        if matches!(kind, LayerKind::Linear { .. } | LayerKind::Flatten) {
            spatial = false;
        }
        layers.push(LayerSpec {
            name: l.name.clone(),
            inputs,
            kind,
        });
        producer.insert(l.tops[0].clone(), (l.name.clone(), spatial));
        top_of.insert(l.name.clone(), l.tops[0].clone());
    }
    if blobs.is_empty() {
        return Err(Error::Input(format!(
            "{origin}: the net has no Convolution or InnerProduct layer"
        )));
    }
    if !chain {
        // section 8's articulation blobs, named by their Caffe tops; a final Softmax is not
        // part of the tree (the labels are the softmax of the logits anyway)
        let mut g = Spec {
            name: name.to_string(),
            description: String::new(),
            labels: None,
            weights: None,
            input: crate::model::zoo::torchvision_input(),
            layers: layers.clone(),
            blobs: vec![],
        };
        if g.layers
            .last()
            .is_some_and(|l| matches!(l.kind, LayerKind::Softmax))
        {
            g.layers.pop();
        }
        let names: Vec<String> = g
            .layers
            .iter()
            .map(|l| {
                top_of
                    .get(&l.name)
                    .cloned()
                    .unwrap_or_else(|| l.name.clone())
            })
            .collect();
        let scopes = vec![vec![]; g.layers.len()];
        let found = crate::model::graph::tree_blobs(&g, &scopes, &names)
            .map_err(|m| Error::Input(format!("{origin}: {m}")))?;
        blobs = found.into_iter().rev().map(|b| (b.name, b.layer)).collect();
    }
    let caffenet = blobs.len() == CAFFENET_MULT.len()
        && blobs
            .iter()
            .all(|(b, _)| CAFFENET_MULT.iter().any(|(n, _)| n == b));
    let blobs: Vec<BlobSpec> = blobs
        .iter()
        .rev()
        .map(|(b, layer)| BlobSpec {
            name: b.clone(),
            layer: layer.clone(),
            mult: if caffenet {
                CAFFENET_MULT
                    .iter()
                    .find(|(n, _)| n == b)
                    .map(|m| m.1)
                    .unwrap_or(1.0)
            } else {
                1.0
            },
            below: None,
        })
        .collect();
    if d.input[0] != 3 {
        return Err(Error::Input(format!(
            "{origin}: the input has {} channels; treevis studies colour images (3)",
            d.input[0]
        )));
    }
    Ok((
        Spec {
            name: name.to_string(),
            description: format!(
                "imported from Caffe ({})",
                if d.name.is_empty() { origin } else { &d.name }
            ),
            labels: Some("labels.txt".into()),
            weights: Some("weights.safetensors".into()),
            input: InputSpec {
                size: [d.input[1], d.input[2]],
                color: ColorOrder::Bgr,
                scale: 255.0,
                mean: IMAGENET_BGR_MEAN,
                std: [1.0; 3],
                resize: None,
                mean_file: mean_file.map(str::to_string),
            },
            layers,
            blobs,
        },
        merged,
    ))
}

/// Reads a binary `.caffemodel`: every layer's blobs, by layer name.
pub fn read_caffemodel(
    bytes: &[u8],
    origin: &str,
) -> Result<HashMap<String, Vec<proto::BlobProto>>> {
    let net = proto::NetParameter::decode(bytes)
        .map_err(|e| Error::weights(origin, format!("not a Caffe NetParameter ({e})")))?;
    if net.layer.is_empty() && net.layers.is_empty() {
        return Err(Error::weights(
            origin,
            "holds no layers (is it a caffemodel?)",
        ));
    }
    let mut out = HashMap::new();
    for l in net.layer.into_iter().filter(|l| !l.blobs.is_empty()) {
        out.insert(l.name.unwrap_or_default(), l.blobs);
    }
    for l in net.layers.into_iter().filter(|l| !l.blobs.is_empty()) {
        out.entry(l.name.unwrap_or_default()).or_insert(l.blobs);
    }
    Ok(out)
}

/// Every layer's parameters of a `.caffemodel` as `LAYER.weight` and `LAYER.bias`, shaped
/// as PyTorch shapes them (V1's 4-d inner products and biases squeezed), so that a spec
/// with Caffe's layer names (the built-in `caffenet`) takes a caffemodel as `--weights`.
pub fn tensors_of_caffemodel(bytes: &[u8], origin: &str) -> Result<Vec<(String, Tensor)>> {
    let mut out = Vec::new();
    for (layer, bl) in read_caffemodel(bytes, origin)? {
        for (i, b) in bl.into_iter().enumerate().take(2) {
            let dims = b.dims();
            let v1_ip = b.shape.is_none() && dims[..2] == [1, 1];
            let v = b.into_values();
            let shape: Vec<usize> = if i == 1 || v1_ip {
                // biases, and V1 inner products [1, 1, out, in]
                let nz: Vec<usize> = dims.iter().copied().skip_while(|&d| d == 1).collect();
                if nz.is_empty() {
                    vec![1]
                } else {
                    nz
                }
            } else {
                dims
            };
            if shape.iter().product::<usize>() != v.len() {
                return Err(Error::weights(
                    origin,
                    format!("`{layer}`: {} values for shape {shape:?}", v.len()),
                ));
            }
            let name = format!("{layer}.{}", if i == 0 { "weight" } else { "bias" });
            out.push((name, Tensor::from_vec(v, shape, &Device::Cpu)?));
        }
    }
    Ok(out)
}

/// The spec's weight tensors, from the caffemodel's blobs (PyTorch layouts, which are
/// Caffe's: conv `[out, in/groups, kh, kw]`, inner product `[out, in]`).
pub fn weights_for(
    spec: &Spec,
    merged: &[(String, String)],
    mut blobs: HashMap<String, Vec<proto::BlobProto>>,
    origin: &str,
) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for l in &spec.layers {
        if let LayerKind::Batchnorm { .. } = l.kind {
            for (k, t) in batchnorm_tensors(&l.name, merged, &mut blobs, origin)? {
                out.insert(k, t);
            }
            continue;
        }
        let is_conv = matches!(l.kind, LayerKind::Conv { .. });
        if !is_conv && !matches!(l.kind, LayerKind::Linear { .. }) {
            continue;
        }
        let mut bl = blobs
            .remove(&l.name)
            .ok_or_else(|| Error::weights(origin, format!("no weights for layer `{}`", l.name)))?
            .into_iter();
        let w = bl
            .next()
            .ok_or_else(|| Error::weights(origin, format!("no weights for layer `{}`", l.name)))?;
        let dims = w.dims();
        let values = w.into_values();
        // V1 blobs are 4-d (inner products as [1, 1, out, in]); V2 give their own shape
        let shape: Vec<usize> = if is_conv {
            if dims.len() != 4 {
                return Err(Error::weights(
                    origin,
                    format!("`{}`: conv weights of shape {dims:?}", l.name),
                ));
            }
            dims.clone()
        } else {
            let nz: Vec<usize> = dims.iter().copied().skip_while(|&d| d == 1).collect();
            match nz.as_slice() {
                [o, i] => vec![*o, *i],
                _ => {
                    return Err(Error::weights(
                        origin,
                        format!("`{}`: inner product weights of shape {dims:?}", l.name),
                    ))
                }
            }
        };
        if shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(values.len()) {
            return Err(Error::weights(
                origin,
                format!("`{}`: {} values for shape {shape:?}", l.name, values.len()),
            ));
        }
        let outc = shape[0];
        // the deploy file and the caffemodel must describe one net
        if let LayerKind::Conv { out: Some(o), .. } | LayerKind::Linear { out: Some(o), .. } =
            l.kind
        {
            if o != outc {
                return Err(Error::weights(
                    origin,
                    format!(
                        "`{}`: the deploy file says num_output {o}, the caffemodel has {outc} outputs",
                        l.name
                    ),
                ));
            }
        }
        let bias = match bl.next() {
            Some(b) => {
                let v = b.into_values();
                if v.len() != outc {
                    return Err(Error::weights(
                        origin,
                        format!("`{}`: {} bias values for {outc} outputs", l.name, v.len()),
                    ));
                }
                v
            }
            None => vec![0.0; outc],
        };
        out.insert(
            format!("{}.weight", l.name),
            Tensor::from_vec(values, shape, &Device::Cpu)?,
        );
        out.insert(
            format!("{}.bias", l.name),
            Tensor::from_vec(bias, outc, &Device::Cpu)?,
        );
    }
    Ok(out)
}

/// A BatchNorm's four tensors: Caffe keeps the running mean and variance multiplied by a
/// scale factor (its third blob; 0 means 0), and gamma and beta in the Scale layer after it
/// (`merged`; none: 1 and 0).
fn batchnorm_tensors(
    bn: &str,
    merged: &[(String, String)],
    blobs: &mut HashMap<String, Vec<proto::BlobProto>>,
    origin: &str,
) -> Result<Vec<(String, Tensor)>> {
    let missing = |what: &str| Error::weights(origin, format!("BatchNorm `{bn}`: no {what}"));
    let mut b = blobs
        .remove(bn)
        .ok_or_else(|| missing("blobs"))?
        .into_iter();
    let (mean, var, factor) = match (b.next(), b.next(), b.next()) {
        (Some(m), Some(v), Some(f)) => (m.into_values(), v.into_values(), f.into_values()),
        _ => return Err(missing("mean, variance and scale factor (three blobs)")),
    };
    let c = mean.len();
    if var.len() != c || factor.len() != 1 {
        return Err(Error::weights(
            origin,
            format!(
                "BatchNorm `{bn}`: {c} means, {} variances and {} scale factors (want one)",
                var.len(),
                factor.len()
            ),
        ));
    }
    let f = if factor[0] == 0.0 {
        0.0
    } else {
        1.0 / factor[0]
    };
    let (gamma, beta) = match merged.iter().find(|(b, _)| b == bn) {
        Some((_, sc)) => {
            let mut s = blobs
                .remove(sc)
                .ok_or_else(|| Error::weights(origin, format!("Scale `{sc}`: no blobs")))?
                .into_iter();
            match (s.next(), s.next()) {
                (Some(g), Some(b)) => (g.into_values(), b.into_values()),
                _ => {
                    return Err(Error::weights(
                        origin,
                        format!("Scale `{sc}`: no scale and bias"),
                    ))
                }
            }
        }
        None => (vec![1.0; c], vec![0.0; c]),
    };
    if gamma.len() != c || beta.len() != c {
        return Err(Error::weights(
            origin,
            format!(
                "BatchNorm `{bn}`: {c} channels but {} scales and {} biases",
                gamma.len(),
                beta.len()
            ),
        ));
    }
    let t = |v: Vec<f32>| Tensor::from_vec(v, c, &Device::Cpu);
    Ok(vec![
        (
            format!("{bn}.running_mean"),
            t(mean.iter().map(|m| m * f).collect())?,
        ),
        (
            format!("{bn}.running_var"),
            t(var.iter().map(|v| v * f).collect())?,
        ),
        (format!("{bn}.weight"), t(gamma)?),
        (format!("{bn}.bias"), t(beta)?),
    ])
}

/// Reads a mean `.binaryproto` (a BlobProto `[1, 3, H, W]`, Caffe's BGR order) as `[3, H, W]`.
pub fn read_mean(bytes: &[u8], origin: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let b = proto::BlobProto::decode(bytes)
        .map_err(|e| Error::Input(format!("{origin}: not a Caffe BlobProto ({e})")))?;
    let full = b.dims();
    let dims: Vec<usize> = full.iter().copied().skip_while(|&d| d == 1).collect();
    let v = b.into_values();
    match dims.as_slice() {
        [3, h, w] if h * w * 3 == v.len() => Ok((dims, v)),
        _ => Err(Error::Input(format!(
            "{origin}: a mean is [1, 3, H, W] with H*W*3 values; got shape {full:?} and {} values",
            v.len()
        ))),
    }
}

/// What `treevis models import-caffe` writes.
pub struct Imported {
    pub dir: PathBuf,
    pub spec: Spec,
    pub tensors: usize,
}

/// Imports a Caffe net into `out` (a model folder `--model` takes).
pub fn import(
    deploy: &Path,
    caffemodel: &Path,
    mean: Option<&Path>,
    labels: Option<&Path>,
    out: &Path,
) -> Result<Imported> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    let text = String::from_utf8(read(deploy)?)
        .map_err(|_| Error::Input(format!("{}: not UTF-8 text", deploy.display())))?;
    let origin = deploy.display().to_string();
    let d = parse_deploy(&text, &origin)?;
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imported".into());
    let (spec, merged) = to_graph_spec(&d, &origin, &name, mean.map(|_| "mean.npy"))?;
    let blobs = read_caffemodel(&read(caffemodel)?, &caffemodel.display().to_string())?;
    let tensors = weights_for(&spec, &merged, blobs, &caffemodel.display().to_string())?;
    // the weights must fit the layers before anything is written
    crate::model::net::Net::build(spec.clone(), tensors.clone(), &Device::Cpu, caffemodel)
        .map_err(|e| {
            Error::Input(format!(
                "{} does not fit its weights: {e}",
                deploy.display()
            ))
        })?;
    // a failure from here on leaves no half-written model folder behind
    let existed = out.exists();
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let written = write_model(deploy, caffemodel, mean, labels, out, spec, &tensors, &read);
    if written.is_err() && !existed {
        let _ = std::fs::remove_dir_all(out);
    }
    written
}

/// The files of an imported model, into `out`.
#[allow(clippy::too_many_arguments)]
fn write_model(
    deploy: &Path,
    caffemodel: &Path,
    mean: Option<&Path>,
    labels: Option<&Path>,
    out: &Path,
    mut spec: Spec,
    tensors: &crate::model::weights::TensorMap,
    read: &dyn Fn(&Path) -> Result<Vec<u8>>,
) -> Result<Imported> {
    if let Some(m) = mean {
        let (dims, v) = read_mean(&read(m)?, &m.display().to_string())?;
        let [h, w] = spec.input.size;
        if dims[1] < h || dims[2] < w {
            return Err(Error::Input(format!(
                "{}: the mean is {}x{}, smaller than the input {h}x{w}",
                m.display(),
                dims[1],
                dims[2]
            )));
        }
        let plane = dims[1] * dims[2];
        for c in 0..3 {
            spec.input.mean[c] = v[c * plane..(c + 1) * plane].iter().sum::<f32>() / plane as f32;
        }
        crate::data::npy::write_f32(&out.join("mean.npy"), &dims, &v)?;
    }
    // labels: the given file, else ImageNet's for 1000 classes
    let classes = spec
        .layers
        .iter()
        .rev()
        .find(|l| matches!(l.kind, LayerKind::Linear { .. }))
        .and_then(|l| tensors.get(&format!("{}.weight", l.name)))
        .map(|t| t.dims()[0]);
    match labels {
        Some(l) => {
            std::fs::copy(l, out.join("labels.txt")).map_err(|e| Error::io(l, e))?;
        }
        None if classes == Some(1000) => {
            let text = BUILTIN_LABELS
                .iter()
                .find(|(n, _)| *n == "imagenet_classes.txt")
                .map(|(_, t)| *t)
                .unwrap_or_default();
            std::fs::write(out.join("labels.txt"), text).map_err(|e| Error::io(out, e))?;
        }
        None => spec.labels = None,
    }
    let toml_text =
        toml::to_string(&spec).map_err(|e| Error::Input(format!("cannot write the spec: {e}")))?;
    let header = format!(
        "# Imported by `treevis models import-caffe` from {} and {}.\n",
        deploy.display(),
        caffemodel.display()
    );
    let spec_path = out.join("model.toml");
    std::fs::write(&spec_path, header + &toml_text).map_err(|e| Error::io(&spec_path, e))?;
    crate::model::weights::write_safetensors(tensors, &out.join("weights.safetensors"))?;
    // what was written must load
    Spec::from_toml(
        &std::fs::read_to_string(&spec_path).map_err(|e| Error::io(&spec_path, e))?,
        &spec_path.display().to_string(),
    )?;
    Ok(Imported {
        dir: out.to_path_buf(),
        spec,
        tensors: tensors.len(),
    })
}
