//! Command-line arguments shared by several command modules (`cli`, `cachecli`), turned
//! into library values here.

use clap::Args;

use crate::model::{Model, WeightsSource};

/// Which network, with which weights (every command that loads one).
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Built-in model (demo, demo-resnet, alexnet, vgg16, caffenet, tiny; torchvision
    /// graphs resnet18, resnet34, resnet50, resnet101, vgg16_bn, googlenet, densenet121,
    /// mobilenet_v2, squeezenet1_1), a spec `.toml`, a model folder, or an ONNX file
    /// (`.onnx`; its weights unless --weights is given).
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// Weights: safetensors, PyTorch `.pth` (zip or legacy format), or a Caffe
    /// `.caffemodel`; `random` or `random:SEED` for random weights of the published widths.
    /// Default: the model's own (or what `treevis models fetch` got).
    #[arg(long)]
    pub weights: Option<String>,
    /// Class names, one per line (as many as the model has outputs), instead of the
    /// model's own (ImageNet's for 1000-output ONNX files, else numbered classes).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<std::path::PathBuf>,
}

impl ModelArgs {
    pub fn demo() -> ModelArgs {
        ModelArgs {
            model: "demo".into(),
            weights: None,
            labels: None,
        }
    }

    /// Loads the model on `device` (with the `--labels` given).
    pub fn load(&self, device: &candle_core::Device) -> crate::error::Result<Model> {
        let mut model = crate::catalog::load(
            &self.model,
            &WeightsSource::parse(self.weights.as_deref()),
            device,
        )?;
        if let Some(file) = &self.labels {
            model.set_labels(crate::model::read_labels(file)?)?;
        }
        Ok(model)
    }
}

/// A count that must be at least 1 (a batch, a k, a number of steps).
pub fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
