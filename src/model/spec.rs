//! Model specs: the TOML files under `models/` that say which layers a network has, with
//! every hyper-parameter, how its input is preprocessed, and which blobs form the tree.
//!
//! Channel counts are *not* taken from the spec when weights are loaded (they come from the
//! weight tensors, so a width-reduced net of the same topology loads with the same spec);
//! the `out` fields give the published widths, used to generate random weights.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The specs shipped with treevis, built into the binary: `(name, toml)`.
pub const BUILTIN_SPECS: &[(&str, &str)] = &[
    ("alexnet", include_str!("../../models/alexnet.toml")),
    ("vgg16", include_str!("../../models/vgg16.toml")),
    ("caffenet", include_str!("../../models/caffenet.toml")),
    ("tiny", include_str!("../../models/tiny.toml")),
    ("demo", include_str!("../../models/demo.toml")),
    ("demo-resnet", include_str!("../../models/demo-resnet.toml")),
];

/// Label files shipped with treevis, resolved by file name for built-in specs.
pub const BUILTIN_LABELS: &[(&str, &str)] = &[
    (
        "imagenet_classes.txt",
        include_str!("../../models/imagenet_classes.txt"),
    ),
    (
        "demo_labels.txt",
        include_str!("../../models/demo_labels.txt"),
    ),
];

/// A parsed model spec.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Label file, one class name per line, relative to the spec file.
    #[serde(default)]
    pub labels: Option<String>,
    /// Default weights file, relative to the spec file.
    #[serde(default)]
    pub weights: Option<String>,
    pub input: InputSpec,
    pub layers: Vec<LayerSpec>,
    pub blobs: Vec<BlobSpec>,
}

/// How an image becomes the network's input tensor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// `[height, width]` fed to the network.
    pub size: [usize; 2],
    /// Channel order of the input tensor.
    pub color: ColorOrder,
    /// Pixel values are `0..scale` before mean subtraction (1.0 for torchvision, 255.0 for Caffe).
    pub scale: f32,
    /// Per-channel mean, in the tensor's channel order, on the `0..scale` range.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (1.0 for Caffe).
    #[serde(default = "ones")]
    pub std: [f32; 3],
    /// Resize the shorter side to this, then centre-crop to `size`. Absent: resize to `size`.
    #[serde(default)]
    pub resize: Option<usize>,
    /// Per-pixel mean image (`.npy`, `[3, H0, W0]`, tensor channel order), centre-cropped to
    /// `size`; replaces `mean`. Relative to the spec file.
    #[serde(default)]
    pub mean_file: Option<String>,
}

fn ones() -> [f32; 3] {
    [1.0; 3]
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    Rgb,
    Bgr,
}

