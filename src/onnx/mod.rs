//! ONNX reading: a `.onnx` file (a protobuf `ModelProto`) becomes plain data — the graph's
//! nodes in file order, their attributes, and the initializers converted to `f32` or `i64`
//! values. Weights stored beside the model (`data_location: EXTERNAL`, as PyTorch 2's
//! exporter writes `model.onnx.data`) are read from memory maps of files inside the
//! model's folder only.
//!
//! Nothing here knows about treevis's models; turning a graph into a spec is the caller's
//! job. Every failure is an [`Error::Onnx`] naming the file and the tensor or node; no
//! input panics (see `fuzz/fuzz_targets/onnx.rs`), and sizes are checked before anything
//! is allocated for them.

pub mod import;
pub mod proto;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

use half::{bf16, f16};
use prost::bytes::{Buf, Bytes};
use prost::Message as _;

use crate::error::{Error, Result};
use proto::{attribute_type as at, data_type as dt};

/// The most elements one tensor may have (2^31).
pub const MAX_ELEMENTS: usize = 1 << 31;

/// A model as the file describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct OnnxModel {
    pub path: PathBuf,
    pub ir_version: i64,
    /// The version of the default operator set (domain `""` or `"ai.onnx"`).
    pub opset: i64,
    /// `producer_name`, then `producer_version` after a space when there is one
    /// (`pytorch 2.5.1`).
    pub producer: String,
    pub graph: Graph,
    /// The model's `metadata_props`, in file order.
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub name: String,
    /// The graph inputs that are not initializers (files from IR < 4 list weights as
    /// inputs too).
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    /// Shapes the exporter recorded for intermediate values (often empty).
    pub value_info: Vec<ValueInfo>,
    /// In file order (ONNX requires a topological order).
    pub nodes: Vec<Node>,
    pub initializers: BTreeMap<String, TensorData>,
}

/// A named value's type: `elem_type` is a [`proto::data_type`] (0 where the value is not
/// a tensor or has no type); `dims` is `None` where the rank is unknown.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    pub name: String,
    pub elem_type: i32,
    pub dims: Option<Vec<Dim>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    /// A symbolic dimension (`dim_param`, e.g. `batch`), or `""` where neither a value
    /// nor a name is given.
    Dynamic(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    /// `""` for the default operator set (`"ai.onnx"` in the file is written `""` here).
    pub domain: String,
    /// `""` is an omitted optional input, kept so that positions stay right.
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub attrs: BTreeMap<String, Attr>,
    /// The node's `metadata_props` (PyTorch's dynamo exporter records the module path
    /// and class there), in file order.
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Str(Vec<u8>),
    Tensor(TensorData),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Vec<u8>>),
    /// An attribute kind this reader does not convert (subgraphs, sparse tensors, type
    /// protos, tensor lists); the text says which.
    Unsupported(&'static str),
}

/// A tensor's shape and values; a scalar has `dims == []` and one value.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub dims: Vec<usize>,
    pub values: Values,
}

/// FLOAT, FLOAT16, BFLOAT16 and DOUBLE become `F32`; the integer types and BOOL `I64`.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::I64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TensorData {
    pub fn f32s(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            Values::I64(_) => None,
        }
    }

    pub fn i64s(&self) -> Option<&[i64]> {
        match &self.values {
            Values::I64(v) => Some(v),
            Values::F32(_) => None,
        }
    }
}

impl Attr {
    /// The attribute's ONNX type name (`INTS`), or what is unsupported about it.
    pub fn kind(&self) -> &'static str {
        match self {
            Attr::Float(_) => "FLOAT",
            Attr::Int(_) => "INT",
            Attr::Str(_) => "STRING",
            Attr::Tensor(_) => "TENSOR",
            Attr::Floats(_) => "FLOATS",
            Attr::Ints(_) => "INTS",
            Attr::Strings(_) => "STRINGS",
            Attr::Unsupported(what) => what,
        }
    }
}

