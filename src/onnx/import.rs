//! An ONNX graph as a treevis spec and its weights: constant subgraphs (`Shape -> Gather ->
//! Concat -> Reshape`) folded, weights taken from initializers and `Constant` nodes,
//! activations spelled out in elementwise ops recognised as one (reference section 8), a
//! final Softmax read as logits plus labels, and the tree blobs chosen and named as section 8
//! says (articulation tensors, named for the module whose output they are).
//!
//! Module paths come from the node names of PyTorch's TorchScript exporter
//! (`/layer4/layer4.1/relu_1/Relu`) and from the `pkg.torch.onnx.name_scopes` metadata of
//! its dynamo exporter (`['', 'layer4', 'layer4.1', 'layer4.1.relu', 'relu_16']`).

use std::collections::{HashMap, HashSet};

use candle_core::{Device, Tensor};

use super::{Node, OnnxModel, TensorData, Values};
use crate::error::{Error, Result};
use crate::model::graph;
use crate::model::spec::{
    Hw, InputSpec, LayerKind, LayerSpec, Operand, Pads, PoolSpec, Side, Spec, MAX_GEOMETRY,
};
use crate::model::weights::TensorMap;

/// The ops this importer maps onto treevis layers (constant subgraphs may use more).
pub const SUPPORTED: &str = "Conv, Gemm, MatMul(+Add bias), BatchNormalization, Relu, Clip, LeakyRelu, PRelu, Sigmoid, HardSigmoid, HardSwish, Tanh, Gelu, Erf-GELU, x*Sigmoid(x), Add, Sub, Mul, Div (broadcasting, constants on either side), Sum, Concat, Pad (zero, before Conv or AveragePool), MaxPool, AveragePool, GlobalAveragePool, ReduceMean over H,W, Flatten, Reshape/Squeeze to [N, features], Dropout, Identity, LRN, Softmax at the end";

/// What an import made, with what it assumed.
pub struct Imported {
    pub spec: Spec,
    pub tensors: TensorMap,
    /// Things the user should know (assumed preprocessing, fixed dynamic dimensions).
    pub notes: Vec<String>,
}

/// A value of the graph while it is read.
#[derive(Clone, Debug)]
enum Val {
    /// Known at load: an initializer, a `Constant`, or folded from them.
    Const(TensorData),
    /// An activation: the layer producing it (`None`: the network input) and its dims
    /// (batch first, batch 1).
    Act {
        layer: Option<usize>,
        dims: Vec<usize>,
    },
}

struct Importer<'a> {
    model: &'a OnnxModel,
    vals: HashMap<String, Val>,
    layers: Vec<LayerSpec>,
    /// Per layer: the ONNX node it came from (its scope chain names blobs).
    scopes: Vec<Vec<String>>,
    tensors: TensorMap,
    used_names: HashSet<String>,
    notes: Vec<String>,
    /// Outputs of zero `Pad` nodes (aliases of their input) with the padding `[top, left,
    /// bottom, right]` the Conv or AveragePool after them takes on.
    padded: HashMap<String, [usize; 4]>,
}

