//! The network: a spec's layers, wired as a graph (see [`super::graph`]) and bound to checked
//! weights; the forward pass that records what the backward rules need (the
//! [`ForwardState`]), and the backward of one layer for a batch of gradient rows against one
//! image's state.

use std::collections::HashSet;

use candle_core::{Device, Tensor};

use super::backend::{Backend, Placement};
use super::graph;
use super::kernels;
use super::ops::act::{self, Act};
use super::ops::binary::{self, BinOp, Binary};
pub use super::ops::conv::Conv;
use super::ops::conv::{conv_backward, conv_forward};
pub(crate) use super::ops::conv::{geom, images_per_product};
pub use super::ops::linear::Linear;
use super::ops::linear::{linear_backward, linear_forward};
use super::rule::Rule;
pub use super::shape::Shape;
use super::spec::{LayerKind, LayerSpec, PoolSpec, Side, Spec};
use super::tensorops;
use super::weights::TensorMap;
use crate::error::{Error, Result};

/// The activation a spec layer names, if it is one of the non-ReLU elementwise activations.
pub fn activation_of(kind: &LayerKind) -> Option<Act> {
    Some(match *kind {
        LayerKind::Clip { min, max } => Act::Clip { min, max },
        LayerKind::LeakyRelu { alpha } => Act::LeakyRelu(alpha),
        LayerKind::Sigmoid => Act::Sigmoid,
        LayerKind::Tanh => Act::Tanh,
        LayerKind::Hardsigmoid { alpha, beta } => Act::Hardsigmoid { alpha, beta },
        LayerKind::Hardswish => Act::Hardswish,
        LayerKind::Silu => Act::Silu,
        LayerKind::Gelu => Act::Gelu,
        _ => return None,
    })
}

/// Output shape of a layer from the shapes of its inputs; `width` is the output channel
/// count of conv/linear layers (from the weights, or the spec's `out`).
/// The shape is refused when it is empty or larger than [`MAX_ACTIVATION`] elements per
/// image, before anything of that size is allocated.
pub fn infer_shape(
    spec: &Spec,
    layer: &LayerSpec,
    inputs: &[Shape],
    width: Option<usize>,
) -> Result<Shape> {
    let shape = infer_shape_unchecked(spec, layer, inputs, width)?;
    check_size(shape).map_err(|msg| {
        Error::Shape(format!(
            "layer `{}` of {}: its output {shape} {msg}",
            layer.name, spec.name
        ))
    })?;
    Ok(shape)
}

/// The most elements one image's activation may have at any point of a net (1 GiB of
/// float32): a spec or a weights file asking for more is refused, not allocated.
pub const MAX_ACTIVATION: usize = 1 << 28;

/// Says why a shape cannot be computed with, if it cannot.
pub fn check_size(shape: Shape) -> std::result::Result<(), String> {
    let dims = match shape {
        Shape::Spatial { c, h, w } => vec![c, h, w],
        Shape::Flat(n) => vec![n],
    };
    if dims.contains(&0) {
        return Err("is empty".into());
    }
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_ACTIVATION => Ok(()),
        _ => Err(format!(
            "has more than {MAX_ACTIVATION} elements per image (1 GiB)"
        )),
    }
}

fn infer_shape_unchecked(
    spec: &Spec,
    layer: &LayerSpec,
    inputs: &[Shape],
    width: Option<usize>,
) -> Result<Shape> {
    let err = |msg: String| Error::Shape(format!("layer `{}` of {}: {msg}", layer.name, spec.name));
    let input = *inputs
        .first()
        .ok_or_else(|| err("the layer has no input".into()))?;
    let spatial = |what: &str| match input {
        Shape::Spatial { c, h, w } => Ok((c, h, w)),
        Shape::Flat(_) => Err(err(format!("{what} needs a spatial input, got {input}"))),
    };
    Ok(match &layer.kind {
        LayerKind::Conv {
            kernel,
            stride,
            pad,
            dilation,
            ..
        } => {
            let (_, h, w) = spatial("conv")?;
            let out = |size, a: usize| {
                let pads = pad.begin(a) + pad.end(a);
                kernels::conv_out(size, kernel.0[a], stride.0[a], pads, dilation.0[a])
            };
            match (out(h, 0), out(w, 1), width) {
                (Some(oh), Some(ow), Some(c)) => Shape::Spatial { c, h: oh, w: ow },
                (_, _, None) => return Err(err("conv width unknown".into())),
                _ => return Err(err(format!("input {input} is smaller than the kernel"))),
            }
        }
        LayerKind::Maxpool(p) | LayerKind::Avgpool(p) => {
            let (c, h, w) = spatial("pooling")?;
            match (
                kernels::pool_out_axis(h, p, 0),
                kernels::pool_out_axis(w, p, 1),
            ) {
                (Some(oh), Some(ow)) => Shape::Spatial { c, h: oh, w: ow },
                _ => return Err(err(format!("input {input} is smaller than the window"))),
            }
        }
        LayerKind::AdaptiveAvgpool { output } => {
            let (c, _, _) = spatial("adaptive pooling")?;
            Shape::Spatial {
                c,
                h: output[0],
                w: output[1],
            }
        }
        LayerKind::Lrn { .. } => {
            spatial("lrn")?;
            input
        }
        LayerKind::Relu
        | LayerKind::Dropout { .. }
        | LayerKind::Softmax
        | LayerKind::Identity
        | LayerKind::Batchnorm { .. }
        | LayerKind::Clip { .. }
        | LayerKind::LeakyRelu { .. }
        | LayerKind::Sigmoid
        | LayerKind::Tanh
        | LayerKind::Hardsigmoid { .. }
        | LayerKind::Hardswish
        | LayerKind::Silu
        | LayerKind::Gelu
        | LayerKind::Prelu => input,
        // a constant operand broadcasts into the input (checked against its tensor)
        LayerKind::Add(o) | LayerKind::Sub(o) | LayerKind::Mul(o) | LayerKind::Div(o)
            if o.constant.is_some() =>
        {
            input
        }
        LayerKind::Add(_) | LayerKind::Sub(_) | LayerKind::Mul(_) | LayerKind::Div(_) => {
            match inputs {
                [a, b] => binary::broadcast(*a, *b).ok_or_else(|| {
                    err(format!(
                        "{} takes inputs that broadcast to one shape, given {a} and {b}",
                        layer.kind.type_name()
                    ))
                })?,
                _ => {
                    if let Some(s) = inputs.iter().find(|s| **s != input) {
                        return Err(err(format!(
                            "add of three or more inputs takes them of one shape, given {input} and {s}"
                        )));
                    }
                    input
                }
            }
        }
        LayerKind::Concat => match input {
            Shape::Spatial { h, w, .. } => {
                let mut c = 0;
                for s in inputs {
                    match *s {
                        Shape::Spatial {
                            c: ci,
                            h: hi,
                            w: wi,
                        } if hi == h && wi == w => c += ci,
                        _ => {
                            return Err(err(format!(
                                "concat takes inputs of one spatial size, given {input} and {s}"
                            )))
                        }
                    }
                }
                Shape::Spatial { c, h, w }
            }
            Shape::Flat(_) => {
                let mut n = 0;
                for s in inputs {
                    match *s {
                        Shape::Flat(k) => n += k,
                        _ => {
                            return Err(err(format!(
                                "concat takes all-flat or all-spatial inputs, given {input} and {s}"
                            )))
                        }
                    }
                }
                Shape::Flat(n)
            }
        },
        LayerKind::Flatten => Shape::Flat(input.numel()),
        LayerKind::Linear { .. } => {
            if let Shape::Spatial { .. } = input {
                return Err(err(format!(
                    "linear needs a flat input (add a flatten layer), got {input}"
                )));
            }
            Shape::Flat(width.ok_or_else(|| err("linear width unknown".into()))?)
        }
    })
}

#[derive(Clone)]
pub enum Layer {
    Conv(Conv),
    Relu,
    Act(Act),
    Maxpool(PoolSpec),
    Avgpool(PoolSpec),
    AdaptiveAvgpool([usize; 2]),
    Lrn {
        size: usize,
        alpha: f32,
        beta: f32,
        k: f32,
    },
    Linear(Linear),
    /// A per-channel affine map `x * scale + shift` (an inference BatchNorm that could not
    /// be folded into a convolution); both `[1, C, 1, 1]` (or `[1, C]` for flat inputs).
    Affine {
        scale: Tensor,
        shift: Tensor,
    },
    /// The sum of inputs of one shape (a residual connection).
    Add,
    /// An elementwise op with broadcasting, or with a constant operand.
    Binary(Binary),
    /// PReLU with one slope per channel (or one for all).
    Prelu(Vec<f32>),
    Concat,
    /// A no-op: an identity, or a BatchNorm folded into the convolution before it.
    Identity,
    Dropout(f32),
    Flatten,
    Softmax,
}