/// An attribute of the wrong type, met by one of [`Node`]'s accessors. It knows the node
/// but not the file: `.at(&model.path)` makes it an [`Error::Onnx`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrError {
    pub node: String,
    pub op_type: String,
    pub attr: String,
    /// What the attribute is (`FLOATS`, `GRAPH (subgraph attribute not supported)`).
    pub found: String,
    pub expected: &'static str,
}

impl fmt::Display for AttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} ({}): attribute {} is {}, expected {}",
            q(&self.node),
            self.op_type.escape_debug(),
            q(&self.attr),
            self.found,
            self.expected
        )
    }
}

impl std::error::Error for AttrError {}

impl AttrError {
    /// The error as the library's, naming the model file.
    pub fn at(self, path: &Path) -> Error {
        Error::onnx(path, self.to_string())
    }
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }

    fn wrong(&self, name: &str, a: &Attr, expected: &'static str) -> AttrError {
        AttrError {
            node: self.name.clone(),
            op_type: self.op_type.clone(),
            attr: name.to_string(),
            found: a.kind().to_string(),
            expected,
        }
    }

    /// An INT attribute; `Ok(None)` where the node does not have it.
    pub fn int(&self, name: &str) -> Result<Option<i64>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Int(v)) => Ok(Some(*v)),
            Some(a) => Err(self.wrong(name, a, "INT")),
        }
    }

    pub fn ints(&self, name: &str) -> Result<Option<&[i64]>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Ints(v)) => Ok(Some(v)),
            Some(a) => Err(self.wrong(name, a, "INTS")),
        }
    }

    pub fn float(&self, name: &str) -> Result<Option<f32>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Float(v)) => Ok(Some(*v)),
            Some(a) => Err(self.wrong(name, a, "FLOAT")),
        }
    }

    pub fn floats(&self, name: &str) -> Result<Option<&[f32]>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Floats(v)) => Ok(Some(v)),
            Some(a) => Err(self.wrong(name, a, "FLOATS")),
        }
    }

    /// A STRING attribute as text (an error where it is not UTF-8).
    pub fn string(&self, name: &str) -> Result<Option<String>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Str(v)) => match std::str::from_utf8(v) {
                Ok(s) => Ok(Some(s.to_string())),
                Err(_) => Err(AttrError {
                    found: "a STRING that is not UTF-8".into(),
                    ..self.wrong(name, &Attr::Str(Vec::new()), "UTF-8 text")
                }),
            },
            Some(a) => Err(self.wrong(name, a, "STRING")),
        }
    }

    pub fn tensor(&self, name: &str) -> Result<Option<&TensorData>, AttrError> {
        match self.attr(name) {
            None => Ok(None),
            Some(Attr::Tensor(t)) => Ok(Some(t)),
            Some(a) => Err(self.wrong(name, a, "TENSOR")),
        }
    }
}

impl OnnxModel {
    /// Reads a `.onnx` file, and any external data files it names beside it.
    pub fn read(path: &Path) -> Result<OnnxModel> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        // decoding from `Bytes` lets `raw_data` share this buffer instead of copying it
        decode(Bytes::from(bytes), path)
    }

    /// Reads a model from memory; `path` names it in messages and locates its external
    /// data (relative to `path`'s folder).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<OnnxModel> {
        decode(bytes, path)
    }

    /// An error about this model.
    pub fn error(&self, msg: impl Into<String>) -> Error {
        Error::onnx(&self.path, msg)
    }
}

/// A name in backticks, control characters escaped (messages stay on one line).
fn q(s: &str) -> String {
    format!("`{}`", s.escape_debug())
}

fn pairs(entries: Vec<proto::StringStringEntryProto>) -> Vec<(String, String)> {
    entries
        .into_iter()
        .map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default()))
        .collect()
}