/// Reads `model` as a spec named `name`, with its weights.
pub fn import(model: &OnnxModel, name: &str) -> Result<Imported> {
    let g = &model.graph;
    let input = match g.inputs.as_slice() {
        [one] => one,
        [] => return Err(model.error("the graph has no input")),
        more => {
            return Err(model.error(format!(
                "the graph has {} inputs ({}); treevis feeds one image tensor",
                more.len(),
                more.iter()
                    .map(|v| v.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    };
    let mut notes = Vec::new();
    let dims = fix_input_dims(model, input, &mut notes)?;
    let mut imp = Importer {
        model,
        vals: HashMap::new(),
        layers: Vec::new(),
        scopes: Vec::new(),
        tensors: TensorMap::new(),
        used_names: HashSet::new(),
        padded: HashMap::new(),
        notes,
    };
    for (n, t) in &g.initializers {
        imp.vals.insert(n.clone(), Val::Const(t.clone()));
    }
    imp.vals.insert(
        input.name.clone(),
        Val::Act {
            layer: None,
            dims: dims.clone(),
        },
    );
    // Constant nodes take no inputs: known before anything runs (a bias may be defined
    // after the MatMul it follows)
    for node in g.nodes.iter().filter(|n| n.op_type == "Constant") {
        let t = constant_value(node).map_err(|m| imp.err(node, m))?;
        if let Some(o) = node.outputs.first() {
            imp.vals.insert(o.clone(), Val::Const(t));
        }
    }
    for node in &g.nodes {
        check_arity(model, node)?;
    }
    let consumers = count_consumers(model);
    let spelled = spelled_activations(model, &consumers);
    let mut skip: HashSet<usize> = spelled
        .values()
        .flat_map(|p| p.nodes.iter().copied())
        .collect();
    for (i, node) in g.nodes.iter().enumerate() {
        if let Some(p) = spelled.get(&i) {
            // the last node of a spelled-out activation: one layer for the pattern
            let (src, dims) = match imp.vals.get(&p.x) {
                Some(Val::Act { layer, dims }) => (*layer, dims.clone()),
                _ => return Err(imp.err(node, format!("`{}` is not an activation", p.x))),
            };
            let name = imp.name_for(node, None);
            imp.notes.push(format!(
                "nodes {} read as one {} (reference section 8)",
                p.nodes
                    .iter()
                    .map(|&k| format!("`{}`", g.nodes[k].name))
                    .collect::<Vec<_>>()
                    .join(", "),
                p.kind.type_name()
            ));
            imp.push(node, name, vec![src], p.kind.clone(), dims);
            continue;
        }
        if skip.contains(&i) {
            continue;
        }
        imp.node(i, node, &consumers, &mut skip)?;
    }
    let out = match g.outputs.as_slice() {
        [one] => one.name.clone(),
        [] => return Err(model.error("the graph has no output")),
        more => {
            return Err(model.error(format!(
                "the graph has {} outputs; treevis reads one (the logits)",
                more.len()
            )))
        }
    };
    let top = imp.logits_layer(&out)?;
    let mut spec = Spec {
        name: name.to_string(),
        description: format!(
            "imported from {} ({}, opset {})",
            model
                .path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default(),
            if model.producer.is_empty() {
                "unknown producer"
            } else {
                &model.producer
            },
            model.opset
        ),
        labels: None,
        weights: None,
        input: InputSpec {
            size: [dims[2], dims[3]],
            // torchvision's resize 256 for a 224 crop, in proportion
            resize: Some((dims[2].min(dims[3]) * 256).div_ceil(224)),
            ..crate::model::zoo::torchvision_input()
        },
        layers: std::mem::take(&mut imp.layers),
        blobs: vec![],
    };
    // the logits are the last layer: drop what follows them (a Softmax, Identity)
    spec.layers.truncate(top + 1);
    imp.scopes.truncate(top + 1);
    // without module paths anywhere, layers are named for their nodes; with them, an op
    // outside every module (DenseNet's final F.relu) is named for its kind
    let has_scopes = imp.scopes.iter().any(|s| !s.is_empty());
    let fallback: Vec<String> = spec
        .layers
        .iter()
        .map(|l| {
            if has_scopes {
                l.kind.type_name().to_string()
            } else {
                l.name.clone()
            }
        })
        .collect();
    spec.blobs = graph::tree_blobs(&spec, &imp.scopes, &fallback).map_err(|m| model.error(m))?;
    let classes = imp_width(&spec, &imp.tensors, top);
    if classes == Some(1000) {
        spec.labels = Some("imagenet_classes.txt".into());
    }
    imp.notes.push(format!(
        "preprocessing is not in an ONNX file: assumed torchvision's (RGB, /255, ImageNet mean/std, resize {} and centre crop {}x{}); edit [input] of the spec if the model was trained otherwise",
        spec.input.resize.unwrap_or(256),
        dims[2],
        dims[3]
    ));
    Ok(Imported {
        spec,
        tensors: imp.tensors,
        notes: imp.notes,
    })
}

fn imp_width(spec: &Spec, tensors: &TensorMap, layer: usize) -> Option<usize> {
    match &spec.layers[layer].kind {
        LayerKind::Linear { .. } | LayerKind::Conv { .. } => tensors
            .get(&format!("{}.weight", spec.layers[layer].name))
            .map(|t| t.dims()[0]),
        _ => None,
    }
}

/// The input's dims with dynamic ones fixed: batch 1, height and width 224.
fn fix_input_dims(
    model: &OnnxModel,
    input: &super::ValueInfo,
    notes: &mut Vec<String>,
) -> Result<Vec<usize>> {
    let Some(d) = &input.dims else {
        notes.push(format!(
            "input `{}` has no recorded shape: assumed [1, 3, 224, 224]",
            input.name
        ));
        return Ok(vec![1, 3, 224, 224]);
    };
    if d.len() != 4 {
        return Err(model.error(format!(
            "input `{}` has rank {}; treevis feeds images [N, 3, H, W]",
            input.name,
            d.len()
        )));
    }
    let mut out = Vec::with_capacity(4);
    for (k, dim) in d.iter().enumerate() {
        let fallback = [1, 3, 224, 224][k];
        out.push(match dim {
            super::Dim::Fixed(v) if *v > 0 && *v <= 1 << 16 => *v as usize,
            super::Dim::Fixed(v) if *v > 0 => {
                return Err(model.error(format!(
                    "input `{}` dimension {k} is {v}, larger than treevis takes",
                    input.name
                )))
            }
            other => {
                if k > 0 {
                    notes.push(format!(
                        "input `{}` dimension {k} is dynamic ({other:?}): fixed to {fallback}",
                        input.name
                    ));
                }
                fallback
            }
        });
    }
    if out[1] != 3 {
        return Err(model.error(format!(
            "input `{}` has {} channels; treevis feeds RGB images (3)",
            input.name, out[1]
        )));
    }
    out[0] = 1;
    Ok(out)
}

/// Every node has a named first output and the inputs its op requires (so nothing below
/// indexes past a node's lists).
fn check_arity(model: &OnnxModel, node: &Node) -> Result<()> {
    let need = match node.op_type.as_str() {
        "Constant" => 0,
        "Conv" | "Gemm" | "MatMul" | "PRelu" | "Reshape" | "Gather" | "Add" | "Mul" | "Div"
        | "Sub" | "Expand" => 2,
        "BatchNormalization" => 5,
        _ => 1,
    };
    let err = |m: String| {
        model.error(format!(
            "node `{}` ({}): {m}",
            node.name.escape_debug(),
            node.op_type
        ))
    };
    if node.outputs.first().is_none_or(|o| o.is_empty()) {
        return Err(err("it has no output".into()));
    }
    if node.inputs.len() < need || (need > 0 && node.inputs[0].is_empty()) {
        return Err(err(format!(
            "it has {} input(s), the op takes at least {need}",
            node.inputs.len()
        )));
    }
    Ok(())
}

fn count_consumers(model: &OnnxModel) -> HashMap<String, Vec<usize>> {
    let mut m: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in model.graph.nodes.iter().enumerate() {
        for x in &n.inputs {
            if !x.is_empty() {
                m.entry(x.clone()).or_default().push(i);
            }
        }
    }
    for o in &model.graph.outputs {
        m.entry(o.name.clone()).or_default().push(usize::MAX);
    }
    m
}

/// The module scopes of a node, outermost first, as full dotted paths: from the dynamo
/// exporter's `pkg.torch.onnx.name_scopes` metadata, or the TorchScript exporter's node
/// name (`/features/features.17/conv/conv.2/Conv` -> `features`, `features.17`,
/// `features.17.conv`, `features.17.conv.2`).
pub fn scopes_of(node: &Node) -> Vec<String> {
    if let Some((_, v)) = node
        .metadata
        .iter()
        .find(|(k, _)| k == "pkg.torch.onnx.name_scopes")
    {
        let items: Vec<String> = v
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|s| s.trim().trim_matches(|c| c == '\'' || c == '"').to_string())
            .collect();
        // ['', module paths..., the fx node's own name]
        if items.len() >= 2 {
            return items[1..items.len() - 1]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect();
        }
        return vec![];
    }
    if !node.name.starts_with('/') {
        return vec![];
    }
    let comps: Vec<&str> = node.name.split('/').filter(|s| !s.is_empty()).collect();
    let mut out: Vec<String> = Vec::new();
    let mut prev_comp = "";
    for c in comps.iter().take(comps.len().saturating_sub(1)) {
        let full = match out.last() {
            None => c.to_string(),
            Some(last) => match c.strip_prefix(prev_comp).filter(|r| r.starts_with('.')) {
                Some(rest) if !prev_comp.is_empty() => format!("{last}{rest}"),
                _ => format!("{last}.{c}"),
            },
        };
        out.push(full);
        prev_comp = c;
    }
    out
}

impl Importer<'_> {
    fn err(&self, node: &Node, msg: impl std::fmt::Display) -> Error {
        self.model.error(format!(
            "node `{}` ({}): {msg}",
            node.name.escape_debug(),
            node.op_type
        ))
    }

    fn val(&self, node: &Node, name: &str) -> Result<&Val> {
        self.vals.get(name).ok_or_else(|| {
            self.err(
                node,
                format!(
                    "input `{name}` is produced by no earlier node, initializer or graph input"
                ),
            )
        })
    }

    fn konst(&self, node: &Node, k: usize) -> Result<Option<&TensorData>> {
        match node.inputs.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(n) => match self.val(node, n)? {
                Val::Const(t) => Ok(Some(t)),
                Val::Act { .. } => Ok(None),
            },
        }
    }

    fn act(&self, node: &Node, k: usize) -> Result<(Option<usize>, Vec<usize>)> {
        let n = node
            .inputs
            .get(k)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.err(node, format!("input {k} is missing")))?;
        match self.val(node, n)? {
            Val::Act { layer, dims } => Ok((*layer, dims.clone())),
            Val::Const(_) => Err(self.err(
                node,
                format!("input `{n}` is a constant where treevis expects an activation"),
            )),
        }
    }

    fn attr_err(&self, e: super::AttrError) -> Error {
        e.at(&self.model.path)
    }

    /// A unique layer name for `node`: its module path where it is the only node there,
    /// else the path and the op, else the node's name.
    fn name_for(&mut self, node: &Node, hint: Option<String>) -> String {
        let scopes = scopes_of(node);
        let op = node.op_type.to_lowercase();
        let base = hint
            .filter(|h| !self.used_names.contains(h))
            .or_else(|| scopes.last().map(|s| s.to_string()))
            .unwrap_or_else(|| {
                if node.name.is_empty() {
                    format!("{op}_{}", self.layers.len())
                } else {
                    graph::clean(&node.name)
                }
            });
        let mut name = base.clone();
        let mut k = 1;
        while self.used_names.contains(&name) || name == graph::INPUT {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.used_names.insert(name.clone());
        name
    }

    fn push(
        &mut self,
        node: &Node,
        name: String,
        inputs: Vec<Option<usize>>,
        kind: LayerKind,
        dims: Vec<usize>,
    ) {
        let names: Vec<String> = inputs
            .iter()
            .map(|i| match i {
                None => graph::INPUT.to_string(),
                Some(l) => self.layers[*l].name.clone(),
            })
            .collect();
        self.layers.push(LayerSpec {
            name,
            inputs: Some(names),
            kind,
        });
        self.scopes.push(scopes_of(node));
        let idx = self.layers.len() - 1;
        if let Some(out) = node.outputs.first() {
            self.vals.insert(
                out.clone(),
                Val::Act {
                    layer: Some(idx),
                    dims,
                },
            );
        }
    }

    /// Passes the activation of input 0 through as the node's output (a no-op node).
    fn alias(&mut self, node: &Node) -> Result<()> {
        let v = self.val(node, &node.inputs[0])?.clone();
        if let Some(o) = node.outputs.first() {
            self.vals.insert(o.clone(), v);
        }
        Ok(())
    }

    fn weight(&mut self, layer: &str, suffix: &str, t: Tensor) {
        self.tensors.insert(format!("{layer}.{suffix}"), t);
    }

    fn node(
        &mut self,
        i: usize,
        node: &Node,
        consumers: &HashMap<String, Vec<usize>>,
        skip: &mut HashSet<usize>,
    ) -> Result<()> {
        if !node.domain.is_empty() {
            return Err(self.err(
                node,
                format!("operator domain `{}` is not supported", node.domain),
            ));
        }
        if node.op_type == "Constant" {
            let t = constant_value(node).map_err(|m| self.err(node, m))?;
            if let Some(o) = node.outputs.first() {
                self.vals.insert(o.clone(), Val::Const(t));
            }
            return Ok(());
        }
        // a node whose inputs are all known is folded at load
        let all_const = node
            .inputs
            .iter()
            .filter(|s| !s.is_empty())
            .all(|s| matches!(self.vals.get(s), Some(Val::Const(_))));
        if all_const && !node.inputs.is_empty() {
            let ins: Vec<Option<&TensorData>> = node
                .inputs
                .iter()
                .map(|s| match self.vals.get(s) {
                    Some(Val::Const(t)) => Some(t),
                    _ => None,
                })
                .collect();
            let out = fold(node, &ins).map_err(|m| self.err(node, m))?;
            if let Some(o) = node.outputs.first() {
                self.vals.insert(o.clone(), Val::Const(out));
            }
            return Ok(());
        }
        if node.op_type == "Shape" {
            let (_, dims) = self.act(node, 0)?;
            let v: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
            let v = slice_range(node, v).map_err(|m| self.err(node, m))?;
            if let Some(o) = node.outputs.first() {
                self.vals.insert(
                    o.clone(),
                    Val::Const(TensorData {
                        dims: vec![v.len()],
                        values: Values::I64(v),
                    }),
                );
            }
            return Ok(());
        }
        let single_user = |name: &str| -> Option<usize> {
            match consumers.get(name).map(|v| v.as_slice()) {
                Some([one]) if *one != usize::MAX => Some(*one),
                _ => None,
            }
        };
        let nodes = &self.model.graph.nodes;
        match node.op_type.as_str() {
            "Conv" => self.conv(node),
            "Gemm" => self.gemm(node),
            "MatMul" => {
                // MatMul by a constant, perhaps followed by Add of a bias vector
                let w = self
                    .konst(node, 1)?
                    .ok_or_else(|| self.err(node, "MatMul of two activations is not supported"))?
                    .clone();
                let mut bias = None;
                if let Some(j) = single_user(&node.outputs[0]) {
                    let next = &nodes[j];
                    if next.op_type == "Add" && next.inputs.len() == 2 {
                        let other = if next.inputs[0] == node.outputs[0] { 1 } else { 0 };
                        if let Some(Val::Const(b)) = self.vals.get(&next.inputs[other]) {
                            bias = Some((j, b.clone()));
                        }
                    }
                }
                let (src, dims) = self.act(node, 0)?;
                if dims.len() != 2 || w.dims.len() != 2 || w.dims[0] != dims[1] {
                    return Err(self.err(
                        node,
                        format!("MatMul of {dims:?} by {:?}: treevis takes [N, in] x [in, out]", w.dims),
                    ));
                }
                let (fin, fout) = (w.dims[0], w.dims[1]);
                let wt = tensor_of(&w).map_err(|m| self.err(node, m))?.t()?.contiguous()?;
                // named for the node whose output the layer's is (the bias Add's, if fused)
                let name = match &bias {
                    Some((j, _)) => self.name_for(&nodes[*j], None),
                    None => self.name_for(node, None),
                };
                self.weight(&name, "weight", wt);
                let has_bias = if let Some((j, b)) = &bias {
                    if b.dims.iter().product::<usize>() != fout {
                        return Err(self.err(&nodes[*j], format!("bias of {:?} for {fout} outputs", b.dims)));
                    }
                    let bt = tensor_of(b).map_err(|m| self.err(node, m))?.flatten_all()?;
                    self.weight(&name, "bias", bt);
                    skip.insert(*j);
                    true
                } else {
                    false
                };
                let _ = fin;
                let out_name = bias
                    .as_ref()
                    .map(|(j, _)| nodes[*j].outputs[0].clone())
                    .unwrap_or_else(|| node.outputs[0].clone());
                self.push(
                    node,
                    name,
                    vec![src],
                    LayerKind::Linear {
                        out: Some(fout),
                        weight: None,
                        bias: None,
                        bias_term: has_bias,
                    },
                    vec![1, fout],
                );
                let v = self
                    .vals
                    .get(&node.outputs[0])
                    .cloned()
                    .ok_or_else(|| Error::internal("an ONNX value that was just pushed is gone"))?;
                self.vals.insert(out_name, v);
                Ok(())
            }
            "BatchNormalization" => {
                let (src, dims) = self.act(node, 0)?;
                let eps = node.float("epsilon").map_err(|e| self.attr_err(e))?.unwrap_or(1e-5);
                let name = self.name_for(node, None);
                for (k, suffix) in [(1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")] {
                    let t = self
                        .konst(node, k)?
                        .ok_or_else(|| self.err(node, format!("input {k} ({suffix}) is not a constant")))?
                        .clone();
                    let t = tensor_of(&t).map_err(|m| self.err(node, m))?.flatten_all()?;
                    self.weight(&name, suffix, t);
                }
                self.push(node, name, vec![src], LayerKind::Batchnorm { eps }, dims);
                Ok(())
            }
            "Relu" => self.unary(node, LayerKind::Relu),
            "Sigmoid" => {
                // x * Sigmoid(x): SiLU
                if let Some(j) = single_user(&node.outputs[0]) {
                    let next = &nodes[j];
                    let x = &node.inputs[0];
                    if next.op_type == "Mul"
                        && next.inputs.len() == 2
                        && next.inputs.contains(x)
                        && next.inputs.contains(&node.outputs[0])
                    {
                        skip.insert(j);
                        self.unary(node, LayerKind::Silu)?;
                        let v = self
                    .vals
                    .get(&node.outputs[0])
                    .cloned()
                    .ok_or_else(|| Error::internal("an ONNX value that was just pushed is gone"))?;
                        self.vals.insert(next.outputs[0].clone(), v);
                        return Ok(());
                    }
                }
                self.unary(node, LayerKind::Sigmoid)
            }
            "Tanh" => self.unary(node, LayerKind::Tanh),
            "HardSwish" => self.unary(node, LayerKind::Hardswish),
            "Gelu" => self.unary(node, LayerKind::Gelu),
            "HardSigmoid" => {
                let alpha = node.float("alpha").map_err(|e| self.attr_err(e))?.unwrap_or(0.2);
                let beta = node.float("beta").map_err(|e| self.attr_err(e))?.unwrap_or(0.5);
                self.unary(node, LayerKind::Hardsigmoid { alpha, beta })
            }
            "LeakyRelu" => {
                let alpha = node.float("alpha").map_err(|e| self.attr_err(e))?.unwrap_or(0.01);
                self.unary(node, LayerKind::LeakyRelu { alpha })
            }
            "PRelu" => {
                let slope = self
                    .konst(node, 1)?
                    .and_then(|t| t.f32s().map(|v| v.to_vec()))
                    .ok_or_else(|| self.err(node, "the slope is not a constant"))?;
                let (src, d) = self.act(node, 0)?;
                match slope.as_slice() {
                    s if s.iter().all(|v| *v == s[0]) && !s.is_empty() => {
                        self.unary(node, LayerKind::LeakyRelu { alpha: s[0] })
                    }
                    s if d.len() >= 2 && s.len() == d[1] => {
                        let name = self.name_for(node, None);
                        let t = Tensor::from_vec(s.to_vec(), s.len(), &candle_core::Device::Cpu)?;
                        self.weight(&name, "weight", t);
                        self.push(node, name, vec![src], LayerKind::Prelu, d);
                        Ok(())
                    }
                    s => Err(self.err(node, format!("{} slopes for {d:?}: treevis takes one, or one per channel", s.len()))),
                }
            }
            "Clip" => {
                let lo = match node.float("min").map_err(|e| self.attr_err(e))? {
                    Some(v) => Some(v),
                    None => self.konst(node, 1)?.and_then(scalar_f32),
                };
                let hi = match node.float("max").map_err(|e| self.attr_err(e))? {
                    Some(v) => Some(v),
                    None => self.konst(node, 2)?.and_then(scalar_f32),
                };
                for k in [1, 2] {
                    if node.inputs.get(k).is_some_and(|s| !s.is_empty()) && self.konst(node, k)?.is_none() {
                        return Err(self.err(node, "Clip bounds that are not constants are not supported"));
                    }
                }
                let (min, max) = (lo.unwrap_or(f32::NEG_INFINITY), hi.unwrap_or(f32::INFINITY));
                if min == 0.0 && max == f32::INFINITY {
                    self.unary(node, LayerKind::Relu)
                } else {
                    self.unary(node, LayerKind::Clip { min, max })
                }
            }
            "Sum" => {
                let mut srcs = Vec::new();
                let mut dims0: Option<Vec<usize>> = None;
                for k in 0..node.inputs.len() {
                    let (s, d) = self.act(node, k).map_err(|_| {
                        self.err(node, "Sum of a constant and activations is not supported (Add is)")
                    })?;
                    if dims0.as_ref().is_some_and(|d0| *d0 != d) {
                        return Err(self.err(node, format!("sums {dims0:?} and {d:?}: Sum takes inputs of one shape")));
                    }
                    dims0 = Some(d);
                    srcs.push(s);
                }
                if srcs.len() < 2 {
                    return self.alias(node);
                }
                let name = self.name_for(node, None);
                self.push(node, name, srcs, LayerKind::Add(Operand::default()), dims0.ok_or_else(|| Error::internal("Add with no input dims"))?);
                Ok(())
            }
            "Add" | "Sub" | "Mul" | "Div" => self.binary(node),
            "Pad" => self.pad(node, consumers),
            "Concat" => {
                let axis = node.int("axis").map_err(|e| self.attr_err(e))?.unwrap_or(1);
                let mut srcs = Vec::new();
                let mut dims: Option<Vec<usize>> = None;
                for k in 0..node.inputs.len() {
                    let (s, d) = self.act(node, k)?;
                    let ax = norm_axis(axis, d.len()).ok_or_else(|| self.err(node, format!("axis {axis}")))?;
                    if ax != 1 {
                        return Err(self.err(node, format!("concatenation along axis {axis}: treevis concatenates channels (axis 1)")));
                    }
                    dims = Some(match dims {
                        None => d,
                        Some(mut acc) => {
                            if acc.len() != d.len() || acc[2..] != d[2..] {
                                return Err(self.err(node, format!("concatenates {acc:?} and {d:?}")));
                            }
                            acc[1] += d[1];
                            acc
                        }
                    });
                    srcs.push(s);
                }
                if srcs.len() < 2 {
                    return self.alias(node);
                }
                let name = self.name_for(node, None);
                self.push(node, name, srcs, LayerKind::Concat, dims.ok_or_else(|| Error::internal("Concat with no input dims"))?);
                Ok(())
            }
            "MaxPool" | "AveragePool" => self.pool(node),
            "GlobalAveragePool" => self.global_pool(node, true),
            "ReduceMean" => {
                let axes: Vec<i64> = match node.ints("axes").map_err(|e| self.attr_err(e))? {
                    Some(a) => a.to_vec(),
                    None => self
                        .konst(node, 1)?
                        .and_then(|t| t.i64s().map(|v| v.to_vec()))
                        .ok_or_else(|| self.err(node, "ReduceMean without constant axes"))?,
                };
                let (_, d) = self.act(node, 0)?;
                let mut ax: Vec<usize> = axes.iter().filter_map(|&a| norm_axis(a, d.len())).collect();
                ax.sort();
                if d.len() != 4 || ax != [2, 3] {
                    return Err(self.err(node, format!("ReduceMean over axes {axes:?} of {d:?}: treevis takes the spatial mean (axes 2, 3)")));
                }
                let keep = node.int("keepdims").map_err(|e| self.attr_err(e))?.unwrap_or(1) != 0;
                self.global_pool(node, keep)
            }
            "Flatten" => {
                let axis = node.int("axis").map_err(|e| self.attr_err(e))?.unwrap_or(1);
                let (src, d) = self.act(node, 0)?;
                if norm_axis(axis, d.len()) != Some(1) {
                    return Err(self.err(node, format!("Flatten at axis {axis}: treevis flattens after the batch dimension")));
                }
                self.flatten(node, src, d)
            }
            "Reshape" | "Squeeze" => {
                let (src, d) = self.act(node, 0)?;
                let numel: usize = d[1..].iter().product();
                let target: Option<Vec<i64>> = match node.op_type.as_str() {
                    "Reshape" => Some(
                        self.konst(node, 1)?
                            .and_then(|t| t.i64s().map(|v| v.to_vec()))
                            .ok_or_else(|| self.err(node, "the target shape is not a constant"))?,
                    ),
                    _ => None,
                };
                let flat = match &target {
                    Some(t) => {
                        t.len() == 2
                            && (t[0] == 1 || t[0] == -1 || t[0] == 0)
                            && (t[1] == -1 || t[1] as usize == numel)
                    }
                    None => d.len() == 4 && d[2] == 1 && d[3] == 1,
                };
                if d.len() == 2 && target.as_ref().is_some_and(|t| t.len() == 2) {
                    return self.alias(node);
                }
                if !flat {
                    return Err(self.err(node, format!("reshapes {d:?} to {target:?}: treevis reshapes only to [N, features]")));
                }
                self.flatten(node, src, d)
            }
            "Dropout" | "Identity" => self.alias(node),
            "Softmax" | "LogSoftmax" => {
                // only at the end: the logits are its input
                let (src, d) = self.act(node, 0)?;
                self.push(node, format!("{}_softmax", self.layers.len()), vec![src], LayerKind::Softmax, d);
                Ok(())
            }
            "LRN" => {
                let size = node.int("size").map_err(|e| self.attr_err(e))?.unwrap_or(5);
                let alpha = node.float("alpha").map_err(|e| self.attr_err(e))?.unwrap_or(1e-4);
                let beta = node.float("beta").map_err(|e| self.attr_err(e))?.unwrap_or(0.75);
                let bias = node.float("bias").map_err(|e| self.attr_err(e))?.unwrap_or(1.0);
                if size <= 0 || size % 2 == 0 || size > 1 << 10 {
                    return Err(self.err(node, format!("LRN size {size}: treevis takes odd sizes")));
                }
                self.unary(
                    node,
                    LayerKind::Lrn {
                        size: size as usize,
                        alpha,
                        beta,
                        k: bias,
                    },
                )
            }
            other => Err(self.err(
                node,
                format!("op `{other}` is not supported (treevis maps {SUPPORTED}; constant subgraphs are folded)"),
            )),
        }
        .map(|_| {
            let _ = i;
        })
    }

    /// `Add`, `Sub`, `Mul`, `Div` of two activations or of an activation and a constant
    /// (either side), with NumPy broadcasting.
    fn binary(&mut self, node: &Node) -> Result<()> {
        let op = node.op_type.as_str();
        if node.inputs.len() != 2 {
            return Err(self.err(
                node,
                format!("{} inputs: {op} takes two", node.inputs.len()),
            ));
        }
        let kind = |o: Operand| match op {
            "Add" => LayerKind::Add(o),
            "Sub" => LayerKind::Sub(o),
            "Mul" => LayerKind::Mul(o),
            _ => LayerKind::Div(o),
        };
        let consts = (self.konst(node, 0)?.cloned(), self.konst(node, 1)?.cloned());
        let (side, c, k) = match consts {
            (None, None) => {
                let (a, da) = self.act(node, 0)?;
                let (b, db) = self.act(node, 1)?;
                let shape = |d: &[usize]| crate::model::net::Shape::from_dims(d.get(1..)?).ok();
                let out = match (shape(&da), shape(&db)) {
                    (Some(x), Some(y)) if da.len() == db.len() && da[0] == db[0] => {
                        crate::model::binary::broadcast(x, y)
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    self.err(
                        node,
                        format!("{da:?} and {db:?} do not broadcast to one shape"),
                    )
                })?;
                let mut dims = out.dims(1);
                dims[0] = da[0];
                let name = self.name_for(node, None);
                self.push(node, name, vec![a, b], kind(Operand::default()), dims);
                return Ok(());
            }
            (Some(c), None) => (Side::Left, c, 1),
            (None, Some(c)) => (Side::Right, c, 0),
            // folded before it gets here; refused rather than trusted
            (Some(_), Some(_)) => return Err(self.err(node, "both operands are constants")),
        };
        let (src, d) = self.act(node, k)?;
        // the constant without the batch axis, right-aligned as NumPy broadcasts
        let mut cd = c.dims.clone();
        if cd.len() == d.len() {
            if cd[0] != 1 {
                return Err(self.err(
                    node,
                    format!("a constant of shape {:?} spans the batch", c.dims),
                ));
            }
            cd.remove(0);
        }
        let input = crate::model::net::Shape::from_dims(d.get(1..).unwrap_or_default())
            .map_err(|e| self.err(node, e))?;
        crate::model::binary::constant_dims(&cd, input).map_err(|m| self.err(node, m))?;
        let t = tensor_of(&c).map_err(|m| self.err(node, m))?;
        let values = crate::model::net::host_vec(&t)?;
        let all = |v: f32| values.iter().all(|x| *x == v);
        // x + 0, x - 0, x * 1, x / 1: a no-op
        let neutral = match (op, side) {
            ("Add", _) | ("Sub", Side::Right) => all(0.0),
            ("Mul", _) | ("Div", Side::Right) => all(1.0),
            _ => false,
        };
        if neutral {
            return self.alias_input(node, k);
        }
        if op == "Div" && side == Side::Right && values.contains(&0.0) {
            return Err(self.err(node, "division by a constant that holds 0"));
        }
        let name = self.name_for(node, None);
        self.weight(&name, "constant", t.reshape(cd)?);
        self.push(
            node,
            name,
            vec![src],
            kind(Operand {
                constant: Some(side),
            }),
            d,
        );
        Ok(())
    }

    /// A zero `Pad` of the spatial axes, folded into the convolution (or average pool)
    /// that takes it; any other Pad is an error naming what is supported.
    fn pad(&mut self, node: &Node, consumers: &HashMap<String, Vec<usize>>) -> Result<()> {
        let mode = node
            .string("mode")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or_default();
        if !(mode.is_empty() || mode == "constant") {
            return Err(self.err(
                node,
                format!(
                    "Pad mode `{mode}`: treevis folds zero padding into the convolution after it"
                ),
            ));
        }
        let pads: Vec<i64> = match node.ints("pads").map_err(|e| self.attr_err(e))? {
            Some(p) => p.to_vec(),
            None => self
                .konst(node, 1)?
                .and_then(|t| t.i64s().map(|v| v.to_vec()))
                .ok_or_else(|| self.err(node, "the pads are not a constant"))?,
        };
        let value = match node.float("value").map_err(|e| self.attr_err(e))? {
            Some(v) => v,
            None => self.konst(node, 2)?.and_then(scalar_f32).unwrap_or(0.0),
        };
        if node.inputs.len() > 3 && !node.inputs[3].is_empty() {
            return Err(self.err(node, "Pad with axes is not supported"));
        }
        let (_, d) = self.act(node, 0)?;
        // ONNX order: every axis' begin, then every axis' end
        let ok = d.len() == 4
            && pads.len() == 8
            && value == 0.0
            && [0, 1, 4, 5].iter().all(|&i| pads[i] == 0)
            && pads.iter().all(|&p| (0..=MAX_GEOMETRY as i64).contains(&p));
        let users: Vec<&Node> = consumers
            .get(&node.outputs[0])
            .map(|v| {
                v.iter()
                    .filter_map(|&j| self.model.graph.nodes.get(j))
                    .collect()
            })
            .unwrap_or_default();
        let foldable = users
            .iter()
            .all(|n| n.op_type == "Conv" || n.op_type == "AveragePool")
            && !users.is_empty();
        if !ok || !foldable {
            return Err(self.err(
                node,
                format!("Pad {pads:?} (value {value}) of {d:?}: treevis folds zero padding of the two spatial axes into the Conv or AveragePool that takes it"),
            ));
        }
        let extra = [
            pads[2] as usize,
            pads[3] as usize,
            pads[6] as usize,
            pads[7] as usize,
        ];
        self.padded.insert(node.outputs[0].clone(), extra);
        self.alias(node)
    }

    /// Passes the activation of input `k` through as the node's output.
    fn alias_input(&mut self, node: &Node, k: usize) -> Result<()> {
        let v = self.val(node, &node.inputs[k])?.clone();
        if let Some(o) = node.outputs.first() {
            self.vals.insert(o.clone(), v);
        }
        Ok(())
    }

    fn unary(&mut self, node: &Node, kind: LayerKind) -> Result<()> {
        let (src, dims) = self.act(node, 0)?;
        let name = self.name_for(node, None);
        self.push(node, name, vec![src], kind, dims);
        Ok(())
    }

    fn flatten(&mut self, node: &Node, src: Option<usize>, d: Vec<usize>) -> Result<()> {
        if d.len() == 2 {
            return self.alias(node);
        }
        let numel = d[1..].iter().product();
        let name = self.name_for(node, None);
        self.push(node, name, vec![src], LayerKind::Flatten, vec![1, numel]);
        Ok(())
    }

    fn global_pool(&mut self, node: &Node, keep: bool) -> Result<()> {
        let (src, d) = self.act(node, 0)?;
        if d.len() != 4 {
            return Err(self.err(node, format!("global pooling of {d:?}")));
        }
        let name = self.name_for(node, None);
        self.push(
            node,
            name.clone(),
            vec![src],
            LayerKind::AdaptiveAvgpool { output: [1, 1] },
            vec![1, d[1], 1, 1],
        );
        if !keep {
            let l = self.layers.len() - 1;
            let fname = self.name_for(node, Some(format!("{name}.flatten")));
            self.push(
                node,
                fname,
                vec![Some(l)],
                LayerKind::Flatten,
                vec![1, d[1]],
            );
        }
        Ok(())
    }

    fn conv(&mut self, node: &Node) -> Result<()> {
        let (src, d) = self.act(node, 0)?;
        let w = self
            .konst(node, 1)?
            .ok_or_else(|| self.err(node, "the weights are not a constant"))?
            .clone();
        if d.len() != 4 || w.dims.len() != 4 {
            return Err(self.err(
                node,
                format!(
                    "a 2-D convolution of {d:?} by {:?} is what treevis runs",
                    w.dims
                ),
            ));
        }
        let ints = |a: &str| node.ints(a).map_err(|e| self.attr_err(e));
        let kernel = match ints("kernel_shape")? {
            Some(k) => k.to_vec(),
            None => vec![w.dims[2] as i64, w.dims[3] as i64],
        };
        let strides = ints("strides")?.map(|s| s.to_vec()).unwrap_or(vec![1, 1]);
        let dil = ints("dilations")?.map(|s| s.to_vec()).unwrap_or(vec![1, 1]);
        let groups = node
            .int("group")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or(1);
        let auto_pad = node
            .string("auto_pad")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or_default();
        let mut pads = self.pads(node, &d, &kernel, &strides, &dil, &auto_pad)?;
        if let Some(extra) = self.padded.get(&node.inputs[0]) {
            // a zero Pad before the convolution, folded into it
            for (p, e) in pads.iter_mut().zip(extra) {
                *p += *e as i64;
            }
        }
        let kernel = self.hw(node, &kernel, "kernel_shape", 1)?;
        let stride = self.hw(node, &strides, "strides", 1)?;
        let dilation = self.hw(node, &dil, "dilations", 1)?;
        let pad = self.pads4(node, &pads)?;
        if groups <= 0 || groups as usize > d[1] || d[1] % groups as usize != 0 {
            return Err(self.err(node, format!("group {groups} for {} input channels", d[1])));
        }
        let groups = groups as usize;
        let cout = w.dims[0];
        if w.dims[2] != kernel.h() || w.dims[3] != kernel.w() {
            return Err(self.err(
                node,
                format!("weights of {:?} for a {kernel} kernel", w.dims),
            ));
        }
        let out = |a: usize| {
            let pads = pad.begin(a) + pad.end(a);
            crate::model::kernels::conv_out(d[2 + a], kernel.0[a], stride.0[a], pads, dilation.0[a])
                .ok_or_else(|| self.err(node, "the input is smaller than the kernel"))
        };
        let (oh, ow) = (out(0)?, out(1)?);
        let hint = node.inputs[1].strip_suffix(".weight").map(str::to_string);
        let name = self.name_for(node, hint);
        let wt = tensor_of(&w).map_err(|m| self.err(node, m))?;
        self.weight(&name, "weight", wt);
        let bias_term = match self.konst(node, 2)? {
            Some(b) => {
                let bt = tensor_of(b).map_err(|m| self.err(node, m))?.flatten_all()?;
                self.weight(&name, "bias", bt);
                true
            }
            None if node.inputs.get(2).is_some_and(|s| !s.is_empty()) => {
                return Err(self.err(node, "the bias is not a constant"))
            }
            None => false,
        };
        let depthwise = groups > 1 && groups == d[1] && w.dims[1] == 1;
        self.push(
            node,
            name,
            vec![src],
            LayerKind::Conv {
                out: Some(cout),
                kernel,
                stride,
                pad,
                dilation,
                groups: if depthwise { 1 } else { groups },
                depthwise,
                weight: None,
                bias: None,
                bias_term,
            },
            vec![1, cout, oh, ow],
        );
        Ok(())
    }

    /// Explicit pads `[top, left, bottom, right]`, from `pads` or `auto_pad`.
    fn pads(
        &self,
        node: &Node,
        d: &[usize],
        kernel: &[i64],
        strides: &[i64],
        dil: &[i64],
        auto_pad: &str,
    ) -> Result<Vec<i64>> {
        match auto_pad {
            "" | "NOTSET" => Ok(node
                .ints("pads")
                .map_err(|e| self.attr_err(e))?
                .map(|p| p.to_vec())
                .unwrap_or(vec![0; 4])),
            "VALID" => Ok(vec![0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut p = vec![0i64; 4];
                for k in 0..2 {
                    let (size, s, kk, dd) = (
                        d[2 + k] as i64,
                        strides.get(k).copied().unwrap_or(1),
                        kernel.get(k).copied().unwrap_or(1),
                        dil.get(k).copied().unwrap_or(1),
                    );
                    let out = (size + s - 1) / s.max(1);
                    let total = ((out - 1) * s + (kk - 1) * dd + 1 - size).max(0);
                    let (lo, hi) = if auto_pad == "SAME_UPPER" {
                        (total / 2, total - total / 2)
                    } else {
                        (total - total / 2, total / 2)
                    };
                    p[k] = lo;
                    p[k + 2] = hi;
                }
                Ok(p)
            }
            other => Err(self.err(node, format!("auto_pad `{other}`"))),
        }
    }

    /// A per-axis attribute (`[h, w]`, each `>= min`) checked against treevis's limits.
    fn hw(&self, node: &Node, v: &[i64], what: &str, min: i64) -> Result<Hw> {
        let ok = |x: i64| x >= min && x <= MAX_GEOMETRY as i64;
        match v {
            [h, w] if ok(*h) && ok(*w) => Ok(Hw([*h as usize, *w as usize])),
            _ => Err(self.err(
                node,
                format!(
                    "{what} {v:?}: treevis takes two values from {min} to {MAX_GEOMETRY} (2-D)"
                ),
            )),
        }
    }

    /// ONNX pads `[top, left, bottom, right]` checked against treevis's limits.
    fn pads4(&self, node: &Node, v: &[i64]) -> Result<Pads> {
        let ok = |x: &i64| (0..=MAX_GEOMETRY as i64).contains(x);
        match v {
            [t, l, b, r] if v.iter().all(ok) => {
                Ok(Pads([*t as usize, *l as usize, *b as usize, *r as usize]))
            }
            _ => Err(self.err(
                node,
                format!("pads {v:?}: treevis takes four values from 0 to {MAX_GEOMETRY}"),
            )),
        }
    }

    fn pool(&mut self, node: &Node) -> Result<()> {
        let (src, d) = self.act(node, 0)?;
        if d.len() != 4 {
            return Err(self.err(node, format!("2-D pooling of {d:?}")));
        }
        let ints = |a: &str| node.ints(a).map_err(|e| self.attr_err(e));
        let kernel = ints("kernel_shape")?
            .map(|k| k.to_vec())
            .ok_or_else(|| self.err(node, "no kernel_shape"))?;
        let strides = ints("strides")?.map(|s| s.to_vec()).unwrap_or(vec![1, 1]);
        if let Some(dl) = ints("dilations")? {
            if dl.iter().any(|&v| v != 1) {
                return Err(self.err(node, "dilated pooling is not supported"));
            }
        }
        let auto_pad = node
            .string("auto_pad")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or_default();
        let mut pads = self.pads(node, &d, &kernel, &strides, &[1, 1], &auto_pad)?;
        let ceil = node
            .int("ceil_mode")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or(0)
            != 0;
        let max = node.op_type == "MaxPool";
        let mut include = node
            .int("count_include_pad")
            .map_err(|e| self.attr_err(e))?
            .unwrap_or(0)
            != 0;
        if let Some(extra) = self.padded.get(&node.inputs[0]) {
            // a zero Pad before an average pool: padding the pool counts
            if pads.iter().any(|&p| p != 0) && !include {
                return Err(self.err(
                    node,
                    "a Pad before an average pool that pads again without counting the padding",
                ));
            }
            for (p, e) in pads.iter_mut().zip(extra) {
                *p += *e as i64;
            }
            include = true;
        }
        let spec = PoolSpec {
            kernel: self.hw(node, &kernel, "kernel_shape", 1)?,
            stride: self.hw(node, &strides, "strides", 1)?,
            pad: self.pads4(node, &pads)?,
            ceil,
            count_include_pad: include || max,
        };
        if (0..2).any(|a| spec.pad.begin(a).max(spec.pad.end(a)) * 2 > spec.kernel.0[a]) {
            return Err(self.err(
                node,
                format!("pads {pads:?} larger than half the window {}", spec.kernel),
            ));
        }
        let kind = if max {
            if node.outputs.len() > 1 && !node.outputs[1].is_empty() {
                return Err(self.err(node, "MaxPool's indices output is not supported"));
            }
            LayerKind::Maxpool(spec)
        } else {
            LayerKind::Avgpool(spec)
        };
        let out = |a: usize| {
            crate::model::kernels::pool_out_axis(d[2 + a], &spec, a)
                .ok_or_else(|| self.err(node, "input smaller than the window"))
        };
        let (oh, ow) = (out(0)?, out(1)?);
        let name = self.name_for(node, None);
        self.push(node, name, vec![src], kind, vec![1, d[1], oh, ow]);
        Ok(())
    }

    /// The layer whose output is the logits: the graph's output, or the input of a final
    /// Softmax.
    fn logits_layer(&self, out: &str) -> Result<usize> {
        let Some(Val::Act { layer: Some(l), .. }) = self.vals.get(out) else {
            return Err(self.model.error(format!(
                "the graph output `{out}` is not computed from the input"
            )));
        };
        let mut l = *l;
        while let LayerKind::Softmax = self.layers[l].kind {
            let src = self.layers[l]
                .inputs
                .as_ref()
                .and_then(|i| i.first())
                .cloned()
                .unwrap_or_default();
            l = self
                .layers
                .iter()
                .position(|x| x.name == src)
                .ok_or_else(|| self.model.error("the softmax takes the input directly"))?;
        }
        if self
            .layers
            .iter()
            .skip(l + 1)
            .any(|x| !matches!(x.kind, LayerKind::Softmax))
        {
            return Err(self.model.error(format!(
                "layers after the logits `{}` other than a final Softmax",
                self.layers[l].name
            )));
        }
        Ok(l)
    }
}

/// The product of `dims`, `None` on overflow.
fn checked_numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

fn norm_axis(a: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if a < 0 { a + r } else { a };
    (0..r).contains(&a).then_some(a as usize)
}

fn scalar_f32(t: &TensorData) -> Option<f32> {
    match &t.values {
        Values::F32(v) if v.len() == 1 => Some(v[0]),
        Values::I64(v) if v.len() == 1 => Some(v[0] as f32),
        _ => None,
    }
}

fn tensor_of(t: &TensorData) -> std::result::Result<Tensor, String> {
    let spread = t
        .dims
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)));
    if spread.is_none_or(|n| n > super::MAX_ELEMENTS) {
        return Err(format!("a tensor of dims {:?} is too large", t.dims));
    }
    let v = t
        .f32s()
        .ok_or_else(|| "weights are integers, not floats".to_string())?;
    if v.iter().any(|x| !x.is_finite()) {
        return Err("weights hold NaN or infinite values".into());
    }
    Tensor::from_vec(v.to_vec(), t.dims.clone(), &Device::Cpu).map_err(|e| e.to_string())
}

/// `Shape`'s `start`/`end` attributes (opset 15).
fn slice_range(node: &Node, v: Vec<i64>) -> std::result::Result<Vec<i64>, String> {
    let n = v.len() as i64;
    let clampi = |x: i64| if x < 0 { (x + n).max(0) } else { x.min(n) } as usize;
    let start = node.int("start").map_err(|e| e.to_string())?.unwrap_or(0);
    let end = node.int("end").map_err(|e| e.to_string())?.unwrap_or(n);
    let (a, b) = (clampi(start), clampi(end));
    Ok(if a < b { v[a..b].to_vec() } else { vec![] })
}

/// The value of a `Constant` node.
fn constant_value(node: &Node) -> std::result::Result<TensorData, String> {
    if let Some(t) = node.tensor("value").map_err(|e| e.to_string())? {
        return Ok(t.clone());
    }
    if let Some(v) = node.float("value_float").map_err(|e| e.to_string())? {
        return Ok(TensorData {
            dims: vec![],
            values: Values::F32(vec![v]),
        });
    }
    if let Some(v) = node.floats("value_floats").map_err(|e| e.to_string())? {
        return Ok(TensorData {
            dims: vec![v.len()],
            values: Values::F32(v.to_vec()),
        });
    }
    if let Some(v) = node.int("value_int").map_err(|e| e.to_string())? {
        return Ok(TensorData {
            dims: vec![],
            values: Values::I64(vec![v]),
        });
    }
    if let Some(v) = node.ints("value_ints").map_err(|e| e.to_string())? {
        return Ok(TensorData {
            dims: vec![v.len()],
            values: Values::I64(v.to_vec()),
        });
    }
    Err("a Constant without a value treevis reads (value, value_float(s), value_int(s))".into())
}

/// Folds a node whose inputs are all constants (the small integer subgraphs exporters
/// write to compute shapes, and casts of weights).
fn fold(node: &Node, ins: &[Option<&TensorData>]) -> std::result::Result<TensorData, String> {
    let get = |k: usize| {
        ins.get(k)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {k} is missing"))
    };
    let ints = |k: usize| -> std::result::Result<Vec<i64>, String> {
        match &get(k)?.values {
            Values::I64(v) => Ok(v.clone()),
            Values::F32(v) => Ok(v.iter().map(|x| *x as i64).collect()),
        }
    };
    let same = |t: &TensorData| Ok(t.clone());
    match node.op_type.as_str() {
        "Identity" | "Cast" | "Dropout" => {
            let t = get(0)?;
            if node.op_type == "Cast" {
                // to: 1 float, 7 int64, 6 int32, 9 bool, 10 float16, 11 double
                let to = node.int("to").map_err(|e| e.to_string())?.unwrap_or(1);
                return Ok(match (to, &t.values) {
                    (1 | 10 | 11 | 16, Values::I64(v)) => TensorData {
                        dims: t.dims.clone(),
                        values: Values::F32(v.iter().map(|x| *x as f32).collect()),
                    },
                    (1 | 10 | 11 | 16, Values::F32(_)) => t.clone(),
                    (_, Values::F32(v)) => TensorData {
                        dims: t.dims.clone(),
                        values: Values::I64(v.iter().map(|x| *x as i64).collect()),
                    },
                    (_, Values::I64(_)) => t.clone(),
                });
            }
            same(t)
        }
        "Gather" => {
            let data = get(0)?;
            let idx = ints(1)?;
            let axis = node.int("axis").map_err(|e| e.to_string())?.unwrap_or(0);
            if data.dims.len() != 1 || axis != 0 {
                return Err("Gather folds only 1-D constants along axis 0".into());
            }
            let n = data.dims[0] as i64;
            let pick: Vec<usize> = idx
                .iter()
                .map(|&i| {
                    let i = if i < 0 { i + n } else { i };
                    if (0..n).contains(&i) {
                        Ok(i as usize)
                    } else {
                        Err(format!("index {i} out of range {n}"))
                    }
                })
                .collect::<std::result::Result<_, _>>()?;
            let dims = get(1)?.dims.clone();
            Ok(match &data.values {
                Values::I64(v) => TensorData {
                    dims,
                    values: Values::I64(pick.iter().map(|&i| v[i]).collect()),
                },
                Values::F32(v) => TensorData {
                    dims,
                    values: Values::F32(pick.iter().map(|&i| v[i]).collect()),
                },
            })
        }
        "Unsqueeze" | "Squeeze" => {
            let t = get(0)?;
            let n: usize = t.values.len();
            let dims = if node.op_type == "Unsqueeze" {
                let mut d = t.dims.clone();
                let axes = match node.ints("axes").map_err(|e| e.to_string())? {
                    Some(a) => a.to_vec(),
                    None => ints(1)?,
                };
                let rank = d.len() + axes.len();
                let mut ax: Vec<usize> = axes.iter().filter_map(|&a| norm_axis(a, rank)).collect();
                ax.sort();
                for a in ax {
                    if a > d.len() {
                        return Err("Unsqueeze axis out of range".into());
                    }
                    d.insert(a, 1);
                }
                d
            } else {
                t.dims.iter().copied().filter(|&x| x != 1).collect()
            };
            if checked_numel(&dims) != Some(n) {
                return Err("shape mismatch".into());
            }
            Ok(TensorData {
                dims,
                values: t.values.clone(),
            })
        }
        "Concat" => {
            let mut out: Vec<i64> = Vec::new();
            let mut fl: Vec<f32> = Vec::new();
            let mut is_f = false;
            for k in 0..ins.len() {
                let t = get(k)?;
                if t.dims.len() > 1 {
                    return Err("Concat folds only 1-D constants".into());
                }
                match &t.values {
                    Values::I64(v) => out.extend(v),
                    Values::F32(v) => {
                        is_f = true;
                        fl.extend(v)
                    }
                }
            }
            Ok(if is_f {
                TensorData {
                    dims: vec![fl.len()],
                    values: Values::F32(fl),
                }
            } else {
                TensorData {
                    dims: vec![out.len()],
                    values: Values::I64(out),
                }
            })
        }
        "Add" | "Sub" | "Mul" | "Div" => {
            let (a, b) = (get(0)?, get(1)?);
            let bin = |x: f64, y: f64| match node.op_type.as_str() {
                "Add" => x + y,
                "Sub" => x - y,
                "Mul" => x * y,
                _ => x / y,
            };
            let (na, nb) = (a.values.len(), b.values.len());
            if na != nb && na != 1 && nb != 1 {
                return Err("folds elementwise constants of one size, or a scalar".into());
            }
            let n = na.max(nb);
            let dims = if na >= nb {
                a.dims.clone()
            } else {
                b.dims.clone()
            };
            let fa = |t: &TensorData, i: usize| match &t.values {
                Values::I64(v) => v[if v.len() == 1 { 0 } else { i }] as f64,
                Values::F32(v) => v[if v.len() == 1 { 0 } else { i }] as f64,
            };
            let both_int = matches!(a.values, Values::I64(_)) && matches!(b.values, Values::I64(_));
            Ok(if both_int {
                TensorData {
                    dims,
                    values: Values::I64(
                        (0..n)
                            .map(|i| {
                                let (x, y) = (fa(a, i) as i64, fa(b, i) as i64);
                                match node.op_type.as_str() {
                                    "Add" => x.wrapping_add(y),
                                    "Sub" => x.wrapping_sub(y),
                                    "Mul" => x.wrapping_mul(y),
                                    _ => x.checked_div(y).unwrap_or(0),
                                }
                            })
                            .collect(),
                    ),
                }
            } else {
                TensorData {
                    dims,
                    values: Values::F32((0..n).map(|i| bin(fa(a, i), fa(b, i)) as f32).collect()),
                }
            })
        }
        "Reshape" => {
            let t = get(0)?;
            let shape = ints(1)?;
            let n = t.values.len();
            let known: i64 = shape
                .iter()
                .enumerate()
                .map(|(i, &s)| match s {
                    0 => t.dims.get(i).copied().unwrap_or(1) as i64,
                    -1 => 1,
                    s => s,
                })
                .try_fold(1i64, |a, b| a.checked_mul(b))
                .ok_or("the target shape overflows")?;
            let dims: Vec<usize> = shape
                .iter()
                .enumerate()
                .map(|(i, &s)| match s {
                    -1 if known > 0 => n / known as usize,
                    0 => t.dims.get(i).copied().unwrap_or(1),
                    s if s > 0 => s as usize,
                    _ => 0,
                })
                .collect();
            if checked_numel(&dims) != Some(n) {
                return Err(format!("cannot reshape {} values to {shape:?}", n));
            }
            Ok(TensorData {
                dims,
                values: t.values.clone(),
            })
        }
        "Transpose" => {
            let t = get(0)?;
            if t.dims.len() != 2 {
                return Err("Transpose folds only 2-D constants".into());
            }
            let (r, c) = (t.dims[0], t.dims[1]);
            let v = t.f32s().ok_or("Transpose of integers")?;
            let mut out = vec![0f32; r * c];
            for i in 0..r {
                for j in 0..c {
                    out[j * r + i] = v[i * c + j];
                }
            }
            Ok(TensorData {
                dims: vec![c, r],
                values: Values::F32(out),
            })
        }
        other => Err(format!(
            "a constant subgraph uses `{other}`, which treevis does not fold"
        )),
    }
}

impl Importer<'_> {
    fn gemm(&mut self, node: &Node) -> Result<()> {
        let (src, d) = self.act(node, 0)?;
        let f = |a: &str, def: f32| {
            node.float(a)
                .map_err(|e| self.attr_err(e))
                .map(|v| v.unwrap_or(def))
        };
        let i = |a: &str| {
            node.int(a)
                .map_err(|e| self.attr_err(e))
                .map(|v| v.unwrap_or(0))
        };
        let (alpha, beta, ta, tb) = (
            f("alpha", 1.0)?,
            f("beta", 1.0)?,
            i("transA")?,
            i("transB")?,
        );
        if ta != 0 {
            return Err(self.err(node, "Gemm with transA is not supported"));
        }
        let w = self
            .konst(node, 1)?
            .ok_or_else(|| self.err(node, "the weights are not a constant"))?
            .clone();
        if d.len() != 2 || w.dims.len() != 2 {
            return Err(self.err(node, format!("Gemm of {d:?} by {:?}", w.dims)));
        }
        let mut wt = tensor_of(&w).map_err(|m| self.err(node, m))?;
        if tb == 0 {
            wt = wt.t()?.contiguous()?;
        }
        if wt.dims()[1] != d[1] {
            return Err(self.err(
                node,
                format!("weights {:?} for {} input features", w.dims, d[1]),
            ));
        }
        if alpha != 1.0 {
            wt = (wt * alpha as f64)?;
        }
        let fout = wt.dims()[0];
        let hint = node.inputs[1].strip_suffix(".weight").map(str::to_string);
        let name = self.name_for(node, hint);
        self.weight(&name, "weight", wt);
        let bias_term = match self.konst(node, 2)? {
            Some(b) => {
                if b.values.len() != fout && b.values.len() != 1 {
                    return Err(self.err(node, format!("bias of {:?} for {fout} outputs", b.dims)));
                }
                let mut bt = tensor_of(b).map_err(|m| self.err(node, m))?.flatten_all()?;
                if bt.dims()[0] == 1 {
                    bt = bt.broadcast_as(fout)?.contiguous()?;
                }
                if beta != 1.0 {
                    bt = (bt * beta as f64)?;
                }
                self.weight(&name, "bias", bt);
                true
            }
            None => false,
        };
        self.push(
            node,
            name,
            vec![src],
            LayerKind::Linear {
                out: Some(fout),
                weight: None,
                bias: None,
                bias_term,
            },
            vec![1, fout],
        );
        Ok(())
    }
}