impl Layer {
    /// The weight tensors the layer holds, in a fixed order.
    pub fn params(&self) -> Vec<&Tensor> {
        match self {
            Layer::Conv(c) => vec![&c.w, &c.b],
            Layer::Linear(l) => vec![&l.w, &l.b],
            Layer::Affine { scale, shift } => vec![scale, shift],
            _ => vec![],
        }
    }

    /// Whether the layer is an elementwise activation (whose input it stands for as a blob).
    pub fn is_activation(&self) -> bool {
        matches!(self, Layer::Relu | Layer::Act(_) | Layer::Prelu(_))
    }
}

/// A layer's part in a ReLU applied by the layer before it ([`Net::fused_relus`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fused {
    No,
    /// Applies the ReLU that alone takes its output.
    Producer,
    /// A ReLU whose input already is its output.
    Relu,
}

/// A blob of the tree, bound to the net.
#[derive(Debug, Clone)]
pub struct Blob {
    pub name: String,
    /// Index of the layer whose output the blob is.
    pub layer: usize,
    pub mult: f32,
    /// Index (in `Net::blobs`) of the blob holding this blob's children.
    pub below: Option<usize>,
    /// Backward position (tensor) of "the gradient at the blob": the input of its activation
    /// (after the activation's rule), or the output of its layer when it has none.
    pub tap: usize,
    pub shape: Shape,
}

#[derive(Clone)]
pub struct Net {
    /// The spec, its layers in topological order (the order of `layers`).
    pub spec: Spec,
    pub layers: Vec<Layer>,
    /// Per layer: the tensors it takes (`0`: the input; `i + 1`: the output of layer `i`).
    pub inputs: Vec<Vec<usize>>,
    /// Per tensor: the layers that take it.
    pub consumers: Vec<Vec<usize>>,
    pub input: Shape,
    /// Output shape of each layer.
    pub shapes: Vec<Shape>,
    pub blobs: Vec<Blob>,
    pub device: Device,
    /// Which implementation runs the ops ([`Backend`]).
    pub backend: Backend,
    /// The tensor-op backend's constants (window tables, transformed weights), built once.
    pub(crate) cache: tensorops::Cache,
    /// Which way the CPU kernels run stride-1 3x3 convolutions ([`ConvPath`]).
    pub convs: ConvPath,
    /// Whether the CPU kernels merge layers: a ReLU into the convolution or Add before it
    /// (`Net::fused_relus`), a convolution into the residual Add that takes it
    /// (`Net::convs_in_adds`). On by default; `bench --kernels` turns it off to measure.
    pub fuse: bool,
}

/// How the CPU kernels run the stride-1 3x3 and 5x5 convolutions that Winograd's minimal
/// filtering can take ([`super::winograd::applies`]):
/// F(2x2, 3x3), F(4x4, 3x3) or F(2x2, 5x5); other convolutions always run `im2col` +
/// product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConvPath {
    /// Winograd where the work is large enough to gain, by the scheme that gains most
    /// (`ops::conv::fast_scheme`).
    #[default]
    Auto,
    /// Never Winograd: for weights that change in place between passes (training's
    /// `Var`s), whose cached transform could not see the change.
    Direct,
    /// Winograd with 2x2 output tiles wherever it applies, however small: F(2x2, 3x3) and
    /// F(2x2, 5x5) (tests hold it to the references).
    Winograd,
    /// The same with F(4x4, 3x3) for the 3x3 convolutions.
    Winograd4,
}

/// What one forward pass keeps: the input, every layer's output (of the layers it ran),
/// max-pool switches and LRN scales, for `batch` images.
pub struct ForwardState {
    pub batch: usize,
    pub input: Tensor,
    pub outputs: Vec<Tensor>,
    /// Per max-pool layer: switches `[batch, c, oh*ow]` (index in the input plane).
    pub switches: Vec<Option<Kept<u32>>>,
    /// Per LRN layer: `scale` `[batch, c, h, w]`.
    pub lrn_scale: Vec<Option<Kept<f32>>>,
    /// Training only: `(layer, mask)` of each dropout layer (kept units scaled by `1/keep`).
    pub dropout: Vec<(usize, Vec<f32>)>,
    /// Whether the state holds what a backward pass needs (not [`Net::forward_blobs`]'s).
    pub backward_ready: bool,
}

/// Forward state a backward needs: host vectors (the CPU kernels) or a tensor on the net's
/// device (the tensor-op backend).
#[derive(Debug, Clone)]
pub enum Kept<T> {
    Host(Vec<T>),
    Tensor(Tensor),
}

impl<T: candle_core::WithDType> Kept<T> {
    /// The values in host memory (a download for a tensor).
    pub fn to_host(&self) -> Result<Vec<T>> {
        match self {
            Kept::Host(v) => Ok(v.clone()),
            Kept::Tensor(t) => super::transfer::download(t),
        }
    }

    fn host(&self, what: &str) -> Result<&[T]> {
        match self {
            Kept::Host(v) => Ok(v),
            Kept::Tensor(_) => Err(Error::internal(format!(
                "{what} kept as a tensor for the CPU kernels"
            ))),
        }
    }

    fn tensor(&self, what: &str) -> Result<&Tensor> {
        match self {
            Kept::Tensor(t) => Ok(t),
            Kept::Host(_) => Err(Error::internal(format!(
                "{what} kept on the host for the tensor ops"
            ))),
        }
    }
}

impl ForwardState {
    /// The output of layer `layer` for every image, or an error when the pass stopped
    /// before it.
    pub fn output(&self, layer: usize, what: &str) -> Result<&Tensor> {
        let t = self.outputs.get(layer).ok_or_else(|| {
            Error::Input(format!(
                "the forward pass stopped before blob `{what}`; run it further (Net::forward)"
            ))
        })?;
        if t.elem_count() == 0 {
            return Err(Error::Input(format!(
                "`{what}` was not kept by the forward pass (Net::forward_full keeps every tensor)"
            )));
        }
        Ok(t)
    }

    /// Tensor `t` (`0`: the input; `i + 1`: the output of layer `i`).
    pub fn tensor(&self, t: usize) -> &Tensor {
        if t == 0 {
            &self.input
        } else {
            &self.outputs[t - 1]
        }
    }
}

/// What a forward pass keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Every tensor (training, weight gradients).
    All,
    /// What the backward rules need (reconstructions).
    Backward,
    /// The blobs and the output (inference).
    Blobs,
}