/// What a file that is not ONNX looks like, from its first bytes.
fn looks_like(head: &[u8]) -> Option<&'static str> {
    let text = match std::str::from_utf8(head) {
        Ok(s) => Some(s),
        // a multi-byte character cut at the end of the head
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    Some(if head.starts_with(b"PK\x03\x04") {
        "a zip archive (a PyTorch .pt/.pth checkpoint?)"
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        "a PNG image"
    } else if head.starts_with(&[0xff, 0xd8, 0xff]) {
        "a JPEG image"
    } else if head.starts_with(b"GIF8") {
        "a GIF image"
    } else if head.len() > 1 && head[0] == 0x80 && (2..=5).contains(&head[1]) {
        "a Python pickle (a legacy PyTorch checkpoint?)"
    } else if head.len() > 9 && head[8] == b'{' && head[9] == b'"' {
        "a safetensors file"
    } else if text.is_some_and(|t| {
        !t.is_empty()
            && t.chars()
                .all(|c| !c.is_control() || c.is_ascii_whitespace())
    }) {
        "a text file"
    } else {
        return None;
    })
}

fn decode(mut buf: impl Buf, path: &Path) -> Result<OnnxModel> {
    let head = buf.chunk()[..buf.chunk().len().min(64)].to_vec();
    let not_onnx = |why: String| {
        let hint = looks_like(&head)
            .map(|k| format!("; it looks like {k}"))
            .unwrap_or_default();
        Error::onnx(path, format!("not an ONNX model ({why}){hint}"))
    };
    if !buf.has_remaining() {
        return Err(not_onnx("empty file".into()));
    }
    let m = proto::ModelProto::decode(&mut buf)
        .map_err(|e| not_onnx(format!("protobuf decoding failed: {e}")))?;
    let graph = m
        .graph
        .ok_or_else(|| not_onnx("a ModelProto needs a graph; this one has none".into()))?;
    let mut opset = None;
    for o in &m.opset_import {
        let domain = o.domain.as_deref().unwrap_or("");
        if domain.is_empty() || domain == "ai.onnx" {
            let v = o.version.unwrap_or(0);
            match opset {
                Some(prev) if prev != v => {
                    return Err(Error::onnx(
                        path,
                        format!("opset_import names the default domain twice ({prev} and {v})"),
                    ))
                }
                _ => opset = Some(v),
            }
        }
    }
    let opset = match opset {
        Some(v) if v > 0 => v,
        Some(v) => {
            return Err(Error::onnx(
                path,
                format!("opset version {v} for the default domain"),
            ))
        }
        None => {
            let listed: Vec<String> = m
                .opset_import
                .iter()
                .map(|o| {
                    format!(
                        "{} {}",
                        q(o.domain.as_deref().unwrap_or("")),
                        o.version.unwrap_or(0)
                    )
                })
                .collect();
            return Err(Error::onnx(
                path,
                format!(
                    "no opset_import for the default domain (\"\" or ai.onnx); it lists [{}]",
                    listed.join(", ")
                ),
            ));
        }
    };
    let mut producer = m.producer_name.unwrap_or_default();
    if let Some(v) = m.producer_version.filter(|v| !v.is_empty()) {
        if !producer.is_empty() {
            producer.push(' ');
        }
        producer.push_str(&v);
    }
    let mut reader = Reader {
        path,
        dir: None,
        maps: HashMap::new(),
    };
    let graph = reader.graph(graph)?;
    Ok(OnnxModel {
        path: path.to_path_buf(),
        ir_version: m.ir_version.unwrap_or(0),
        opset,
        producer,
        graph,
        metadata: pairs(m.metadata_props),
    })
}

/// The element types converted, with their sizes in `raw_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F16,
    Bf16,
    F64,
    I8,
    U8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    Bool,
}