/// One node of the network: a layer with its inputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerSpec {
    pub name: String,
    /// The layers whose outputs this layer takes (`"data"`: the network input). Absent: the
    /// layer listed before it (the input for the first), so a chain needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Vec<String>>,
    #[serde(flatten)]
    pub kind: LayerKind,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerKind {
    Conv {
        /// Published output channel count (the weights decide when loaded).
        #[serde(default)]
        out: Option<usize>,
        /// `k` or `[kh, kw]`.
        kernel: Hw,
        #[serde(default)]
        stride: Hw,
        /// `p`, `[ph, pw]` or `[top, left, bottom, right]`.
        #[serde(default, skip_serializing_if = "Pads::is_zero")]
        pad: Pads,
        #[serde(default, skip_serializing_if = "Hw::is_one")]
        dilation: Hw,
        #[serde(default = "one")]
        groups: usize,
        /// One group per input channel (a depthwise convolution), whatever the width;
        /// replaces `groups`.
        #[serde(default, skip_serializing_if = "is_false")]
        depthwise: bool,
        #[serde(default)]
        weight: Option<String>,
        #[serde(default)]
        bias: Option<String>,
        /// Whether the layer has a bias tensor (torchvision's convolutions before a
        /// BatchNorm have none).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias_term: bool,
    },
    Relu,
    /// `min(max(x, min), max)`: ReLU6 is `clip` 0..6, Hardtanh `clip` -1..1.
    Clip {
        min: f32,
        max: f32,
    },
    LeakyRelu {
        #[serde(default = "leaky")]
        alpha: f32,
    },
    Sigmoid,
    Tanh,
    /// `clip(alpha * x + beta, 0, 1)` (PyTorch: alpha 1/6, beta 0.5; ONNX's default 0.2).
    Hardsigmoid {
        #[serde(default = "sixth")]
        alpha: f32,
        #[serde(default = "half")]
        beta: f32,
    },
    /// `x * relu6(x + 3) / 6`.
    Hardswish,
    /// `x * sigmoid(x)`.
    Silu,
    /// `x * Phi(x)` (the exact, erf form).
    Gelu,
    /// Inference batch normalisation: per channel `(x - mean) / sqrt(var + eps) * gamma + beta`,
    /// tensors `NAME.weight`, `.bias`, `.running_mean`, `.running_var` (torchvision's).
    Batchnorm {
        #[serde(default = "bn_eps")]
        eps: f32,
    },
    /// Elementwise sum of the inputs (a residual connection), or of the input and a
    /// constant tensor `NAME.constant`; shapes broadcast (a `[C, 1, 1]` side spreads over
    /// the plane).
    Add(Operand),
    /// `a - b`, elementwise with broadcasting; either side may be the constant.
    Sub(Operand),
    /// `a * b` (a squeeze-and-excitation gate, a layer scale), elementwise with
    /// broadcasting.
    Mul(Operand),
    /// `a / b`, elementwise with broadcasting.
    Div(Operand),
    /// `x` where `x > 0`, else `slope[c] * x`: tensor `NAME.weight` with one slope per
    /// channel (or one for all).
    Prelu,
    /// The inputs stacked along channels.
    Concat,
    /// Passes its input on (an exporter's no-op).
    Identity,
    Maxpool(PoolSpec),
    Avgpool(PoolSpec),
    AdaptiveAvgpool {
        output: [usize; 2],
    },
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        #[serde(default = "onef")]
        k: f32,
    },
    Linear {
        #[serde(default)]
        out: Option<usize>,
        #[serde(default)]
        weight: Option<String>,
        #[serde(default)]
        bias: Option<String>,
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias_term: bool,
    },
    /// Identity at inference; drops with probability `p` while training.
    Dropout {
        #[serde(default = "half")]
        p: f32,
    },
    Flatten,
    Softmax,
}

fn half() -> f32 {
    0.5
}
fn leaky() -> f32 {
    0.01
}
fn sixth() -> f32 {
    1.0 / 6.0
}
fn bn_eps() -> f32 {
    1e-5
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub kernel: Hw,
    /// Default 1 (Caffe's); PyTorch's default is the kernel, and its exporters write it.
    #[serde(default)]
    pub stride: Hw,
    #[serde(default, skip_serializing_if = "Pads::is_zero")]
    pub pad: Pads,
    /// Caffe's rounding (`ceil`) instead of PyTorch's default `floor`.
    #[serde(default)]
    pub ceil: bool,
    /// Average pooling: whether padded cells count in a window's divisor (PyTorch's and
    /// Caffe's default) or only the cells inside the input.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub count_include_pad: bool,
}

impl PoolSpec {
    /// A square window with equal padding.
    pub fn square(kernel: usize, stride: usize, pad: usize, ceil: bool) -> PoolSpec {
        PoolSpec {
            kernel: Hw::square(kernel),
            stride: Hw::square(stride),
            pad: Pads::same(pad),
            ceil,
            count_include_pad: true,
        }
    }
}

/// Which side of a binary op the layer's constant tensor is on.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Left,
    Right,
}

/// The operands of an elementwise binary layer: its inputs, or its one input and the
/// constant tensor `NAME.constant` on `constant`'s side.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Operand {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constant: Option<Side>,
}

/// The largest kernel, stride, dilation or padding a spec may give (larger ones are an
/// error, before any size is computed from them).
pub const MAX_GEOMETRY: usize = 1 << 16;

/// A size per spatial axis, `[h, w]`: written as one integer when both are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Hw(pub [usize; 2]);