/// Weight tensors a checkpoint may hold that no layer uses (BatchNorm's step counter).
fn is_bookkeeping(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

impl Net {
    /// Binds a spec to weights, checking every tensor's name and shape; channel counts come
    /// from the weights. The layers are put in topological order; a BatchNorm right after
    /// a convolution (its only user) is folded into it.
    pub fn build(
        spec: Spec,
        mut tensors: TensorMap,
        place: impl Into<Placement>,
        origin: &std::path::Path,
    ) -> Result<Net> {
        let place: Placement = place.into();
        let device = &place.device;
        if place.backend == Backend::CpuKernels && !device.is_cpu() {
            return Err(Error::Device(format!(
                "the CPU kernels cannot run on {device:?}; use the tensor-op backend there"
            )));
        }
        let wiring = graph::wire(&spec).map_err(|msg| Error::Spec {
            origin: spec.name.clone(),
            msg,
        })?;
        let mut spec = spec;
        spec.layers = wiring
            .order
            .iter()
            .map(|&i| spec.layers[i].clone())
            .collect();
        let input = Shape::Spatial {
            c: 3,
            h: spec.input.size[0],
            w: spec.input.size[1],
        };
        check_size(input).map_err(|msg| Error::Spec {
            origin: spec.name.clone(),
            msg: format!("the input {input} {msg}"),
        })?;
        let mut layers = Vec::new();
        let mut shapes: Vec<Shape> = Vec::new();
        let mut used = HashSet::new();
        let mut take = |name: &str, layer: &str| -> Result<Tensor> {
            used.insert(name.to_string());
            tensors.remove(name).ok_or_else(|| {
                Error::weights(
                    origin,
                    format!("missing tensor `{name}` (weights of layer `{layer}`)"),
                )
            })
        };
        for (li, ls) in spec.layers.iter().enumerate() {
            let in_shapes: Vec<Shape> = wiring.inputs[li]
                .iter()
                .map(|&t| if t == 0 { input } else { shapes[t - 1] })
                .collect();
            let shape = in_shapes[0];
            let mismatch = |name: &str, want: String, got: &[usize]| {
                Error::weights(
                    origin,
                    format!(
                        "tensor `{name}` of layer `{}` has shape {got:?}, expected {want}",
                        ls.name
                    ),
                )
            };
            let default_name = |given: &Option<String>, suffix: &str| {
                given
                    .clone()
                    .unwrap_or_else(|| format!("{}.{suffix}", ls.name))
            };
            let (layer, width) = match &ls.kind {
                LayerKind::Conv {
                    kernel,
                    stride,
                    pad,
                    dilation,
                    groups,
                    depthwise,
                    weight,
                    bias,
                    bias_term,
                    ..
                } => {
                    let wn = default_name(weight, "weight");
                    let w = take(&wn, &ls.name)?;
                    let cin = shape.channels();
                    let groups = &if *depthwise { cin } else { *groups };
                    let d = w.dims().to_vec();
                    let ok = d.len() == 4
                        && cin.is_multiple_of(*groups)
                        && d[1] * groups == cin
                        && d[0] % groups == 0
                        && d[2] == kernel.h()
                        && d[3] == kernel.w();
                    if !ok {
                        return Err(mismatch(
                            &wn,
                            format!(
                                "[out, {}, {}, {}] (input has {cin} channels, groups {groups})",
                                cin / groups,
                                kernel.h(),
                                kernel.w()
                            ),
                            &d,
                        ));
                    }
                    let cout = d[0];
                    let b = if *bias_term {
                        let bn = default_name(bias, "bias");
                        let b = take(&bn, &ls.name)?;
                        if b.dims() != [cout] {
                            return Err(mismatch(&bn, format!("[{cout}]"), b.dims()));
                        }
                        b
                    } else {
                        Tensor::zeros(cout, candle_core::DType::F32, &Device::Cpu)?
                    };
                    (
                        Layer::Conv(Conv {
                            w: w.to_device(device)?,
                            b: b.reshape((1, cout, 1, 1))?.to_device(device)?,
                            kernel: *kernel,
                            stride: *stride,
                            pad: *pad,
                            dilation: *dilation,
                            groups: *groups,
                            fast: Default::default(),
                            fast_t: Default::default(),
                        }),
                        Some(cout),
                    )
                }
                LayerKind::Linear {
                    weight,
                    bias,
                    bias_term,
                    ..
                } => {
                    let wn = default_name(weight, "weight");
                    let w = take(&wn, &ls.name)?;
                    let fin = shape.numel();
                    let d = w.dims().to_vec();
                    if d.len() != 2 || d[1] != fin {
                        return Err(mismatch(
                            &wn,
                            format!("[out, {fin}] (input has {fin} features)"),
                            &d,
                        ));
                    }
                    let b = if *bias_term {
                        let bn = default_name(bias, "bias");
                        let b = take(&bn, &ls.name)?;
                        if b.dims() != [d[0]] {
                            return Err(mismatch(&bn, format!("[{}]", d[0]), b.dims()));
                        }
                        b
                    } else {
                        Tensor::zeros(d[0], candle_core::DType::F32, &Device::Cpu)?
                    };
                    (
                        Layer::Linear(Linear {
                            w: w.to_device(device)?,
                            b: b.reshape((1, d[0]))?.to_device(device)?,
                        }),
                        Some(d[0]),
                    )
                }
                LayerKind::Batchnorm { eps } => {
                    let c = shape.channels();
                    let mut part = |suffix: &str| -> Result<Vec<f32>> {
                        let n = format!("{}.{suffix}", ls.name);
                        let t = take(&n, &ls.name)?;
                        if t.dims() != [c] {
                            return Err(mismatch(&n, format!("[{c}] (one per channel)"), t.dims()));
                        }
                        host_vec(&t)
                    };
                    let (gamma, beta) = (part("weight")?, part("bias")?);
                    let (mean, var) = (part("running_mean")?, part("running_var")?);
                    if let Some(v) = var
                        .iter()
                        .find(|v| (**v + eps).is_nan() || **v + eps <= 0.0)
                    {
                        return Err(Error::weights(
                            origin,
                            format!(
                                "layer `{}`: running_var {v} + eps {eps} is not positive",
                                ls.name
                            ),
                        ));
                    }
                    let scale: Vec<f32> =
                        (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
                    let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
                    let dims = match shape {
                        Shape::Spatial { .. } => vec![1, c, 1, 1],
                        Shape::Flat(_) => vec![1, c],
                    };
                    (
                        Layer::Affine {
                            scale: Tensor::from_vec(scale, dims.clone(), &Device::Cpu)?
                                .to_device(device)?,
                            shift: Tensor::from_vec(shift, dims, &Device::Cpu)?
                                .to_device(device)?,
                        },
                        None,
                    )
                }
                LayerKind::Relu => (Layer::Relu, None),
                LayerKind::Maxpool(p) => (Layer::Maxpool(*p), None),
                LayerKind::Avgpool(p) => (Layer::Avgpool(*p), None),
                LayerKind::AdaptiveAvgpool { output } => (Layer::AdaptiveAvgpool(*output), None),
                LayerKind::Lrn {
                    size,
                    alpha,
                    beta,
                    k,
                } => (
                    Layer::Lrn {
                        size: *size,
                        alpha: *alpha,
                        beta: *beta,
                        k: *k,
                    },
                    None,
                ),
                LayerKind::Dropout { p } => (Layer::Dropout(*p), None),
                LayerKind::Flatten => (Layer::Flatten, None),
                LayerKind::Softmax => (Layer::Softmax, None),
                LayerKind::Add(o)
                    if o.constant.is_none() && in_shapes.iter().all(|s| *s == shape) =>
                {
                    (Layer::Add, None)
                }
                LayerKind::Add(o) | LayerKind::Sub(o) | LayerKind::Mul(o) | LayerKind::Div(o) => {
                    let op = match &ls.kind {
                        LayerKind::Add(_) => BinOp::Add,
                        LayerKind::Sub(_) => BinOp::Sub,
                        LayerKind::Mul(_) => BinOp::Mul,
                        _ => BinOp::Div,
                    };
                    let constant = match o.constant {
                        None => None,
                        Some(side) => {
                            let n = format!("{}.constant", ls.name);
                            let t = take(&n, &ls.name)?;
                            let dims = binary::constant_dims(t.dims(), shape).map_err(|m| {
                                Error::weights(
                                    origin,
                                    format!("tensor `{n}` of layer `{}`: {m}", ls.name),
                                )
                            })?;
                            let values = host_vec(&t)?;
                            if let Some(v) = values.iter().find(|v| !v.is_finite()) {
                                return Err(Error::weights(
                                    origin,
                                    format!("tensor `{n}` of layer `{}` holds {v}", ls.name),
                                ));
                            }
                            if op == BinOp::Div && side == Side::Right && values.contains(&0.0) {
                                return Err(Error::weights(
                                    origin,
                                    format!(
                                        "layer `{}` divides by tensor `{n}`, which holds 0",
                                        ls.name
                                    ),
                                ));
                            }
                            Some((t.reshape(dims)?.to_device(device)?, side))
                        }
                    };
                    (Layer::Binary(Binary { op, constant }), None)
                }
                LayerKind::Prelu => {
                    let n = format!("{}.weight", ls.name);
                    let t = take(&n, &ls.name)?;
                    let c = shape.channels();
                    if t.elem_count() != c && t.elem_count() != 1 {
                        return Err(mismatch(
                            &n,
                            format!("[{c}] or [1] (one slope per channel, or one)"),
                            t.dims(),
                        ));
                    }
                    (Layer::Prelu(host_vec(&t)?), None)
                }
                LayerKind::Concat => (Layer::Concat, None),
                LayerKind::Identity => (Layer::Identity, None),
                kind => (
                    Layer::Act(activation_of(kind).ok_or_else(|| {
                        Error::internal(format!("layer kind `{}` is not built", kind.type_name()))
                    })?),
                    None,
                ),
            };
            shapes.push(infer_shape(&spec, ls, &in_shapes, width)?);
            layers.push(layer);
        }
        tensors.retain(|name, _| !is_bookkeeping(name));
        if !tensors.is_empty() {
            let mut extra: Vec<_> = tensors.keys().cloned().collect();
            extra.sort();
            let shown = extra
                .iter()
                .take(5)
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(Error::weights(
                origin,
                format!(
                    "{} tensor(s) the spec `{}` does not use: {shown}{}",
                    extra.len(),
                    spec.name,
                    if extra.len() > 5 { ", ..." } else { "" }
                ),
            ));
        }
        let consumers = wiring.consumers();
        let mut net = Net {
            spec,
            layers,
            inputs: wiring.inputs.clone(),
            consumers,
            input,
            shapes,
            blobs: vec![],
            device: device.clone(),
            backend: place.backend,
            cache: Default::default(),
            convs: ConvPath::Auto,
            fuse: true,
        };
        net.fold_batchnorms()?;
        net.blobs = bind_blobs(&net, &wiring.articulation())?;
        Ok(net)
    }

    /// Folds each per-channel affine layer (an inference BatchNorm) into the convolution
    /// before it, where that convolution's output has no other user and is no blob. The
    /// affine layer becomes an identity; the numbers change only by round-off.
    fn fold_batchnorms(&mut self) -> Result<()> {
        for j in 0..self.layers.len() {
            let Layer::Affine { scale, shift } = &self.layers[j] else {
                continue;
            };
            let t = self.inputs[j][0];
            if t == 0
                || self.consumers[t] != [j]
                || self
                    .spec
                    .blobs
                    .iter()
                    .any(|b| b.layer == self.spec.layers[t - 1].name)
            {
                continue;
            }
            let Layer::Conv(c) = &self.layers[t - 1] else {
                continue;
            };
            let cout = c.w.dims()[0];
            let s = scale.flatten_all()?;
            let w = c.w.broadcast_mul(&s.reshape((cout, 1, 1, 1))?)?;
            let b =
                c.b.broadcast_mul(&s.reshape((1, cout, 1, 1))?)?
                    .broadcast_add(&shift.reshape((1, cout, 1, 1))?)?;
            let folded = Conv {
                w,
                b,
                fast: Default::default(),
                fast_t: Default::default(),
                ..c.clone()
            };
            self.layers[t - 1] = Layer::Conv(folded);
            self.layers[j] = Layer::Identity;
        }
        Ok(())
    }

    /// Whether every layer takes the one before it.
    pub fn is_chain(&self) -> bool {
        self.inputs.iter().enumerate().all(|(i, x)| x == &[i])
    }

    /// Output shapes of every layer for an input of `input`; an error when the layers
    /// cannot take it (a linear layer expecting another number of features).
    fn shapes_for(&self, input: Shape) -> Result<Vec<Shape>> {
        let mut shapes: Vec<Shape> = Vec::with_capacity(self.layers.len());
        for (i, (ls, layer)) in self.spec.layers.iter().zip(&self.layers).enumerate() {
            let in_shapes: Vec<Shape> = self.inputs[i]
                .iter()
                .map(|&t| if t == 0 { input } else { shapes[t - 1] })
                .collect();
            let width = match layer {
                Layer::Conv(c) => Some(c.w.dims()[0]),
                Layer::Linear(l) => {
                    let fin = l.w.dims()[1];
                    if in_shapes[0].numel() != fin {
                        let Shape::Spatial { h, w, .. } = input else {
                            unreachable!("inputs are images")
                        };
                        return Err(Error::Input(format!(
                            "a {h}x{w} input gives {} features at layer `{}`, whose weights take {fin}; {} needs a {}x{} input",
                            in_shapes[0].numel(),
                            ls.name,
                            self.spec.name,
                            self.spec.input.size[0],
                            self.spec.input.size[1]
                        )));
                    }
                    Some(l.w.dims()[0])
                }
                _ => None,
            };
            shapes.push(infer_shape(&self.spec, ls, &in_shapes, width)?);
        }
        Ok(shapes)
    }

    /// The same net for another input size (weights shared); an error when the layers
    /// cannot take it (a linear layer expecting another number of features).
    pub fn resized(&self, h: usize, w: usize) -> Result<Net> {
        let input = Shape::Spatial { c: 3, h, w };
        let shapes = self.shapes_for(input)?;
        let mut net = Net {
            spec: self.spec.clone(),
            layers: self.layers.clone(),
            inputs: self.inputs.clone(),
            consumers: self.consumers.clone(),
            input,
            shapes,
            blobs: self.blobs.clone(),
            device: self.device.clone(),
            backend: self.backend,
            cache: self.cache.clone(),
            convs: self.convs,
            fuse: self.fuse,
        };
        for b in &mut net.blobs {
            b.shape = net.shapes[b.layer];
        }
        Ok(net)
    }

    /// The layers that hold weights (convolutions, linear layers, unfolded BatchNorms), in
    /// topological order.
    pub fn parametric(&self) -> Vec<usize> {
        (0..self.layers.len())
            .filter(|&i| !self.layers[i].params().is_empty())
            .collect()
    }

    /// A copy of the net whose layers `which` have their weights re-drawn from PyTorch's
    /// default initialisation (deterministic for `seed`): convolution and linear weights
    /// and biases uniform in `+-1/sqrt(fan_in)`, a BatchNorm's affine map the identity.
    /// A convolution with a folded BatchNorm is re-drawn as a plain one (the BatchNorm
    /// reset with it). The sanity check's cascading randomization.
    pub fn randomized(&self, which: &[usize], seed: u64) -> Result<Net> {
        let mut net = self.clone();
        for &i in which {
            let mut rng = super::weights::SplitMix::new(
                seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            let mut draw = |like: &Tensor, fan_in: usize| -> Result<Tensor> {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                let v: Vec<f32> = (0..like.elem_count())
                    .map(|_| rng.next_sym() * bound)
                    .collect();
                Ok(Tensor::from_vec(v, like.dims(), &Device::Cpu)?.to_device(like.device())?)
            };
            match net.layers.get_mut(i) {
                Some(Layer::Conv(c)) => {
                    let fan_in = c.w.dims()[1..].iter().product();
                    c.w = draw(&c.w, fan_in)?;
                    c.b = draw(&c.b, fan_in)?;
                }
                Some(Layer::Linear(l)) => {
                    let fan_in = l.w.dims().get(1).copied().unwrap_or(1);
                    l.w = draw(&l.w, fan_in)?;
                    l.b = draw(&l.b, fan_in)?;
                }
                Some(Layer::Affine { scale, shift }) => {
                    *scale = scale.ones_like()?;
                    *shift = shift.zeros_like()?;
                }
                _ => {
                    return Err(Error::internal(format!(
                        "layer {i} holds no weights to randomize"
                    )))
                }
            }
        }
        Ok(net)
    }

    pub fn blob_index(&self, name: &str) -> Option<usize> {
        self.blobs.iter().position(|b| b.name == name)
    }

    /// Shape at a backward position (tensor `0`: the input; `i`: the output of layer `i-1`).
    pub fn shape_at(&self, pos: usize) -> Shape {
        if pos == 0 {
            self.input
        } else {
            self.shapes[pos - 1]
        }
    }

    /// The forward pass of `input` (`[batch, 3, H, W]`), keeping what backward needs: every
    /// blob, ReLU outputs, the inputs of other activations and LRNs, max-pool switches. A
    /// tensor nothing needs (a convolution's output, once its users ran) is let go, so a
    /// ResNet's forward state holds about half its tensors.
    pub fn forward(&self, input: &Tensor) -> Result<ForwardState> {
        self.forward_timed(input, self.layers.len(), None)
    }

    /// The forward pass keeping every layer's output.
    pub fn forward_full(&self, input: &Tensor) -> Result<ForwardState> {
        self.forward_impl(input, 0, self.layers.len(), None, None, Keep::All)
    }

    /// An inference forward pass (a feature-cache scan, labels): it keeps the blobs and the
    /// last layer's output only, no backward state, so a batch needs a fraction of the
    /// memory of [`Net::forward`]'s.
    pub fn forward_blobs(&self, input: &Tensor) -> Result<ForwardState> {
        self.forward_impl(input, 0, self.layers.len(), None, None, Keep::Blobs)
    }

    /// Per tensor: whether a forward state keeps it (see [`Net::forward`]); with
    /// `for_backward` false only the input, the blobs and the last layer's output.
    pub fn kept(&self, for_backward: bool) -> Vec<bool> {
        let n = self.layers.len();
        let mut keep = vec![false; n + 1];
        keep[0] = true;
        if n > 0 {
            keep[n] = true;
        }
        for b in &self.blobs {
            keep[b.layer + 1] = true;
            if for_backward {
                keep[b.tap] = true;
            }
        }
        if !for_backward {
            return keep;
        }
        for (i, l) in self.layers.iter().enumerate() {
            match l {
                Layer::Relu => keep[i + 1] = true,
                Layer::Act(_) | Layer::Prelu(_) => keep[self.inputs[i][0]] = true,
                Layer::Binary(b) if b.op.needs_operands() => {
                    for &t in &self.inputs[i] {
                        keep[t] = true;
                    }
                }
                Layer::Lrn { .. } => {
                    keep[i + 1] = true;
                    keep[self.inputs[i][0]] = true;
                }
                _ => {}
            }
        }
        keep
    }

    /// The tensor that `t` reaches unchanged through identity layers (folded BatchNorms)
    /// that alone take it, none of whose outputs is kept: `t` itself when no such layer
    /// takes it.
    fn passed_on(&self, mut t: usize, keep: &[bool]) -> usize {
        while let [j] = self.consumers[t].as_slice() {
            if keep[t] || !matches!(self.layers[*j], Layer::Identity) {
                break;
            }
            t = j + 1;
        }
        t
    }

    /// Which ReLUs their producer applies (CPU only): a convolution or a residual Add of
    /// two or more inputs that runs in the pass (`from..upto`), whose output (passed on
    /// through identities, [`Net::passed_on`]) is not kept and is taken by one ReLU alone,
    /// which runs too. The producer then writes the ReLU's output in its own pass (the
    /// convolution while its rows are in cache) and the ReLU passes it on.
    fn fused_relus(&self, keep: &[bool], from: usize, upto: usize) -> Vec<Fused> {
        let mut fused = vec![Fused::No; self.layers.len()];
        if self.backend != Backend::CpuKernels || !self.fuse {
            return fused;
        }
        for (i, l) in self.layers.iter().enumerate().take(upto).skip(from) {
            let producer = match l {
                Layer::Conv(_) => true,
                Layer::Add => self.inputs[i].len() >= 2,
                _ => false,
            };
            let t = self.passed_on(i + 1, keep);
            if let ([j], true, false) = (self.consumers[t].as_slice(), producer, keep[t]) {
                if *j < upto && matches!(self.layers[*j], Layer::Relu) {
                    fused[i] = Fused::Producer;
                    fused[*j] = Fused::Relu;
                }
            }
        }
        fused
    }

    /// Per layer: for a residual Add (CPU only) that runs in the pass (`from..upto`), the
    /// convolution it runs itself, onto its other terms: one whose output (passed on
    /// through identities) that Add alone takes, once, and nothing keeps, which runs in
    /// the pass too, where every term has the Add's shape. The convolution's product then
    /// accumulates onto the sum, and the Add makes no pass over memory of its own. The last
    /// such term is taken.
    fn convs_in_adds(&self, keep: &[bool], from: usize, upto: usize) -> Vec<Option<usize>> {
        let mut conv_of = vec![None; self.layers.len()];
        if self.backend != Backend::CpuKernels || !self.fuse {
            return conv_of;
        }
        let mut add_of = vec![None; self.layers.len() + 1];
        for (j, l) in self.layers.iter().enumerate().take(upto).skip(from) {
            if !matches!(l, Layer::Conv(_)) {
                continue;
            }
            let t = self.passed_on(j + 1, keep);
            if let ([i], false) = (self.consumers[t].as_slice(), keep[t]) {
                let once = self.inputs[*i].iter().filter(|&&u| u == t).count() == 1;
                // every term of the Add's own shape (a resized net may broadcast one)
                let same = self.inputs[*i]
                    .iter()
                    .all(|&u| self.shape_at(u) == self.shapes[*i]);
                if *i < upto && once && same && self.inputs[*i].len() >= 2 {
                    if let Layer::Add = self.layers[*i] {
                        add_of[t] = Some(j);
                    }
                }
            }
        }
        for (i, l) in self.layers.iter().enumerate().take(upto).skip(from) {
            if let Layer::Add = l {
                conv_of[i] = self.inputs[i].iter().rev().find_map(|&t| add_of[t]);
            }
        }
        conv_of
    }

    /// The forward pass in training mode: dropout layers drop units (deterministically for
    /// `seed`) and the state keeps their masks for the backward pass.
    pub fn forward_train(&self, input: &Tensor, seed: u64) -> Result<ForwardState> {
        self.forward_impl(input, 0, self.layers.len(), None, Some(seed), Keep::All)
    }

    /// The forward pass through layer `last` only: enough for reconstructions seeded at
    /// blobs up to that layer (a conv5 neuron needs none of the fully connected layers).
    pub fn forward_until(&self, input: &Tensor, last: usize) -> Result<ForwardState> {
        self.forward_timed(input, (last + 1).min(self.layers.len()), None)
    }

    /// The forward pass of the first `upto` layers, adding each layer's wall time (ms) to
    /// `times` when given.
    pub fn forward_timed(
        &self,
        input: &Tensor,
        upto: usize,
        times: Option<&mut Vec<f64>>,
    ) -> Result<ForwardState> {
        self.forward_impl(input, 0, upto, times, None, Keep::Backward)
    }

    /// An inference pass that starts at tensor `from` (`x`: `[batch, ..its shape]`, e.g. a
    /// blob with a channel zeroed) and runs layers `from..=last`: what an ablation needs.
    /// The tensors before `from` are not computed, so every layer that runs must take
    /// tensors at or after `from` (true above a tree blob, an articulation point).
    pub fn forward_from(&self, from: usize, x: &Tensor, last: usize) -> Result<ForwardState> {
        if from > self.layers.len() || last >= self.layers.len() || last + 1 < from {
            return Err(Error::internal(format!(
                "forward from tensor {from} to layer {last} of {}",
                self.layers.len()
            )));
        }
        self.forward_impl(x, from, last + 1, None, None, Keep::Blobs)
    }

    /// The pass over layers `from..upto` of `input`, the tensor at position `from` (`0`:
    /// the network input).
    fn forward_impl(
        &self,
        input: &Tensor,
        from: usize,
        upto: usize,
        mut times: Option<&mut Vec<f64>>,
        dropout_seed: Option<u64>,
        keep: Keep,
    ) -> Result<ForwardState> {
        let backward_ready = keep != Keep::Blobs;
        let keep = match keep {
            Keep::All => vec![true; self.layers.len() + 1],
            Keep::Backward => self.kept(true),
            Keep::Blobs => self.kept(false),
        };
        let dims = input.dims();
        let batch = dims.first().copied().unwrap_or(0);
        if from == 0 {
            let want = self.input.dims(batch);
            if dims.len() != 4 || dims[1..] != want[1..] {
                return Err(Error::Input(format!(
                    "input has shape {dims:?}, the model `{}` takes [batch, {}, {}, {}]",
                    self.spec.name, want[1], want[2], want[3]
                )));
            }
        } else if dims != self.shape_at(from).dims(batch).as_slice() {
            return Err(Error::Shape(format!(
                "a pass from tensor {from} takes {:?}, not {dims:?}",
                self.shape_at(from).dims(batch)
            )));
        }
        let none = || Tensor::zeros(0, candle_core::DType::F32, &self.device);
        let (input, mut outputs) = if from == 0 {
            (
                input.to_device(&self.device)?.contiguous()?,
                Vec::with_capacity(self.layers.len()),
            )
        } else {
            let mut outs = Vec::with_capacity(self.layers.len());
            for _ in 1..from {
                outs.push(none()?);
            }
            outs.push(input.to_device(&self.device)?.contiguous()?);
            (none()?, outs)
        };
        let mut switches: Vec<Option<Kept<u32>>> = vec![None; from.saturating_sub(1)];
        let mut lrn_scale: Vec<Option<Kept<f32>>> = vec![None; from.saturating_sub(1)];
        let tops = self.backend == Backend::TensorOps;
        let cache = &self.cache;
        if from > 0 {
            switches.push(None);
            lrn_scale.push(None);
        }
        let mut dropout = Vec::new();
        let fused = self.fused_relus(&keep, from, upto);
        let conv_of = self.convs_in_adds(&keep, from, upto);
        // the layer each one runs in (a convolution taken by an Add: that Add), and so the
        // last turn that reads each tensor
        let mut runs_in: Vec<usize> = (0..self.layers.len()).collect();
        for (i, c) in conv_of.iter().enumerate() {
            if let Some(j) = *c {
                runs_in[j] = i;
            }
        }
        let last_read: Vec<Option<usize>> = self
            .consumers
            .iter()
            .map(|c| c.iter().map(|&l| runs_in[l]).max())
            .collect();
        for (i, layer) in self.layers.iter().enumerate().take(upto).skip(from) {
            if let Some(&t) = self.inputs[i].iter().find(|&&t| t < from) {
                return Err(Error::internal(format!(
                    "layer `{}` takes tensor {t}, before the pass's start {from}",
                    self.spec.layers[i].name
                )));
            }
            let at = |t: usize| if t == 0 { &input } else { &outputs[t - 1] };
            let x = at(self.inputs[i][0]);
            let in_shape = self.shape_at(self.inputs[i][0]);
            let out_shape = self.shapes[i];
            let mut sw = None;
            let mut sc = None;
            let t0 = std::time::Instant::now();
            let y = match layer {
                Layer::Conv(c) if tops => {
                    tensorops::conv::forward(cache, x, c, in_shape, out_shape)?
                }
                // the residual Add that takes it runs it
                Layer::Conv(_) if runs_in[i] != i => none()?,
                Layer::Conv(c) => {
                    let relu = fused[i] == Fused::Producer;
                    conv_forward(x, c, in_shape, out_shape, relu, None, self.convs)?
                }
                // its producer applied it
                Layer::Relu if fused[i] == Fused::Relu => x.clone(),
                Layer::Relu if tops => x.relu()?,
                Layer::Relu => {
                    let y = with_host(x, kernels::relu_forward)?;
                    self.tensor(y, out_shape.dims(batch))?
                }
                Layer::Act(a) if tops => tensorops::act::forward(x, *a)?,
                Layer::Act(a) => {
                    let y = with_host(x, |xs| act::forward(xs, *a))?;
                    self.tensor(y, out_shape.dims(batch))?
                }
                Layer::Affine { scale, shift } => x.broadcast_mul(scale)?.broadcast_add(shift)?,
                Layer::Binary(b) => {
                    let xs: Vec<&Tensor> = self.inputs[i].iter().map(|&t| at(t)).collect();
                    b.forward(&xs)?
                }
                Layer::Prelu(slopes) if tops => tensorops::act::prelu_forward(cache, x, slopes)?,
                Layer::Prelu(slopes) => {
                    let y = with_host(x, |xs| act::prelu_forward(xs, slopes, in_shape.plane()))?;
                    self.tensor(y, out_shape.dims(batch))?
                }
                Layer::Add if conv_of[i].is_some() => {
                    let Some((j, Layer::Conv(c))) = conv_of[i].map(|j| (j, &self.layers[j])) else {
                        return Err(Error::internal(
                            "an Add runs a layer that is no convolution",
                        ));
                    };
                    // the other terms, summed: the convolution accumulates onto them
                    let term = self.passed_on(j + 1, &keep);
                    let others: Vec<usize> = self.inputs[i]
                        .iter()
                        .copied()
                        .filter(|&t| t != term)
                        .collect();
                    let mut residual = at(others[0]).clone();
                    for &t in &others[1..] {
                        let sum = with_host(&residual, |a| {
                            with_host(at(t), |b| kernels::add(a, b, false))
                        })???;
                        residual = self.tensor(sum, out_shape.dims(batch))?;
                    }
                    let relu = fused[i] == Fused::Producer;
                    let xin = self.inputs[j][0];
                    let (xs, shape) = (at(xin), self.shape_at(xin));
                    let conv_shape = self.shapes[j];
                    conv_forward(xs, c, shape, conv_shape, relu, Some(&residual), self.convs)?
                }
                Layer::Add if !tops && self.inputs[i].len() >= 2 => {
                    let ins = &self.inputs[i];
                    // a fused ReLU goes with the last term
                    let relu = |n: usize| n + 1 == ins.len() && fused[i] == Fused::Producer;
                    let mut sum = with_host(x, |a| {
                        with_host(at(ins[1]), |b| kernels::add(a, b, relu(1)))
                    })???;
                    for (n, &t) in ins.iter().enumerate().skip(2) {
                        sum = with_host(at(t), |b| kernels::add(&sum, b, relu(n)))??;
                    }
                    self.tensor(sum, out_shape.dims(batch))?
                }
                Layer::Add => {
                    let mut sum = x.clone();
                    for &t in &self.inputs[i][1..] {
                        sum = (sum + at(t))?;
                    }
                    sum
                }
                Layer::Concat => {
                    let parts: Vec<&Tensor> = self.inputs[i].iter().map(|&t| at(t)).collect();
                    Tensor::cat(&parts, 1)?
                }
                Layer::Identity => x.clone(),
                Layer::Maxpool(p) if tops => {
                    let (o, s) =
                        tensorops::pool::maxpool_forward(cache, x, p, in_shape, out_shape)?;
                    sw = Some(Kept::Tensor(s));
                    o
                }
                Layer::Avgpool(p) if tops => {
                    tensorops::pool::avgpool_forward(cache, x, Some(p), in_shape, out_shape)?
                }
                Layer::AdaptiveAvgpool(_) if tops => {
                    tensorops::pool::avgpool_forward(cache, x, None, in_shape, out_shape)?
                }
                Layer::Lrn {
                    size,
                    alpha,
                    beta,
                    k,
                } if tops => {
                    let (o, s) = tensorops::lrn::forward(x, *size, *alpha, *beta, *k)?;
                    sc = Some(Kept::Tensor(s));
                    o
                }
                Layer::Maxpool(p) => {
                    let (planes, ihw, ohw) =
                        (batch * in_shape.channels(), hw(in_shape), hw(out_shape));
                    // only a pass that can go backward needs the switches
                    let o = with_host(x, |xs| {
                        if backward_ready {
                            let (o, s) = kernels::maxpool_forward(xs, planes, ihw, p, ohw);
                            sw = Some(Kept::Host(s));
                            o
                        } else {
                            kernels::maxpool_values(xs, planes, ihw, p, ohw)
                        }
                    })?;
                    self.tensor(o, out_shape.dims(batch))?
                }
                Layer::Avgpool(p) => {
                    let o = with_host(x, |xs| {
                        kernels::avgpool_forward(
                            xs,
                            batch * in_shape.channels(),
                            hw(in_shape),
                            p,
                            hw(out_shape),
                        )
                    })?;
                    self.tensor(o, out_shape.dims(batch))?
                }
                Layer::AdaptiveAvgpool(_) => {
                    let o = with_host(x, |xs| {
                        kernels::adaptive_avgpool_forward(
                            xs,
                            batch * in_shape.channels(),
                            hw(in_shape),
                            hw(out_shape),
                        )
                    })?;
                    self.tensor(o, out_shape.dims(batch))?
                }
                Layer::Lrn {
                    size,
                    alpha,
                    beta,
                    k,
                } => {
                    let (o, s) = with_host(x, |xs| {
                        kernels::lrn_forward(
                            xs,
                            in_shape.channels(),
                            in_shape.plane(),
                            *size,
                            *alpha,
                            *beta,
                            *k,
                        )
                    })?;
                    sc = Some(Kept::Host(s));
                    self.tensor(o, out_shape.dims(batch))?
                }
                Layer::Linear(l) if tops => x.matmul(&l.w.t()?)?.broadcast_add(&l.b)?,
                Layer::Linear(l) => linear_forward(x, l)?,
                Layer::Dropout(p) => match dropout_seed {
                    Some(seed) => {
                        let keep = 1.0 - p;
                        let mut rng =
                            super::weights::SplitMix::new(seed ^ (i as u64).wrapping_mul(0x9E37));
                        let mask: Vec<f32> = (0..x.elem_count())
                            .map(|_| {
                                if (rng.next_sym() + 1.0) * 0.5 < keep {
                                    1.0 / keep
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let m = self.tensor(mask.clone(), out_shape.dims(batch))?;
                        dropout.push((i, mask));
                        (x * m)?
                    }
                    None => x.clone(),
                },
                Layer::Flatten => x.reshape(out_shape.dims(batch))?,
                Layer::Softmax => candle_nn::ops::softmax_last_dim(x)?,
            };
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            tracing::trace!(layer = %self.spec.layers[i].name, ms, "forward");
            if let Some(t) = times.as_deref_mut() {
                if t.len() < self.layers.len() {
                    t.resize(self.layers.len(), 0.0);
                }
                t[i] += ms;
            }
            outputs.push(y);
            // an inference pass keeps no backward state
            switches.push(sw.filter(|_| backward_ready));
            lrn_scale.push(sc.filter(|_| backward_ready));
            let ran = std::iter::once(i)
                .filter(|&l| runs_in[l] == i)
                .chain(conv_of[i]);
            for l in ran {
                for &t in &self.inputs[l] {
                    // the last layer that takes `t` has run
                    if t > 0 && !keep[t] && last_read[t] == Some(i) {
                        outputs[t - 1] = none()?;
                    }
                }
            }
        }
        Ok(ForwardState {
            batch,
            input,
            outputs,
            switches,
            lrn_scale,
            dropout,
            backward_ready,
        })
    }

    fn tensor(&self, v: Vec<f32>, dims: Vec<usize>) -> Result<Tensor> {
        super::transfer::upload(v, dims, &self.device)
    }

    /// Backward of single-input layer `i` (a chain's layers) for gradient rows `g`; see
    /// [`Net::backward_node`].
    pub fn backward_layer(
        &self,
        i: usize,
        state: &ForwardState,
        img: Option<usize>,
        g: &Tensor,
        rule: Rule,
    ) -> Result<Tensor> {
        let mut v = self.backward_node(i, state, img, g, rule)?;
        if v.len() != 1 {
            return Err(Error::Shape(format!(
                "layer `{}` takes {} inputs; use backward_node",
                self.spec.layers[i].name,
                v.len()
            )));
        }
        Ok(v.remove(0))
    }

    /// Backward of layer `i` for gradient rows `g` (`[rows, ..out shape]`) against image
    /// `img` of `state` (every row's own image when `None`); returns one gradient
    /// `[rows, ..in shape]` per input of the layer (`Net::inputs[i]`). Activations apply
    /// `rule`.
    pub fn backward_node(
        &self,
        i: usize,
        state: &ForwardState,
        img: Option<usize>,
        g: &Tensor,
        rule: Rule,
    ) -> Result<Vec<Tensor>> {
        let rows = g.dims()[0];
        if !state.backward_ready {
            return Err(Error::Input(
                "this forward state keeps only the blobs (Net::forward_blobs); a backward pass needs Net::forward".into(),
            ));
        }
        if img.is_none() && rows != state.batch {
            return Err(Error::Shape(format!(
                "{rows} gradient rows for a forward batch of {}",
                state.batch
            )));
        }
        // one image's state shared by every row, or every row's own
        let pick = |t: &Tensor| -> Result<Tensor> {
            Ok(match img {
                Some(k) => t.narrow(0, k, 1)?,
                None => t.clone(),
            })
        };
        let range = |per: usize| match img {
            Some(k) => k * per..(k + 1) * per,
            None => 0..state.batch * per,
        };
        let x_id = self.inputs[i][0];
        let in_shape = self.shape_at(x_id);
        let out_shape = self.shapes[i];
        let tops = self.backend == Backend::TensorOps;
        let cache = &self.cache;
        Ok(vec![match &self.layers[i] {
            Layer::Conv(c) if tops => tensorops::conv::backward(cache, g, c, in_shape, out_shape)?,
            Layer::Conv(c) => conv_backward(g, c, in_shape, out_shape, self.convs)?,
            Layer::Relu if tops => tensorops::act::relu_rule(g, &state.outputs[i], img, rule)?,
            Layer::Act(a) if tops => {
                tensorops::act::backward(g, state.tensor(x_id), img, *a, rule)?
            }
            Layer::Prelu(slopes) if tops => {
                tensorops::act::prelu_backward(cache, g, state.tensor(x_id), img, slopes, rule)?
            }
            Layer::Maxpool(_) if tops => {
                let sw = state.switches[i]
                    .as_ref()
                    .ok_or_else(|| Error::internal("a max-pool without its switches"))?
                    .tensor("switches")?;
                tensorops::pool::maxpool_backward(g, sw, img, in_shape, out_shape)?
            }
            Layer::Avgpool(p) if tops => {
                tensorops::pool::avgpool_backward(cache, g, Some(p), in_shape, out_shape)?
            }
            Layer::AdaptiveAvgpool(_) if tops => {
                tensorops::pool::avgpool_backward(cache, g, None, in_shape, out_shape)?
            }
            Layer::Lrn {
                size, alpha, beta, ..
            } if tops => {
                let scale = state.lrn_scale[i]
                    .as_ref()
                    .ok_or_else(|| Error::internal("an LRN without its scales"))?
                    .tensor("LRN scales")?;
                tensorops::lrn::backward(
                    g,
                    state.tensor(x_id),
                    &state.outputs[i],
                    scale,
                    img,
                    *size,
                    *alpha,
                    *beta,
                )?
            }
            Layer::Linear(l) if tops => g.matmul(&l.w)?,
            Layer::Relu => {
                let y = pick(&state.outputs[i])?;
                let mut gv = host_vec(g)?;
                with_host(&y, |ys| kernels::relu_rule(&mut gv, ys, rule))?;
                self.tensor(gv, in_shape.dims(rows))?
            }
            Layer::Act(a) => {
                let x = pick(state.tensor(x_id))?;
                let mut gv = host_vec(g)?;
                with_host(&x, |xs| act::backward(&mut gv, xs, *a, rule))?;
                self.tensor(gv, in_shape.dims(rows))?
            }
            Layer::Affine { scale, .. } => g.broadcast_mul(scale)?,
            Layer::Add => return Ok(vec![g.clone(); self.inputs[i].len()]),
            Layer::Binary(b) => {
                let xs = if b.op.needs_operands() {
                    self.inputs[i]
                        .iter()
                        .map(|&t| pick(state.tensor(t)))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    vec![]
                };
                let refs: Vec<&Tensor> = xs.iter().collect();
                let dims: Vec<Vec<usize>> = self.inputs[i]
                    .iter()
                    .map(|&t| self.shape_at(t).dims(1))
                    .collect();
                return b.backward(g, &refs, &dims);
            }
            Layer::Prelu(slopes) => {
                let x = pick(state.tensor(x_id))?;
                let mut gv = host_vec(g)?;
                with_host(&x, |xs| {
                    act::prelu_backward(&mut gv, xs, slopes, in_shape.plane(), rule)
                })?;
                self.tensor(gv, in_shape.dims(rows))?
            }
            Layer::Concat => {
                let mut parts = Vec::with_capacity(self.inputs[i].len());
                let mut at = 0;
                for &t in &self.inputs[i] {
                    let c = self.shape_at(t).channels();
                    parts.push(g.narrow(1, at, c)?);
                    at += c;
                }
                return Ok(parts);
            }
            Layer::Identity => g.clone(),
            Layer::Maxpool(_) => {
                let c = in_shape.channels();
                let per = c * out_shape.plane();
                let sw = &state.switches[i]
                    .as_ref()
                    .ok_or_else(|| Error::internal("a max-pool without its switches"))?
                    .host("switches")?[range(per)];
                let dx = with_host(g, |gs| {
                    kernels::maxpool_backward(gs, sw, c, in_shape.plane(), out_shape.plane())
                })?;
                self.tensor(dx, in_shape.dims(rows))?
            }
            Layer::Avgpool(p) => {
                let dx = with_host(g, |gs| {
                    kernels::avgpool_backward(
                        gs,
                        rows * in_shape.channels(),
                        hw(in_shape),
                        p,
                        hw(out_shape),
                    )
                })?;
                self.tensor(dx, in_shape.dims(rows))?
            }
            Layer::AdaptiveAvgpool(_) => {
                let dx = with_host(g, |gs| {
                    kernels::adaptive_avgpool_backward(
                        gs,
                        rows * in_shape.channels(),
                        hw(in_shape),
                        hw(out_shape),
                    )
                })?;
                self.tensor(dx, in_shape.dims(rows))?
            }
            Layer::Lrn {
                size, alpha, beta, ..
            } => {
                let n = in_shape.numel();
                let scale = &state.lrn_scale[i]
                    .as_ref()
                    .ok_or_else(|| Error::internal("an LRN without its scales"))?
                    .host("LRN scales")?[range(n)];
                let x = pick(state.tensor(x_id))?;
                let y = pick(&state.outputs[i])?;
                let dx = with_host(g, |gs| {
                    with_host(&x, |xs| {
                        with_host(&y, |ys| {
                            kernels::lrn_backward(
                                gs,
                                xs,
                                ys,
                                scale,
                                in_shape.channels(),
                                in_shape.plane(),
                                *size,
                                *alpha,
                                *beta,
                            )
                        })
                    })
                })???;
                self.tensor(dx, in_shape.dims(rows))?
            }
            Layer::Linear(l) => linear_backward(g, l)?,
            Layer::Dropout(_) => match state.dropout.iter().find(|(l, _)| *l == i) {
                Some((_, mask)) if img.is_none() => {
                    let m = self.tensor(mask.clone(), out_shape.dims(rows))?;
                    (g * m)?
                }
                _ => g.clone(),
            },
            Layer::Flatten => g.reshape(in_shape.dims(rows))?,
            Layer::Softmax => {
                return Err(Error::Shape(
                    "cannot backpropagate through softmax; seed at the logits".into(),
                ))
            }
        }])
    }
}

fn hw(s: Shape) -> (usize, usize) {
    match s {
        Shape::Spatial { h, w, .. } => (h, w),
        Shape::Flat(_) => (1, 1),
    }
}

/// The spec's tree blobs bound to tensors of the net. A blob on an activation stands for
/// the activation's input where that is its only user (its gradient is taken after the
/// activation's rule); every blob must be an articulation tensor, so that the gradient of a
/// path is all in it.
fn bind_blobs(net: &Net, articulation: &[bool]) -> Result<Vec<Blob>> {
    let spec = &net.spec;
    let mut blobs = Vec::new();
    for b in &spec.blobs {
        let li = spec
            .layer_index(&b.layer)
            .ok_or_else(|| Error::internal(format!("blob `{}` names no layer", b.name)))?;
        let x = net.inputs[li][0];
        let tap = if net.layers[li].is_activation() && net.consumers[x] == [li] {
            x
        } else {
            li + 1
        };
        if !articulation[tap] {
            return Err(Error::Spec {
                origin: spec.name.clone(),
                msg: format!(
                    "blob `{}` (layer `{}`) is inside a branch: not every path from the input to the output passes through it (a tree blob must be, e.g. a residual block's output, not a layer within it)",
                    b.name, b.layer
                ),
            });
        }
        blobs.push(Blob {
            name: b.name.clone(),
            layer: li,
            mult: b.mult,
            below: None,
            tap,
            shape: net.shapes[li],
        });
    }
    for (i, b) in spec.blobs.iter().enumerate() {
        let below = match &b.below {
            Some(n) => spec.blobs.iter().position(|x| &x.name == n),
            None => (i + 1 < spec.blobs.len()).then_some(i + 1),
        };
        if let Some(j) = below {
            if blobs[j].tap >= blobs[i].tap {
                return Err(Error::Spec {
                    origin: spec.name.clone(),
                    msg: format!(
                        "blob `{}` is not below blob `{}` in the net",
                        blobs[j].name, b.name
                    ),
                });
            }
        }
        blobs[i].below = below;
    }
    Ok(blobs)
}

pub use super::transfer::{host_vec, with_host};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relus_fuse_into_convolutions_and_residual_adds_that_nothing_else_reads() {
        let spec = super::super::LoadedSpec::resolve("demo-resnet")
            .unwrap()
            .spec;
        let tensors = super::super::weights::random_weights(&spec, 1).unwrap();
        let net = &Net::build(spec, tensors, &Device::Cpu, std::path::Path::new("random")).unwrap();
        let n = net.layers.len();
        let lean = net.fused_relus(&net.kept(false), 0, n);
        let kind = |f: Fused, pick: fn(&Layer) -> bool| {
            (0..n)
                .filter(|&i| lean[i] == f && pick(&net.layers[i]))
                .count()
        };
        assert!(kind(Fused::Producer, |l| matches!(l, Layer::Conv(_))) > 0);
        assert!(kind(Fused::Producer, |l| matches!(l, Layer::Add)) > 0);
        // every fused ReLU has exactly its producer, and the producer's output is not kept
        for (i, f) in lean.iter().enumerate() {
            if *f == Fused::Producer {
                assert_eq!(net.consumers[i + 1].len(), 1);
                assert_eq!(lean[net.consumers[i + 1][0]], Fused::Relu);
            }
        }
        // keeping everything (training) fuses nothing; a pass that stops before a ReLU
        // leaves its producer alone
        assert!(net
            .fused_relus(&vec![true; n + 1], 0, n)
            .iter()
            .all(|f| *f == Fused::No));
        let j = (0..n).find(|&j| lean[j] == Fused::Relu).unwrap();
        assert!(net
            .fused_relus(&net.kept(false), 0, j)
            .iter()
            .take(j)
            .all(|f| *f == Fused::No));
    }

    /// Two residual blocks behind BatchNorms (folded into identities): a pointwise
    /// convolution plus the skip, then a 3x3 convolution plus a projection.
    const BLOCKS: &str = r#"
name = "blocks"
[input]
size = [10, 10]
color = "rgb"
scale = 1.0
mean = [0.0, 0.0, 0.0]
[[layers]]
name = "stem"
type = "conv"
out = 16
kernel = 3
pad = 1
[[layers]]
name = "stem_bn"
type = "batchnorm"
[[layers]]
name = "stem_relu"
type = "relu"
[[layers]]
name = "c1"
type = "conv"
out = 16
kernel = 1
[[layers]]
name = "c1_bn"
type = "batchnorm"
[[layers]]
name = "add1"
type = "add"
inputs = ["c1_bn", "stem_relu"]
[[layers]]
name = "relu1"
type = "relu"
[[layers]]
name = "proj"
type = "conv"
out = 16
kernel = 1
inputs = ["relu1"]
[[layers]]
name = "c2"
type = "conv"
out = 16
kernel = 3
pad = 1
inputs = ["relu1"]
[[layers]]
name = "c2_bn"
type = "batchnorm"
[[layers]]
name = "add2"
type = "add"
inputs = ["proj", "c2_bn"]
[[layers]]
name = "relu2"
type = "relu"
[[blobs]]
name = "relu2"
layer = "relu2"
[[blobs]]
name = "relu1"
layer = "relu1"
"#;

    #[test]
    fn residual_adds_run_the_convolution_they_alone_take_onto_their_other_terms() {
        let spec = super::super::Spec::from_toml(BLOCKS, "blocks").unwrap();
        let tensors = super::super::weights::random_weights(&spec, 3).unwrap();
        let mut net =
            Net::build(spec, tensors, &Device::Cpu, std::path::Path::new("random")).unwrap();
        let n = net.layers.len();
        let at = |name: &str| net.spec.layers.iter().position(|l| l.name == name).unwrap();
        let lean = net.kept(false);
        let conv_of = net.convs_in_adds(&lean, 0, n);
        // through the folded BatchNorms; of two convolution terms, the last
        assert_eq!(conv_of[at("add1")], Some(at("c1")));
        assert_eq!(conv_of[at("add2")], Some(at("c2")));
        assert_eq!(conv_of.iter().flatten().count(), 2);
        // a ReLU fuses into the convolution before its BatchNorm, and into the Adds
        let fused = net.fused_relus(&lean, 0, n);
        assert_eq!(fused[at("stem")], Fused::Producer);
        assert_eq!(fused[at("add1")], Fused::Producer);
        assert_eq!(fused[at("stem_relu")], Fused::Relu);
        // nothing merges where every output is kept, nor into an Add that does not run,
        // nor a convolution before the pass's start
        assert!(net
            .convs_in_adds(&vec![true; n + 1], 0, n)
            .iter()
            .all(Option::is_none));
        assert!(net
            .convs_in_adds(&lean, 0, at("add1"))
            .iter()
            .all(Option::is_none));
        assert_eq!(net.convs_in_adds(&lean, at("c1") + 1, n)[at("add1")], None);
        // the same numbers as every layer on its own, on both convolution paths
        let x = Tensor::randn(0f32, 1.0, (3, 3, 10, 10), &Device::Cpu).unwrap();
        for path in [ConvPath::Direct, ConvPath::Winograd] {
            net.convs = path;
            net.fuse = false;
            let want = net.forward_full(&x).unwrap();
            net.fuse = true;
            for state in [net.forward(&x).unwrap(), net.forward_blobs(&x).unwrap()] {
                for b in &net.blobs {
                    let (w, g) = (
                        want.output(b.layer, &b.name).unwrap(),
                        state.output(b.layer, &b.name).unwrap(),
                    );
                    let d = crate::model::ops::max_abs_diff(w, g);
                    assert!(d < 1e-5, "{path:?} {}: {d}", b.name);
                }
            }
        }
    }

    #[test]
    fn an_add_whose_terms_broadcast_after_a_resize_runs_no_convolution_and_errs() {
        // built at 7x7 both terms are [16, 1, 1]; at 14x14 the pooled one is [16, 2, 2]
        let spec = super::super::Spec::from_toml(
            r#"
name = "gate"
[input]
size = [7, 7]
color = "rgb"
scale = 1.0
mean = [0.0, 0.0, 0.0]
[[layers]]
name = "stem"
type = "conv"
out = 16
kernel = 1
[[layers]]
name = "squeeze"
type = "adaptive_avgpool"
output = [1, 1]
[[layers]]
name = "gate"
type = "conv"
out = 16
kernel = 1
[[layers]]
name = "pool"
type = "avgpool"
kernel = 7
stride = 7
inputs = ["stem"]
[[layers]]
name = "sum"
type = "add"
inputs = ["gate", "pool"]
[[blobs]]
name = "sum"
layer = "sum"
"#,
            "gate",
        )
        .unwrap();
        let tensors = super::super::weights::random_weights(&spec, 3).unwrap();
        let net = Net::build(spec, tensors, &Device::Cpu, std::path::Path::new("random")).unwrap();
        let n = net.layers.len();
        assert!(net
            .convs_in_adds(&net.kept(false), 0, n)
            .iter()
            .any(Option::is_some));
        let big = net.resized(14, 14).unwrap();
        assert!(big
            .convs_in_adds(&big.kept(false), 0, n)
            .iter()
            .all(Option::is_none));
        let x = Tensor::randn(0f32, 1.0, (2, 3, 14, 14), &Device::Cpu).unwrap();
        // as before convolutions ran in Adds: the Add refuses the shapes, nothing panics
        assert!(big.forward_blobs(&x).is_err());
    }
}