impl Elem {
    fn of(t: i32) -> Option<Elem> {
        Some(match t {
            dt::FLOAT => Elem::F32,
            dt::FLOAT16 => Elem::F16,
            dt::BFLOAT16 => Elem::Bf16,
            dt::DOUBLE => Elem::F64,
            dt::INT8 => Elem::I8,
            dt::UINT8 => Elem::U8,
            dt::INT16 => Elem::I16,
            dt::UINT16 => Elem::U16,
            dt::INT32 => Elem::I32,
            dt::UINT32 => Elem::U32,
            dt::INT64 => Elem::I64,
            dt::UINT64 => Elem::U64,
            dt::BOOL => Elem::Bool,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            Elem::I8 | Elem::U8 | Elem::Bool => 1,
            Elem::F16 | Elem::Bf16 | Elem::I16 | Elem::U16 => 2,
            Elem::F32 | Elem::I32 | Elem::U32 => 4,
            Elem::F64 | Elem::I64 | Elem::U64 => 8,
        }
    }

    /// The typed field that carries this type when `raw_data` is not used (onnx.proto:
    /// int32_data also holds the 8/16-bit integers, bool and the bits of (b)float16).
    fn field(self) -> &'static str {
        match self {
            Elem::F32 => "float_data",
            Elem::F64 => "double_data",
            Elem::I64 => "int64_data",
            Elem::U32 | Elem::U64 => "uint64_data",
            _ => "int32_data",
        }
    }

    fn typed_len(self, t: &proto::TensorProto) -> usize {
        match self.field() {
            "float_data" => t.float_data.len(),
            "double_data" => t.double_data.len(),
            "int64_data" => t.int64_data.len(),
            "uint64_data" => t.uint64_data.len(),
            _ => t.int32_data.len(),
        }
    }
}

/// Little-endian `N`-byte words (the caller checked that the length is a multiple of N).
fn words<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    b.chunks_exact(N)
        .map(|c| <[u8; N]>::try_from(c).unwrap_or([0; N]))
}

fn u64_to_i64(v: u64, desc: &str) -> std::result::Result<i64, String> {
    i64::try_from(v)
        .map_err(|_| format!("{desc}: value {v} does not fit in a signed 64-bit integer"))
}

/// Values from little-endian bytes; `b.len()` is the element count times the size.
fn from_le(e: Elem, b: &[u8], desc: &str) -> std::result::Result<Values, String> {
    Ok(match e {
        Elem::F32 => Values::F32(words::<4>(b).map(f32::from_le_bytes).collect()),
        Elem::F16 => Values::F32(
            words::<2>(b)
                .map(|w| f16::from_le_bytes(w).to_f32())
                .collect(),
        ),
        Elem::Bf16 => Values::F32(
            words::<2>(b)
                .map(|w| bf16::from_le_bytes(w).to_f32())
                .collect(),
        ),
        Elem::F64 => Values::F32(
            words::<8>(b)
                .map(|w| f64::from_le_bytes(w) as f32)
                .collect(),
        ),
        Elem::I8 => Values::I64(b.iter().map(|&v| v as i8 as i64).collect()),
        Elem::U8 => Values::I64(b.iter().map(|&v| v as i64).collect()),
        Elem::Bool => Values::I64(b.iter().map(|&v| (v != 0) as i64).collect()),
        Elem::I16 => Values::I64(
            words::<2>(b)
                .map(|w| i16::from_le_bytes(w) as i64)
                .collect(),
        ),
        Elem::U16 => Values::I64(
            words::<2>(b)
                .map(|w| u16::from_le_bytes(w) as i64)
                .collect(),
        ),
        Elem::I32 => Values::I64(
            words::<4>(b)
                .map(|w| i32::from_le_bytes(w) as i64)
                .collect(),
        ),
        Elem::U32 => Values::I64(
            words::<4>(b)
                .map(|w| u32::from_le_bytes(w) as i64)
                .collect(),
        ),
        Elem::I64 => Values::I64(words::<8>(b).map(i64::from_le_bytes).collect()),
        Elem::U64 => Values::I64(
            words::<8>(b)
                .map(|w| u64_to_i64(u64::from_le_bytes(w), desc))
                .collect::<std::result::Result<_, _>>()?,
        ),
    })
}