impl Hw {
    pub fn square(k: usize) -> Hw {
        Hw([k, k])
    }
    pub fn h(&self) -> usize {
        self.0[0]
    }
    pub fn w(&self) -> usize {
        self.0[1]
    }
    pub fn is_square(&self) -> bool {
        self.0[0] == self.0[1]
    }
    fn is_one(&self) -> bool {
        self.0 == [1, 1]
    }
}

impl Default for Hw {
    fn default() -> Hw {
        Hw([1, 1])
    }
}

impl From<usize> for Hw {
    fn from(k: usize) -> Hw {
        Hw::square(k)
    }
}

impl std::fmt::Display for Hw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_square() {
            write!(f, "{}", self.0[0])
        } else {
            write!(f, "{}x{}", self.0[0], self.0[1])
        }
    }
}

/// Padding `[top, left, bottom, right]`: written as one integer when all four are equal,
/// as `[h, w]` when each axis is padded alike on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Pads(pub [usize; 4]);

impl Pads {
    pub fn same(p: usize) -> Pads {
        Pads([p; 4])
    }
    /// Padding before axis `axis` (0: top, 1: left).
    pub fn begin(&self, axis: usize) -> usize {
        self.0[axis]
    }
    /// Padding after axis `axis` (0: bottom, 1: right).
    pub fn end(&self, axis: usize) -> usize {
        self.0[axis + 2]
    }
    pub fn is_symmetric(&self) -> bool {
        self.0[0] == self.0[2] && self.0[1] == self.0[3]
    }
    pub fn is_uniform(&self) -> bool {
        self.0.iter().all(|&p| p == self.0[0])
    }
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }
}

impl From<usize> for Pads {
    fn from(p: usize) -> Pads {
        Pads::same(p)
    }
}

/// One integer or a list of them, as a spec writes a size.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Sizes {
    One(usize),
    Many(Vec<usize>),
}

impl Serialize for Hw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.is_square() {
            Sizes::One(self.0[0]).serialize(s)
        } else {
            Sizes::Many(self.0.to_vec()).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Hw {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Hw, D::Error> {
        match Sizes::deserialize(d)? {
            Sizes::One(k) => Ok(Hw([k, k])),
            Sizes::Many(v) => match v.as_slice() {
                [h, w] => Ok(Hw([*h, *w])),
                _ => Err(serde::de::Error::custom(format!(
                    "a size is an integer or [h, w], given {} values",
                    v.len()
                ))),
            },
        }
    }
}

impl Serialize for Pads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if self.is_uniform() {
            Sizes::One(self.0[0]).serialize(s)
        } else if self.is_symmetric() {
            Sizes::Many(vec![self.0[0], self.0[1]]).serialize(s)
        } else {
            Sizes::Many(self.0.to_vec()).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Pads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Pads, D::Error> {
        match Sizes::deserialize(d)? {
            Sizes::One(p) => Ok(Pads([p; 4])),
            Sizes::Many(v) => match v.as_slice() {
                [h, w] => Ok(Pads([*h, *w, *h, *w])),
                [t, l, b, r] => Ok(Pads([*t, *l, *b, *r])),
                _ => Err(serde::de::Error::custom(format!(
                    "padding is an integer, [h, w] or [top, left, bottom, right], given {} values",
                    v.len()
                ))),
            },
        }
    }
}

fn one() -> usize {
    1
}
fn onef() -> f32 {
    1.0
}

/// A blob of the tree: a named activation, the output of `layer`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BlobSpec {
    pub name: String,
    pub layer: String,
    /// Seed multiplier (`mult` table of the reference).
    #[serde(default = "onef")]
    pub mult: f32,
    /// The blob whose channels are this blob's children; default: the next blob listed.
    #[serde(default)]
    pub below: Option<String>,
}

