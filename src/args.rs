//! Command-line arguments shared by several command modules (`cli`, `cachecli`), turned
//! into library values here.

use clap::Args;

use crate::model::{Model, WeightsSource};

/// Which network, with which weights (every command that loads one).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Built-in model (demo, alexnet, vgg16, caffenet, tiny; torchvision graphs resnet18,
    /// resnet34, resnet50, resnet101, mobilenet_v2), a spec `.toml`, a model folder, or an
    /// ONNX file (`.onnx`; its weights unless --weights is given).
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// Weights: safetensors, PyTorch `.pth` (zip or legacy format), or a Caffe
    /// `.caffemodel`; `random` or `random:SEED` for random weights of the published widths.
    /// Default: the model's own (or what `treevis models fetch` got).
    #[arg(long)]
    pub weights: Option<String>,
}

impl ModelArgs {
    pub fn demo() -> ModelArgs {
        ModelArgs {
            model: "demo".into(),
            weights: None,
        }
    }

    /// Loads the model on `device`.
    pub fn load(&self, device: &candle_core::Device) -> crate::error::Result<Model> {
        crate::catalog::load(
            &self.model,
            &WeightsSource::parse(self.weights.as_deref()),
            device,
        )
    }
}