/// Values from the typed field (its length checked against the element count).
fn from_typed(e: Elem, t: proto::TensorProto, desc: &str) -> std::result::Result<Values, String> {
    let ints = |f: fn(i32) -> i64| Values::I64(t.int32_data.iter().map(|&v| f(v)).collect());
    Ok(match e {
        Elem::F32 => Values::F32(t.float_data),
        Elem::F64 => Values::F32(t.double_data.iter().map(|&v| v as f32).collect()),
        Elem::F16 => Values::F32(
            t.int32_data
                .iter()
                .map(|&v| f16::from_bits(v as u16).to_f32())
                .collect(),
        ),
        Elem::Bf16 => Values::F32(
            t.int32_data
                .iter()
                .map(|&v| bf16::from_bits(v as u16).to_f32())
                .collect(),
        ),
        // as numpy reads them (onnx.numpy_helper): the low bits of each int32
        Elem::I8 => ints(|v| v as i8 as i64),
        Elem::U8 => ints(|v| v as u8 as i64),
        Elem::I16 => ints(|v| v as i16 as i64),
        Elem::U16 => ints(|v| v as u16 as i64),
        Elem::I32 => ints(|v| v as i64),
        Elem::Bool => ints(|v| (v != 0) as i64),
        Elem::I64 => Values::I64(t.int64_data),
        Elem::U32 => Values::I64(t.uint64_data.iter().map(|&v| v as u32 as i64).collect()),
        Elem::U64 => Values::I64(
            t.uint64_data
                .iter()
                .map(|&v| u64_to_i64(v, desc))
                .collect::<std::result::Result<_, _>>()?,
        ),
    })
}

/// The conversion of one graph, with the external data files mapped so far.
struct Reader<'a> {
    path: &'a Path,
    /// The model's folder, canonical; found when first needed.
    dir: Option<PathBuf>,
    /// Each external data file mapped once per read, by canonical path (`None`: empty).
    maps: HashMap<PathBuf, Option<memmap2::Mmap>>,
}

