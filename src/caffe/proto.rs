//! The subset of caffe.proto that carries weights, written out by hand (field numbers are
//! facts of the format; no `protoc` at build time). Unknown fields are skipped, so full
//! `.caffemodel` files (solver state, fillers, learning rates) decode.

/// `message BlobShape`
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobShape {
    #[prost(int64, repeated, tag = "1")]
    pub dim: Vec<i64>,
}

/// `message BlobProto`: V2 files give `shape`, V1 files `num/channels/height/width`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobProto {
    #[prost(message, optional, tag = "7")]
    pub shape: Option<BlobShape>,
    #[prost(float, repeated, tag = "5")]
    pub data: Vec<f32>,
    #[prost(double, repeated, tag = "8")]
    pub double_data: Vec<f64>,
    #[prost(int32, optional, tag = "1")]
    pub num: Option<i32>,
    #[prost(int32, optional, tag = "2")]
    pub channels: Option<i32>,
    #[prost(int32, optional, tag = "3")]
    pub height: Option<i32>,
    #[prost(int32, optional, tag = "4")]
    pub width: Option<i32>,
}

/// `message LayerParameter` (V2): name, type and the parameter blobs.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LayerParameter {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub r#type: Option<String>,
    #[prost(message, repeated, tag = "7")]
    pub blobs: Vec<BlobProto>,
}

/// `message V1LayerParameter`: the legacy `layers` entries (type is an enum there).
#[derive(Clone, PartialEq, prost::Message)]
pub struct V1LayerParameter {
    #[prost(string, optional, tag = "4")]
    pub name: Option<String>,
    #[prost(int32, optional, tag = "5")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "6")]
    pub blobs: Vec<BlobProto>,
}

/// `message NetParameter`: `layer` (V2, field 100) or `layers` (V1, field 2).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetParameter {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(message, repeated, tag = "100")]
    pub layer: Vec<LayerParameter>,
    #[prost(message, repeated, tag = "2")]
    pub layers: Vec<V1LayerParameter>,
}

impl BlobProto {
    /// The blob's shape: `shape.dim`, or the legacy 4-d `num, channels, height, width`.
    pub fn dims(&self) -> Vec<usize> {
        match &self.shape {
            Some(s) => s.dim.iter().map(|&d| d.max(0) as usize).collect(),
            None => [self.num, self.channels, self.height, self.width]
                .iter()
                .map(|d| d.unwrap_or(0).max(0) as usize)
                .collect(),
        }
    }

    /// The values, from `data` or `double_data` (taken, not copied: weights are large).
    pub fn into_values(self) -> Vec<f32> {
        if self.data.is_empty() {
            self.double_data.iter().map(|&v| v as f32).collect()
        } else {
            self.data
        }
    }
}

/// The V2 type name of a V1 prototxt `LayerType` (written by name there: `CONVOLUTION`).
pub fn v1_text_type_name(t: &str) -> Option<&'static str> {
    Some(match t {
        "CONVOLUTION" => "Convolution",
        "DATA" => "Data",
        "DROPOUT" => "Dropout",
        "FLATTEN" => "Flatten",
        "INNER_PRODUCT" => "InnerProduct",
        "LRN" => "LRN",
        "POOLING" => "Pooling",
        "RELU" => "ReLU",
        "SOFTMAX" => "Softmax",
        "ACCURACY" => "Accuracy",
        "SOFTMAX_LOSS" => "SoftmaxWithLoss",
        "SPLIT" => "Split",
        "IMAGE_DATA" => "ImageData",
        "MEMORY_DATA" => "MemoryData",
        _ => return None,
    })
}