impl LayerKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerKind::Conv { .. } => "conv",
            LayerKind::Relu => "relu",
            LayerKind::Maxpool(_) => "maxpool",
            LayerKind::Avgpool(_) => "avgpool",
            LayerKind::AdaptiveAvgpool { .. } => "adaptive_avgpool",
            LayerKind::Lrn { .. } => "lrn",
            LayerKind::Linear { .. } => "linear",
            LayerKind::Dropout { .. } => "dropout",
            LayerKind::Flatten => "flatten",
            LayerKind::Softmax => "softmax",
            LayerKind::Clip { .. } => "clip",
            LayerKind::LeakyRelu { .. } => "leaky_relu",
            LayerKind::Sigmoid => "sigmoid",
            LayerKind::Tanh => "tanh",
            LayerKind::Hardsigmoid { .. } => "hardsigmoid",
            LayerKind::Hardswish => "hardswish",
            LayerKind::Silu => "silu",
            LayerKind::Gelu => "gelu",
            LayerKind::Batchnorm { .. } => "batchnorm",
            LayerKind::Add(_) => "add",
            LayerKind::Sub(_) => "sub",
            LayerKind::Mul(_) => "mul",
            LayerKind::Div(_) => "div",
            LayerKind::Prelu => "prelu",
            LayerKind::Concat => "concat",
            LayerKind::Identity => "identity",
        }
    }

    /// How many inputs the layer takes (`None`: two or more).
    pub fn arity(&self) -> Option<usize> {
        match self {
            LayerKind::Add(o) | LayerKind::Sub(o) | LayerKind::Mul(o) | LayerKind::Div(o)
                if o.constant.is_some() =>
            {
                Some(1)
            }
            LayerKind::Sub(_) | LayerKind::Mul(_) | LayerKind::Div(_) => Some(2),
            LayerKind::Add(_) | LayerKind::Concat => None,
            _ => Some(1),
        }
    }
}

impl LayerSpec {
    /// A chain layer (its input is the layer before it).
    pub fn new(name: impl Into<String>, kind: LayerKind) -> LayerSpec {
        LayerSpec {
            name: name.into(),
            inputs: None,
            kind,
        }
    }

    /// A layer taking the outputs of `inputs`.
    pub fn with_inputs(name: impl Into<String>, inputs: &[&str], kind: LayerKind) -> LayerSpec {
        LayerSpec {
            name: name.into(),
            inputs: Some(inputs.iter().map(|s| s.to_string()).collect()),
            kind,
        }
    }
}

/// Names of every built-in spec: the TOML ones and the generated torchvision graphs.
pub fn builtin_names() -> Vec<&'static str> {
    BUILTIN_SPECS
        .iter()
        .map(|(n, _)| *n)
        .chain(super::zoo::ZOO.iter().map(|(n, _)| *n))
        .collect()
}

/// A spec and the folder its relative paths are resolved against (`None`: built in).
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    pub spec: Spec,
    pub dir: Option<PathBuf>,
}

/// Layers of a type without fields (`relu`, `flatten`, ...) take only `name`, `type` and
/// `inputs`: serde lets an internally tagged unit variant ignore anything else, so a
/// misplaced `inplace = true` or `kernel = 3` would pass in silence.
fn unit_layers_take_no_fields(text: &str) -> std::result::Result<(), String> {
    const UNIT: [&str; 11] = [
        "relu",
        "sigmoid",
        "tanh",
        "hardswish",
        "silu",
        "gelu",
        "prelu",
        "concat",
        "identity",
        "flatten",
        "softmax",
    ];
    let Ok(v) = toml::from_str::<toml::Value>(text) else {
        return Ok(());
    };
    let layers = v.get("layers").and_then(|l| l.as_array());
    for l in layers.into_iter().flatten().filter_map(|l| l.as_table()) {
        let Some(ty) = l.get("type").and_then(|t| t.as_str()) else {
            continue;
        };
        if !UNIT.contains(&ty) {
            continue;
        }
        if let Some(k) = l
            .keys()
            .find(|k| !["name", "type", "inputs"].contains(&k.as_str()))
        {
            let name = l.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            return Err(format!(
                "{ty} layer `{name}`: unknown field `{k}` (a {ty} layer takes only name, type and inputs)"
            ));
        }
    }
    Ok(())
}