impl Reader<'_> {
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::onnx(self.path, msg)
    }

    fn graph(&mut self, g: proto::GraphProto) -> Result<Graph> {
        if !g.sparse_initializer.is_empty() {
            return Err(self.err(format!(
                "{} sparse initializers: sparse tensors are not supported",
                g.sparse_initializer.len()
            )));
        }
        let mut initializers = BTreeMap::new();
        for (i, t) in g.initializer.into_iter().enumerate() {
            let name = t.name.clone().unwrap_or_default();
            if name.is_empty() {
                return Err(self.err(format!("initializer #{i} has no name")));
            }
            if initializers.contains_key(&name) {
                return Err(self.err(format!("two initializers are named {}", q(&name))));
            }
            let data = self.tensor(t, &format!("initializer {}", q(&name)))?;
            initializers.insert(name, data);
        }
        let inputs = g
            .input
            .into_iter()
            .map(value_info)
            .filter(|v| !initializers.contains_key(&v.name))
            .collect();
        let nodes = g
            .node
            .into_iter()
            .enumerate()
            .map(|(i, n)| self.node(i, n))
            .collect::<Result<_>>()?;
        Ok(Graph {
            name: g.name.unwrap_or_default(),
            inputs,
            outputs: g.output.into_iter().map(value_info).collect(),
            value_info: g.value_info.into_iter().map(value_info).collect(),
            nodes,
            initializers,
        })
    }

    fn node(&mut self, i: usize, n: proto::NodeProto) -> Result<Node> {
        let name = n.name.unwrap_or_default();
        let op_type = n.op_type.unwrap_or_default();
        let label = if name.is_empty() {
            format!("node #{i} ({})", op_type.escape_debug())
        } else {
            format!("node {} ({})", q(&name), op_type.escape_debug())
        };
        if op_type.is_empty() {
            return Err(self.err(format!("{label} has no op_type")));
        }
        let mut domain = n.domain.unwrap_or_default();
        if domain == "ai.onnx" {
            domain.clear();
        }
        let mut attrs = BTreeMap::new();
        for a in n.attribute {
            let an = a.name.clone().unwrap_or_default();
            if an.is_empty() {
                return Err(self.err(format!("{label}: an attribute has no name")));
            }
            if attrs.contains_key(&an) {
                return Err(self.err(format!("{label}: two attributes are named {}", q(&an))));
            }
            let v = self.attr(a, &format!("{label}: attribute {}", q(&an)))?;
            attrs.insert(an, v);
        }
        Ok(Node {
            name,
            op_type,
            domain,
            inputs: n.input,
            outputs: n.output,
            attrs,
            metadata: pairs(n.metadata_props),
        })
    }

    fn attr(&mut self, a: proto::AttributeProto, what: &str) -> Result<Attr> {
        let ty = match a.r#type.unwrap_or(at::UNDEFINED) {
            // files before IR 2 have no type: it is the field that is set
            at::UNDEFINED => {
                if a.g.is_some() {
                    at::GRAPH
                } else if !a.graphs.is_empty() {
                    at::GRAPHS
                } else if a.t.is_some() {
                    at::TENSOR
                } else if a.s.is_some() {
                    at::STRING
                } else if a.i.is_some() {
                    at::INT
                } else if a.f.is_some() {
                    at::FLOAT
                } else if !a.floats.is_empty() {
                    at::FLOATS
                } else if !a.ints.is_empty() {
                    at::INTS
                } else if !a.strings.is_empty() {
                    at::STRINGS
                } else if !a.tensors.is_empty() {
                    at::TENSORS
                } else {
                    at::UNDEFINED
                }
            }
            t => t,
        };
        Ok(match ty {
            at::FLOAT => Attr::Float(a.f.unwrap_or(0.0)),
            at::INT => Attr::Int(a.i.unwrap_or(0)),
            at::STRING => Attr::Str(a.s.unwrap_or_default()),
            at::TENSOR => match a.t {
                Some(t) => Attr::Tensor(self.tensor(t, what)?),
                None => return Err(self.err(format!("{what} is a TENSOR without a tensor"))),
            },
            at::FLOATS => Attr::Floats(a.floats),
            at::INTS => Attr::Ints(a.ints),
            at::STRINGS => Attr::Strings(a.strings),
            at::GRAPH => Attr::Unsupported("GRAPH (subgraph attribute not supported)"),
            at::GRAPHS => Attr::Unsupported("GRAPHS (subgraph attribute not supported)"),
            at::TENSORS => Attr::Unsupported("TENSORS (tensor list attribute not supported)"),
            at::SPARSE_TENSOR => Attr::Unsupported("SPARSE_TENSOR (not supported)"),
            at::SPARSE_TENSORS => Attr::Unsupported("SPARSE_TENSORS (not supported)"),
            at::TYPE_PROTO => Attr::Unsupported("TYPE_PROTO (not supported)"),
            at::TYPE_PROTOS => Attr::Unsupported("TYPE_PROTOS (not supported)"),
            at::UNDEFINED => Attr::Unsupported("UNDEFINED (no type and no value)"),
            _ => Attr::Unsupported("of an unknown attribute type"),
        })
    }

    /// Converts a tensor; `what` names it in messages (`initializer `w``).
    fn tensor(&mut self, t: proto::TensorProto, what: &str) -> Result<TensorData> {
        let ty = t.data_type.unwrap_or(dt::UNDEFINED);
        let ty_name = dt::name(ty);
        let Some(e) = Elem::of(ty) else {
            return Err(self.err(format!(
                "{what}: data type {ty_name} is not supported \
                 (FLOAT, FLOAT16, BFLOAT16, DOUBLE, the integer types and BOOL are)"
            )));
        };
        if t.segment.is_some() {
            return Err(self.err(format!("{what}: segmented tensors are not supported")));
        }
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| self.err(format!("{what}: negative dimension in {:?}", t.dims)))?;
        // the non-zero dims bounded too: an empty tensor of [0, 2^40, 2^40] would overflow
        // any product over part of its shape
        let spread = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d.max(1)))
            .filter(|&n| n <= MAX_ELEMENTS);
        let count = spread.map(|n| if dims.contains(&0) { 0 } else { n });
        let count = count.ok_or_else(|| {
            self.err(format!(
                "{what}: dims {dims:?} make more than {MAX_ELEMENTS} elements"
            ))
        })?;
        let desc = format!("{what} ({ty_name} {dims:?})");
        // count <= 2^31 and sizes <= 8: no overflow, but checked all the same
        let nbytes = count
            .checked_mul(e.size())
            .ok_or_else(|| self.err(format!("{desc}: too large")))?;
        let values = match t.data_location.unwrap_or(0) {
            proto::DATA_LOCATION_EXTERNAL => {
                let path = self.path;
                let b = self.external(&t, &desc, count, e, nbytes)?;
                from_le(e, b, &desc).map_err(|m| Error::onnx(path, m))?
            }
            0 => {
                let typed = e.typed_len(&t);
                match &t.raw_data {
                    Some(raw) if !raw.is_empty() || typed == 0 => {
                        if raw.len() != nbytes {
                            return Err(self.err(format!(
                                "{desc}: raw_data has {} bytes, expected {nbytes} \
                                 ({count} elements of {} bytes)",
                                raw.len(),
                                e.size()
                            )));
                        }
                        from_le(e, raw, &desc).map_err(|m| self.err(m))?
                    }
                    _ => {
                        if typed != count {
                            let no_raw = if t.raw_data.is_none() {
                                " (and there is no raw_data)"
                            } else {
                                ""
                            };
                            return Err(self.err(format!(
                                "{desc}: {} has {typed} values, expected {count}{no_raw}",
                                e.field()
                            )));
                        }
                        from_typed(e, t, &desc).map_err(|m| self.err(m))?
                    }
                }
            }
            l => return Err(self.err(format!("{desc}: unknown data_location {l}"))),
        };
        Ok(TensorData { dims, values })
    }

    /// The model's folder, canonical.
    fn dir(&mut self, desc: &str) -> Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let parent = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let d = parent.canonicalize().map_err(|e| {
            self.err(format!(
                "{desc}: external data, but the model's folder {} cannot be resolved: {e}",
                parent.display()
            ))
        })?;
        self.dir = Some(d.clone());
        Ok(d)
    }

    /// The bytes of an external tensor: `nbytes` of them, from a file inside the model's
    /// folder.
    fn external(
        &mut self,
        t: &proto::TensorProto,
        desc: &str,
        count: usize,
        e: Elem,
        nbytes: usize,
    ) -> Result<&[u8]> {
        let (mut location, mut offset, mut length) = (None, None, None);
        for entry in &t.external_data {
            let v = entry.value.as_deref().unwrap_or("");
            let num = |key: &str| {
                v.trim().parse::<u64>().map_err(|_| {
                    self.err(format!(
                        "{desc}: external data {key} {} is not a byte count",
                        q(v)
                    ))
                })
            };
            match entry.key.as_deref().unwrap_or("") {
                "location" => location = Some(v),
                "offset" => offset = Some(num("offset")?),
                "length" => length = Some(num("length")?),
                _ => {} // checksum, basepath: ignored
            }
        }
        let loc = match location {
            Some(l) if !l.is_empty() => l,
            _ => {
                return Err(self.err(format!(
                    "{desc}: data_location is EXTERNAL but external_data has no location"
                )))
            }
        };
        let rel = Path::new(loc);
        for c in rel.components() {
            match c {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(self.err(format!(
                        "{desc}: external data location {} is refused: it contains `..` \
                         (data files must lie in the model's folder)",
                        q(loc)
                    )))
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.err(format!(
                        "{desc}: external data location {} is refused: it is absolute \
                         (data files must lie in the model's folder)",
                        q(loc)
                    )))
                }
            }
        }
        let dir = self.dir(desc)?;
        let joined = dir.join(rel);
        let file = joined.canonicalize().map_err(|err| {
            self.err(format!(
                "{desc}: external data file {} ({}): {err}",
                q(loc),
                joined.display()
            ))
        })?;
        if !file.starts_with(&dir) {
            return Err(self.err(format!(
                "{desc}: external data location {} is refused: it resolves to {}, outside \
                 the model's folder {}",
                q(loc),
                file.display(),
                dir.display()
            )));
        }
        if !self.maps.contains_key(&file) {
            let io = |err: std::io::Error| {
                Error::onnx(
                    self.path,
                    format!("{desc}: external data file {}: {err}", file.display()),
                )
            };
            let f = File::open(&file).map_err(io)?;
            let meta = f.metadata().map_err(io)?;
            if !meta.is_file() {
                return Err(self.err(format!(
                    "{desc}: external data file {} is not a regular file",
                    file.display()
                )));
            }
            let map = if meta.len() == 0 {
                None
            } else {
                // SAFETY: the map is only read, within this call; a file truncated by
                // another process meanwhile could fault, as with any mapped weights
                Some(unsafe { memmap2::Mmap::map(&f) }.map_err(io)?)
            };
            self.maps.insert(file.clone(), map);
        }
        let data: &[u8] = self
            .maps
            .get(&file)
            .and_then(|m| m.as_deref())
            .unwrap_or(&[]);
        let size = data.len() as u64;
        let off = offset.unwrap_or(0);
        let too_far = |what: String| {
            Error::onnx(
                self.path,
                format!(
                    "{desc}: external data file {} has {size} bytes; {what} goes past its end",
                    q(loc)
                ),
            )
        };
        let len = match length {
            Some(l) => l,
            None => size
                .checked_sub(off)
                .ok_or_else(|| too_far(format!("offset {off}")))?,
        };
        let end = off
            .checked_add(len)
            .filter(|&end| end <= size)
            .ok_or_else(|| too_far(format!("offset {off} + length {len}")))?;
        if len != nbytes as u64 {
            return Err(Error::onnx(
                self.path,
                format!(
                    "{desc}: external data in {} has length {len} bytes, expected {nbytes} \
                     ({count} elements of {} bytes)",
                    q(loc),
                    e.size()
                ),
            ));
        }
        // both bounds are <= the map's length, a usize
        Ok(data.get(off as usize..end as usize).unwrap_or(&[]))
    }
}

fn value_info(v: proto::ValueInfoProto) -> ValueInfo {
    let tensor = v.r#type.and_then(|t| t.value).map(|value| match value {
        proto::type_proto::Value::TensorType(t) => t,
    });
    let (elem_type, dims) = match tensor {
        None => (dt::UNDEFINED, None),
        Some(t) => (
            t.elem_type.unwrap_or(dt::UNDEFINED),
            t.shape.map(|s| {
                s.dim
                    .into_iter()
                    .map(|d| {
                        use proto::tensor_shape_proto::dimension::Value;
                        match d.value {
                            Some(Value::DimValue(v)) => Dim::Fixed(v),
                            Some(Value::DimParam(p)) => Dim::Dynamic(p),
                            None => Dim::Dynamic(String::new()),
                        }
                    })
                    .collect()
            }),
        ),
    };
    ValueInfo {
        name: v.name.unwrap_or_default(),
        elem_type,
        dims,
    }
}

#[cfg(test)]
mod tests;