/// An activation an exporter spelled out in elementwise ops.
struct Spelled {
    kind: LayerKind,
    /// The activation's input.
    x: String,
    /// Every node of the pattern (the last one produces the activation's output).
    nodes: Vec<usize>,
}

/// Finds hard-swish (`x * Clip(x + 3, 0, 6) / 6`, in either order), hard-sigmoid
/// (`Clip(x + 3, 0, 6) / 6`, `Clip(x / 6 + 0.5, 0, 1)`) and GELU (`x * 0.5 * (1 +
/// Erf(x / sqrt 2))`, the product in any order), keyed by the pattern's last node. Inner
/// values must have no other users.
fn spelled_activations(
    model: &OnnxModel,
    consumers: &HashMap<String, Vec<usize>>,
) -> HashMap<usize, Spelled> {
    let nodes = &model.graph.nodes;
    // scalar constants: initializers and Constant nodes
    let mut scalars: HashMap<&str, f32> = HashMap::new();
    for (n, t) in &model.graph.initializers {
        if let Some(v) = scalar_f32(t) {
            scalars.insert(n.as_str(), v);
        }
    }
    for n in nodes.iter().filter(|n| n.op_type == "Constant") {
        if let (Ok(t), Some(o)) = (constant_value(n), n.outputs.first()) {
            if let Some(v) = scalar_f32(&t) {
                scalars.insert(o.as_str(), v);
            }
        }
    }
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let only_user = |t: &str| -> Option<usize> {
        match consumers.get(t).map(|v| v.as_slice()) {
            Some([one]) if *one != usize::MAX => Some(*one),
            _ => None,
        }
    };
    let near = |a: f32, b: f32| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    // `op(x, c)` with a scalar constant c on either side (for Div: only on the right)
    let with_const = |i: usize, op: &str| -> Option<(String, f32)> {
        let n = &nodes[i];
        if n.op_type != op || n.inputs.len() != 2 {
            return None;
        }
        if let Some(c) = scalars.get(n.inputs[1].as_str()) {
            return Some((n.inputs[0].clone(), *c));
        }
        if op != "Div" && op != "Sub" {
            if let Some(c) = scalars.get(n.inputs[0].as_str()) {
                return Some((n.inputs[1].clone(), *c));
            }
        }
        None
    };
    // x * k: Mul by k or Div by 1/k
    let scaled = |i: usize, k: f32| -> Option<String> {
        with_const(i, "Mul")
            .filter(|(_, c)| near(*c, k))
            .or_else(|| with_const(i, "Div").filter(|(_, c)| near(1.0 / *c, k)))
            .map(|(x, _)| x)
    };
    let clip_bounds = |i: usize| -> Option<(f32, f32)> {
        let n = &nodes[i];
        if n.op_type != "Clip" {
            return None;
        }
        let lo = n.float("min").ok().flatten().or_else(|| {
            n.inputs
                .get(1)
                .and_then(|s| scalars.get(s.as_str()).copied())
        });
        let hi = n.float("max").ok().flatten().or_else(|| {
            n.inputs
                .get(2)
                .and_then(|s| scalars.get(s.as_str()).copied())
        });
        Some((lo?, hi?))
    };
    // the other input of a two-input Mul node `i`, given one of them
    let other = |i: usize, one: &str| -> Option<String> {
        let n = &nodes[i];
        (n.op_type == "Mul" && n.inputs.len() == 2).then_some(())?;
        if n.inputs[0] == one {
            Some(n.inputs[1].clone())
        } else if n.inputs[1] == one {
            Some(n.inputs[0].clone())
        } else {
            None
        }
    };
    let mut found: HashMap<usize, Spelled> = HashMap::new();
    for (ci, _) in nodes.iter().enumerate() {
        // hard-sigmoid / hard-swish around a Clip
        if let Some((lo, hi)) = clip_bounds(ci) {
            let cin = nodes[ci].inputs[0].as_str();
            let Some(&pa) = producer.get(cin) else {
                continue;
            };
            let Some(cout) = nodes[ci].outputs.first() else {
                continue;
            };
            if near(lo, 0.0) && near(hi, 6.0) {
                // Clip(x + 3, 0, 6)
                let Some((x, c)) = with_const(pa, "Add") else {
                    continue;
                };
                if !near(c, 3.0) || only_user(cin) != Some(ci) {
                    continue;
                }
                let Some(u) = only_user(cout) else { continue };
                // (Clip / 6) [* x]  or  (x * Clip) / 6
                if scaled(u, 1.0 / 6.0).as_deref() == Some(cout.as_str()) {
                    let hs_out = &nodes[u].outputs[0];
                    if let Some(m) = only_user(hs_out)
                        .filter(|&m| other(m, hs_out).as_deref() == Some(x.as_str()))
                    {
                        found.insert(
                            m,
                            Spelled {
                                kind: LayerKind::Hardswish,
                                x,
                                nodes: vec![pa, ci, u, m],
                            },
                        );
                    } else {
                        found.insert(
                            u,
                            Spelled {
                                kind: LayerKind::Hardsigmoid {
                                    alpha: 1.0 / 6.0,
                                    beta: 0.5,
                                },
                                x,
                                nodes: vec![pa, ci, u],
                            },
                        );
                    }
                } else if other(u, cout).as_deref() == Some(x.as_str()) {
                    let m_out = &nodes[u].outputs[0];
                    if let Some(d) = only_user(m_out)
                        .filter(|&d| scaled(d, 1.0 / 6.0).as_deref() == Some(m_out.as_str()))
                    {
                        found.insert(
                            d,
                            Spelled {
                                kind: LayerKind::Hardswish,
                                x,
                                nodes: vec![pa, ci, u, d],
                            },
                        );
                    }
                }
            } else if near(lo, 0.0) && near(hi, 1.0) {
                // Clip(x * a + b, 0, 1)
                let Some((inner, b)) = with_const(pa, "Add") else {
                    continue;
                };
                let Some(&pm) = producer.get(inner.as_str()) else {
                    continue;
                };
                let mul = with_const(pm, "Mul")
                    .or_else(|| with_const(pm, "Div").map(|(x, c)| (x, 1.0 / c)));
                let Some((x, a)) = mul else { continue };
                if only_user(cin) != Some(ci) || only_user(&inner) != Some(pa) {
                    continue;
                }
                found.insert(
                    ci,
                    Spelled {
                        kind: LayerKind::Hardsigmoid { alpha: a, beta: b },
                        x,
                        nodes: vec![pm, pa, ci],
                    },
                );
            }
            continue;
        }
        // GELU around an Erf
        if nodes[ci].op_type == "Erf" {
            let ein = nodes[ci].inputs[0].as_str();
            let Some(&pd) = producer.get(ein) else {
                continue;
            };
            let Some(x) = scaled(pd, std::f32::consts::FRAC_1_SQRT_2) else {
                continue;
            };
            let eout = &nodes[ci].outputs[0];
            let Some(q) = only_user(eout) else { continue };
            let Some((_, one)) = with_const(q, "Add") else {
                continue;
            };
            if !near(one, 1.0) || only_user(ein) != Some(ci) {
                continue;
            }
            let qout = &nodes[q].outputs[0];
            let Some(r) = only_user(qout) else { continue };
            let Some(o) = other(r, qout) else {
                // (1 + erf) * 0.5, then * x
                if let Some(h) = scaled(r, 0.5).filter(|v| v == qout) {
                    let _ = h;
                    let rout = &nodes[r].outputs[0];
                    if let Some(m) =
                        only_user(rout).filter(|&m| other(m, rout).as_deref() == Some(x.as_str()))
                    {
                        found.insert(
                            m,
                            Spelled {
                                kind: LayerKind::Gelu,
                                x,
                                nodes: vec![pd, ci, q, r, m],
                            },
                        );
                    }
                }
                continue;
            };
            let rout = &nodes[r].outputs[0];
            if o == x {
                // x * (1 + erf), then * 0.5
                if let Some(m) =
                    only_user(rout).filter(|&m| scaled(m, 0.5).as_deref() == Some(rout.as_str()))
                {
                    found.insert(
                        m,
                        Spelled {
                            kind: LayerKind::Gelu,
                            x,
                            nodes: vec![pd, ci, q, r, m],
                        },
                    );
                }
            } else if let Some(&ph) = producer.get(o.as_str()) {
                // (x * 0.5) * (1 + erf)
                if scaled(ph, 0.5).as_deref() == Some(x.as_str()) && only_user(&o) == Some(r) {
                    found.insert(
                        r,
                        Spelled {
                            kind: LayerKind::Gelu,
                            x,
                            nodes: vec![pd, ph, ci, q, r],
                        },
                    );
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::{Dim, Graph, ValueInfo};
    use std::collections::BTreeMap;

    fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            op_type: op.into(),
            domain: String::new(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            attrs: BTreeMap::new(),
            metadata: vec![],
        }
    }

    fn model(nodes: Vec<Node>, out: &str) -> OnnxModel {
        let mut init = BTreeMap::new();
        init.insert(
            "w".to_string(),
            TensorData {
                dims: vec![4, 3, 3, 3],
                values: Values::F32(vec![0.1; 108]),
            },
        );
        OnnxModel {
            path: "t.onnx".into(),
            ir_version: 8,
            opset: 17,
            producer: "test".into(),
            graph: Graph {
                name: "g".into(),
                inputs: vec![ValueInfo {
                    name: "x".into(),
                    elem_type: 1,
                    dims: Some(vec![
                        Dim::Dynamic("batch".into()),
                        Dim::Fixed(3),
                        Dim::Fixed(8),
                        Dim::Fixed(8),
                    ]),
                }],
                outputs: vec![ValueInfo {
                    name: out.into(),
                    elem_type: 1,
                    dims: None,
                }],
                value_info: vec![],
                nodes,
                initializers: init,
            },
            metadata: vec![],
        }
    }

    #[test]
    fn module_paths_from_both_exporters() {
        let ts = node("/features/features.17/conv/conv.2/Conv", "Conv", &[], &[]);
        assert_eq!(
            scopes_of(&ts),
            [
                "features",
                "features.17",
                "features.17.conv",
                "features.17.conv.2"
            ]
        );
        let r = node("/layer4/layer4.1/relu_1/Relu", "Relu", &[], &[]);
        assert_eq!(scopes_of(&r), ["layer4", "layer4.1", "layer4.1.relu_1"]);
        assert!(scopes_of(&node("/Flatten", "Flatten", &[], &[])).is_empty());
        assert!(scopes_of(&node("Conv_0", "Conv", &[], &[])).is_empty());
        let mut d = node("node_relu_16", "Relu", &[], &[]);
        d.metadata.push((
            "pkg.torch.onnx.name_scopes".into(),
            "['', 'layer4', 'layer4.1', 'layer4.1.relu', 'relu_16']".into(),
        ));
        assert_eq!(scopes_of(&d), ["layer4", "layer4.1", "layer4.1.relu"]);
    }

    #[test]
    fn an_unknown_op_is_named_with_what_is_supported() {
        let m = model(
            vec![
                node("/conv/Conv", "Conv", &["x", "w"], &["c"]),
                node("/odd/Frobnicate", "Frobnicate", &["c"], &["y"]),
            ],
            "y",
        );
        let e = import(&m, "t").err().expect("refused").to_string();
        assert!(
            e.contains("t.onnx")
                && e.contains("/odd/Frobnicate")
                && e.contains("Frobnicate")
                && e.contains("Conv, Gemm"),
            "{e}"
        );
    }

    #[test]
    fn ops_treevis_cannot_read_exactly_are_refused() {
        let konst = |name: &str, dims: Vec<usize>, v: Vec<f32>| {
            let mut n = node(name, "Constant", &[], &[name]);
            n.attrs.insert(
                "value".into(),
                super::super::Attr::Tensor(TensorData {
                    dims,
                    values: Values::F32(v),
                }),
            );
            n
        };
        let mut reflect = node("/p/Pad", "Pad", &["x", "pads"], &["p"]);
        reflect
            .attrs
            .insert("mode".into(), super::super::Attr::Str(b"reflect".to_vec()));
        let pads = {
            let mut n = node("pads", "Constant", &[], &["pads"]);
            n.attrs.insert(
                "value".into(),
                super::super::Attr::Tensor(TensorData {
                    dims: vec![8],
                    values: Values::I64(vec![0, 0, 1, 1, 0, 0, 1, 1]),
                }),
            );
            n
        };
        let cases: Vec<(Vec<Node>, &str, &str)> = vec![
            (
                vec![
                    pads.clone(),
                    reflect,
                    node("/c/Conv", "Conv", &["p", "w"], &["y"]),
                ],
                "y",
                "Pad mode `reflect`",
            ),
            (
                // zero padding before a max pool is not -inf padding
                vec![
                    pads,
                    node("/p/Pad", "Pad", &["x", "pads"], &["p"]),
                    node("/m/MaxPool", "MaxPool", &["p"], &["y"]),
                ],
                "y",
                "folds zero padding",
            ),
            (
                vec![
                    konst("k", vec![1, 4, 1, 1], vec![1.0; 4]),
                    node("/m/Mul", "Mul", &["x", "k"], &["y"]),
                ],
                "y",
                "does not broadcast",
            ),
            (
                vec![
                    konst("k", vec![3, 1, 1], vec![1.0, 0.0, 2.0]),
                    node("/d/Div", "Div", &["x", "k"], &["y"]),
                ],
                "y",
                "holds 0",
            ),
            (
                vec![
                    konst("k", vec![2, 3, 1, 1], vec![1.0; 6]),
                    node("/a/Add", "Add", &["x", "k"], &["y"]),
                ],
                "y",
                "spans the batch",
            ),
            (
                vec![
                    konst("s", vec![2], vec![0.1, 0.2]),
                    node("/r/PRelu", "PRelu", &["x", "s"], &["y"]),
                ],
                "y",
                "one per channel",
            ),
        ];
        for (nodes, out, want) in cases {
            let e = import(&model(nodes, out), "t")
                .err()
                .expect("refused")
                .to_string();
            assert!(e.contains(want) && e.contains("t.onnx"), "{want}: {e}");
        }
    }

    #[test]
    fn malformed_nodes_are_errors_not_panics() {
        for nodes in [
            vec![node("c", "Conv", &["x"], &["y"])],
            vec![node("c", "Conv", &["x", "w"], &[])],
            vec![
                node("a", "Add", &["x"], &["y"]),
                node("m", "Clip", &[], &["z"]),
            ],
            vec![node("r", "Relu", &["nowhere"], &["y"])],
        ] {
            let m = model(nodes, "y");
            assert!(import(&m, "t").is_err());
        }
    }

    #[test]
    fn a_graph_imports_with_dynamic_batch_fixed_and_notes() {
        let m = model(
            vec![
                node("/conv/Conv", "Conv", &["x", "w"], &["c"]),
                node("/relu/Relu", "Relu", &["c"], &["r"]),
                node(
                    "/pool/GlobalAveragePool",
                    "GlobalAveragePool",
                    &["r"],
                    &["p"],
                ),
                node("/Flatten", "Flatten", &["p"], &["y"]),
            ],
            "y",
        );
        let im = import(&m, "t").unwrap();
        assert_eq!(im.spec.input.size, [8, 8]);
        let blobs: Vec<&str> = im.spec.blobs.iter().map(|b| b.name.as_str()).collect();
        // the logits are the pooled view of the ReLU: one blob, named for the pool's module
        assert_eq!(blobs, ["pool"]);
        assert!(im.notes.iter().any(|n| n.contains("preprocessing")));
    }

    #[test]
    fn folding_refuses_overflowing_shapes() {
        let t = TensorData {
            dims: vec![2],
            values: Values::F32(vec![1.0, 2.0]),
        };
        let s = TensorData {
            dims: vec![3],
            values: Values::I64(vec![i64::MAX, i64::MAX, 2]),
        };
        let n = node("r", "Reshape", &["t", "s"], &["o"]);
        assert!(fold(&n, &[Some(&t), Some(&s)]).is_err());
    }
}