/// A layer's numbers that NaN, infinity or a value out of range would turn into a silent
/// all-NaN or all-zero output.
fn check_numbers(l: &LayerSpec) -> std::result::Result<(), String> {
    let bad = |what: String| Err(format!("{} layer `{}`: {what}", l.kind.type_name(), l.name));
    let floats: Vec<(&str, f32)> = match &l.kind {
        LayerKind::Clip { min, max } => vec![("min", *min), ("max", *max)],
        LayerKind::LeakyRelu { alpha } => vec![("alpha", *alpha)],
        LayerKind::Hardsigmoid { alpha, beta } => vec![("alpha", *alpha), ("beta", *beta)],
        LayerKind::Batchnorm { eps } => vec![("eps", *eps)],
        LayerKind::Lrn { alpha, beta, k, .. } => {
            vec![("alpha", *alpha), ("beta", *beta), ("k", *k)]
        }
        LayerKind::Dropout { p } => vec![("p", *p)],
        _ => vec![],
    };
    if let Some((name, v)) = floats.iter().find(|(_, v)| !v.is_finite()) {
        return bad(format!("{name} = {v} is not a finite number"));
    }
    match &l.kind {
        LayerKind::Conv { out: Some(0), .. } | LayerKind::Linear { out: Some(0), .. } => {
            bad("out must be at least 1".into())
        }
        LayerKind::Clip { min, max } if min > max => bad(format!("min {min} is above max {max}")),
        LayerKind::Batchnorm { eps } if *eps < 0.0 => bad(format!("eps {eps} is negative")),
        LayerKind::Lrn { k, .. } if *k <= 0.0 => bad(format!("k = {k} must be positive")),
        LayerKind::Dropout { p } if !(0.0..1.0).contains(p) => {
            bad(format!("p = {p} must be in [0, 1)"))
        }
        _ => Ok(()),
    }
}

impl Spec {
    /// Parses and validates a spec from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Spec> {
        let spec: Spec = toml::from_str(text).map_err(|e| Error::Spec {
            origin: origin.to_string(),
            msg: e.to_string().trim().replace('\n', " "),
        })?;
        unit_layers_take_no_fields(text).map_err(|msg| Error::Spec {
            origin: origin.to_string(),
            msg,
        })?;
        spec.validate().map_err(|msg| Error::Spec {
            origin: origin.to_string(),
            msg,
        })?;
        Ok(spec)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for l in &self.layers {
            if !seen.insert(l.name.as_str()) {
                return Err(format!("layer `{}` is defined twice", l.name));
            }
            check_numbers(l)?;
            match &l.kind {
                LayerKind::Conv {
                    kernel,
                    stride,
                    pad,
                    dilation,
                    groups,
                    ..
                } => {
                    let sizes = kernel.0.iter().chain(&stride.0).chain(&dilation.0);
                    if sizes.clone().any(|&v| v == 0) || *groups == 0 {
                        return Err(format!(
                            "conv layer `{}`: kernel, stride, dilation and groups must be >= 1",
                            l.name
                        ));
                    }
                    if sizes.chain(&pad.0).any(|&v| v > MAX_GEOMETRY) || *groups > MAX_GEOMETRY {
                        return Err(format!(
                            "conv layer `{}`: kernel, stride, dilation, pad and groups must be at most {MAX_GEOMETRY}",
                            l.name
                        ));
                    }
                }
                LayerKind::Maxpool(p) | LayerKind::Avgpool(p) => {
                    if p.kernel.0.iter().chain(&p.stride.0).any(|&v| v == 0) {
                        return Err(format!(
                            "pool layer `{}`: kernel and stride must be >= 1",
                            l.name
                        ));
                    }
                    if p.kernel
                        .0
                        .iter()
                        .chain(&p.stride.0)
                        .any(|&v| v > MAX_GEOMETRY)
                    {
                        return Err(format!(
                            "pool layer `{}`: kernel and stride must be at most {MAX_GEOMETRY}",
                            l.name
                        ));
                    }
                    if (0..2).any(|a| p.pad.begin(a).max(p.pad.end(a)) * 2 > p.kernel.0[a]) {
                        return Err(format!(
                            "pool layer `{}`: pad must be at most half the kernel",
                            l.name
                        ));
                    }
                }
                LayerKind::Lrn { size, .. } if *size == 0 || size % 2 == 0 => {
                    return Err(format!("lrn layer `{}`: size must be odd", l.name));
                }
                LayerKind::AdaptiveAvgpool { output } if output[0] == 0 || output[1] == 0 => {
                    return Err(format!(
                        "adaptive_avgpool `{}`: output must be >= 1",
                        l.name
                    ));
                }
                LayerKind::Softmax
                    if self.layers.last().is_some_and(|last| last.name != l.name) =>
                {
                    return Err(format!("softmax `{}` must be the last layer", l.name));
                }
                _ => {}
            }
        }
        if self.input.size[0] == 0 || self.input.size[1] == 0 {
            return Err("input.size must be positive".into());
        }
        let inp = &self.input;
        if inp.resize == Some(0) {
            return Err("input.resize must be at least 1 (or absent)".into());
        }
        if !(inp.scale.is_finite() && inp.scale > 0.0) {
            return Err(format!(
                "input.scale = {} must be a positive number",
                inp.scale
            ));
        }
        if let Some(m) = inp.mean.iter().find(|m| !m.is_finite()) {
            return Err(format!("input.mean holds {m}, not a finite number"));
        }
        if let Some(sd) = inp.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(format!(
                "input.std holds {sd}: every std must be a positive number (it divides)"
            ));
        }
        if self.blobs.is_empty() {
            return Err("no [[blobs]]: the tree needs at least one blob".into());
        }
        let mut blob_names = std::collections::HashSet::new();
        for b in &self.blobs {
            if !blob_names.insert(b.name.as_str()) {
                return Err(format!("blob `{}` is defined twice", b.name));
            }
            if !(b.mult.is_finite() && b.mult != 0.0) {
                return Err(format!(
                    "blob `{}`: mult = {} must be a finite, non-zero number",
                    b.name, b.mult
                ));
            }
            if b.name.contains(['/', ':']) || b.name.is_empty() {
                return Err(format!(
                    "blob name `{}` must be non-empty without `/` or `:`",
                    b.name
                ));
            }
            let Some(layer) = self.layers.iter().find(|l| l.name == b.layer) else {
                return Err(format!(
                    "blob `{}` names layer `{}`, which is not in [[layers]]",
                    b.name, b.layer
                ));
            };
            if matches!(layer.kind, LayerKind::Softmax) {
                return Err(format!(
                    "blob `{}`: a softmax output cannot be a tree blob (use the logits)",
                    b.name
                ));
            }
        }
        for b in &self.blobs {
            if let Some(below) = &b.below {
                if !blob_names.contains(below.as_str()) {
                    return Err(format!(
                        "blob `{}`: `below = \"{below}\"` is not a blob",
                        b.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// The names of the weight tensors the spec's layers take.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for l in &self.layers {
            let named = |given: &Option<String>, suffix: &str| {
                given
                    .clone()
                    .unwrap_or_else(|| format!("{}.{suffix}", l.name))
            };
            match &l.kind {
                LayerKind::Conv {
                    weight,
                    bias,
                    bias_term,
                    ..
                }
                | LayerKind::Linear {
                    weight,
                    bias,
                    bias_term,
                    ..
                } => {
                    out.push(named(weight, "weight"));
                    if *bias_term {
                        out.push(named(bias, "bias"));
                    }
                }
                LayerKind::Batchnorm { .. } => {
                    for s in ["weight", "bias", "running_mean", "running_var"] {
                        out.push(format!("{}.{s}", l.name));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The spec as TOML text (what `from_toml` reads back).
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Spec {
            origin: self.name.clone(),
            msg: format!("cannot be written as TOML: {e}"),
        })
    }

    /// Index of a layer by name.
    pub fn layer_index(&self, name: &str) -> Option<usize> {
        self.layers.iter().position(|l| l.name == name)
    }
}

impl LoadedSpec {
    /// Resolves `--model`: a built-in name, a spec file, or a folder holding `model.toml`
    /// (or exactly one `.toml`).
    pub fn resolve(model: &str) -> Result<LoadedSpec> {
        let path = Path::new(model);
        if path.exists() {
            let file = if path.is_dir() {
                find_spec_in_dir(path)?
            } else {
                path.to_path_buf()
            };
            let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
            let spec = Spec::from_toml(&text, &file.display().to_string())?;
            let dir = file
                .parent()
                .map(|p| p.to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or_else(|| PathBuf::from("."));
            return Ok(LoadedSpec {
                spec,
                dir: Some(dir),
            });
        }
        if let Some(spec) = super::zoo::spec(model) {
            return Ok(LoadedSpec { spec, dir: None });
        }
        match BUILTIN_SPECS.iter().find(|(n, _)| *n == model) {
            Some((n, text)) => Ok(LoadedSpec {
                spec: Spec::from_toml(text, &format!("built-in spec `{n}`"))?,
                dir: None,
            }),
            None => Err(Error::UnknownModel {
                model: model.to_string(),
                known: builtin_names().join(", "),
            }),
        }
    }

    /// A path named by the spec, resolved against its folder (`None` for built-in specs).
    pub fn resolve_path(&self, rel: &str) -> Option<PathBuf> {
        let p = Path::new(rel);
        if p.is_absolute() {
            return Some(p.to_path_buf());
        }
        self.dir.as_ref().map(|d| d.join(p))
    }

    /// The class names, if the spec names a label file that can be found.
    pub fn labels(&self) -> Result<Option<Vec<String>>> {
        let Some(file) = &self.spec.labels else {
            return Ok(None);
        };
        let text = match self.resolve_path(file).filter(|p| p.exists()) {
            Some(p) => return super::read_labels(&p).map(Some),
            None => match BUILTIN_LABELS.iter().find(|(n, _)| n == file) {
                Some((_, t)) => t.to_string(),
                None => {
                    return Err(Error::Spec {
                        origin: self.spec.name.clone(),
                        msg: format!("label file `{file}` not found"),
                    })
                }
            },
        };
        Ok(Some(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect(),
        ))
    }
}

fn find_spec_in_dir(dir: &Path) -> Result<PathBuf> {
    let preferred = dir.join("model.toml");
    if preferred.is_file() {
        return Ok(preferred);
    }
    let mut tomls: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    tomls.sort();
    match tomls.len() {
        1 => Ok(tomls.remove(0)),
        0 => Err(Error::Spec {
            origin: dir.display().to_string(),
            msg: "folder holds no model.toml".into(),
        }),
        _ => Err(Error::Spec {
            origin: dir.display().to_string(),
            msg: "folder holds several .toml files and no model.toml; name the spec file".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_specs_parse() {
        for (name, _) in BUILTIN_SPECS {
            let s = LoadedSpec::resolve(name).unwrap();
            assert_eq!(&s.spec.name, name);
            assert!(s.spec.blobs.len() >= 2);
        }
    }

    #[test]
    fn imagenet_labels_have_1000_classes() {
        let s = LoadedSpec::resolve("alexnet").unwrap();
        let labels = s.labels().unwrap().unwrap();
        assert_eq!(labels.len(), 1000);
    }

    #[test]
    fn unknown_model_names_the_known_ones() {
        let e = LoadedSpec::resolve("resnet9000").unwrap_err().to_string();
        assert!(e.contains("resnet9000") && e.contains("alexnet"), "{e}");
    }

    #[test]
    fn bad_specs_are_rejected_with_a_reason() {
        let base = include_str!("../../models/tiny.toml");
        let cases = [
            (
                base.replace("layer = \"relu3\"", "layer = \"nope\""),
                "nope",
            ),
            (base.replacen("kernel = 3", "kernel = 0", 1), "kernel"),
            (base.replacen("size = 3", "size = 4", 1), "odd"),
            (
                base.replacen("type = \"relu\"", "type = \"swish\"", 1),
                "swish",
            ),
        ];
        for (text, needle) in cases {
            let e = Spec::from_toml(&text, "t.toml").unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
    }
}
