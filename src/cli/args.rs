//! Argument groups shared by the commands, and the typed values behind them: raw arguments
//! (clap) become these, and these build the library's values ([`candle_core::Device`],
//! [`WeightsSource`], [`recon::Options`], a loaded [`Model`] with one image's forward
//! state). The library never sees clap.
//!
//! A command that studies one image flattens [`EngineArgs`] (model, weights, labels,
//! device), [`MethodArgs`] (rule, multiplier) and [`InputArgs`] (the image), in that order
//! (the order of `--help`), then calls [`Loaded::new`] and [`MethodArgs::options`].
//! A command whose `--method` takes more than one rule's name (`render --method all`)
//! declares its own `--method` beside a [`Mult`] instead of flattening [`MethodArgs`].

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use anyhow::{bail, Result};
use candle_core::Tensor;
use clap::{Args, ValueEnum};

use crate::data;
use crate::model::{ForwardState, Model, WeightsSource};
use crate::recon::{self, display::Display, MultMode, Rule};

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
    #[arg(long, value_parser = weights_source)]
    pub weights: Option<WeightsSource>,
    /// Class names, one per line (as many as the model has outputs), instead of the
    /// model's own (ImageNet's for 1000-output ONNX files, else numbered classes).
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
}

impl ModelArgs {
    /// The demo network with its own weights and labels.
    pub fn demo() -> ModelArgs {
        ModelArgs {
            model: "demo".into(),
            weights: None,
            labels: None,
        }
    }

    /// `--weights`, or the model's own.
    pub fn weights(&self) -> WeightsSource {
        self.weights.clone().unwrap_or(WeightsSource::Default)
    }

    /// Loads the model on `device` (with the `--labels` given).
    pub fn load(&self, place: &crate::model::Placement) -> crate::error::Result<Model> {
        let mut model = crate::catalog::load(&self.model, &self.weights(), place)?;
        if let Some(file) = &self.labels {
            model.set_labels(crate::model::read_labels(file)?)?;
        }
        Ok(model)
    }
}

/// `--weights`: a file, `random` or `random:SEED` (every string is one of them).
pub fn weights_source(s: &str) -> Result<WeightsSource, std::convert::Infallible> {
    Ok(WeightsSource::parse(Some(s)))
}

/// `--device`: `cpu`, `cuda` or `cuda:N`, checked when the arguments are parsed (a typo is
/// a usage error); whether the device exists is only known when it is opened
/// ([`DeviceArg::open`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceArg {
    Cpu,
    /// The CPU running the tensor-op backend (the code a GPU runs).
    CpuGeneric,
    /// `cuda` (`None`: the first GPU) or `cuda:N`.
    Cuda(Option<usize>),
}

impl DeviceArg {
    /// The candle device (an error in a build without CUDA, or for a missing GPU).
    pub fn open(self) -> crate::error::Result<crate::model::Placement> {
        // the model's parser says why a device cannot be opened, in the words users know
        crate::model::parse_device(&self.to_string())
    }
}

impl FromStr for DeviceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<DeviceArg, String> {
        match s {
            "cpu" => Ok(DeviceArg::Cpu),
            "cpu-generic" => Ok(DeviceArg::CpuGeneric),
            "cuda" => Ok(DeviceArg::Cuda(None)),
            t => match t.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(|n| DeviceArg::Cuda(Some(n)))
                    .map_err(|_| format!("`{s}`: expected cuda:N with N a GPU number")),
                None => Err(format!(
                    "unknown device `{s}`; use cpu, cpu-generic, cuda or cuda:N"
                )),
            },
        }
    }
}

impl fmt::Display for DeviceArg {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            DeviceArg::Cpu => f.write_str("cpu"),
            DeviceArg::CpuGeneric => f.write_str("cpu-generic"),
            DeviceArg::Cuda(None) => f.write_str("cuda"),
            DeviceArg::Cuda(Some(n)) => write!(f, "cuda:{n}"),
        }
    }
}

/// A comma-separated list of devices (`cuda:0,cuda:1`): one worker each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList(pub Vec<DeviceArg>);

impl FromStr for DeviceList {
    type Err = String;
    fn from_str(s: &str) -> Result<DeviceList, String> {
        s.split(',')
            .map(|d| d.trim().parse())
            .collect::<Result<_, _>>()
            .map(DeviceList)
    }
}

impl fmt::Display for DeviceList {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

/// Model and device options shared by every command that loads a model.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    #[command(flatten)]
    pub net: ModelArgs,
    /// `cpu` (the CPU kernels), `cpu-generic` (the tensor-op backend a GPU runs, on the
    /// CPU), or `cuda:N` in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
}

impl EngineArgs {
    /// The demo network on the CPU.
    pub fn demo() -> EngineArgs {
        EngineArgs {
            net: ModelArgs::demo(),
            device: DeviceArg::Cpu,
        }
    }

    /// Opens the device and loads the model on it.
    pub fn load(&self) -> crate::error::Result<Model> {
        self.net.load(&self.device.open()?)
    }
}

/// How reconstructions are computed: the ReLU backward rule and the multiplier.
#[derive(Args, Debug, Clone, Default)]
pub struct MethodArgs {
    /// ReLU backward rule.
    #[arg(long, value_enum, default_value_t)]
    pub method: Method,
    /// Rescaling of filtered gradients along a path.
    #[arg(long, value_enum, default_value_t)]
    pub mult: Mult,
}

impl MethodArgs {
    /// The library's options.
    pub fn options(&self) -> recon::Options {
        recon::Options {
            rule: self.method.into(),
            mult: self.mult.into(),
        }
    }
}

/// `--method`: the names of [`Rule`] (the library's type derives no clap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Method {
    /// Plain gradient: `g * [x > 0]`.
    Gradient,
    /// Zeiler & Fergus deconvnet: `g * [g > 0]`.
    Deconv,
    /// Guided backpropagation: `g * [x > 0] * [g > 0]`.
    #[default]
    Guided,
    /// cnn_treevis's GUIDED_NEG: `g * [x > 0] * [g < 0]`.
    GuidedNeg,
}

impl From<Method> for Rule {
    fn from(m: Method) -> Rule {
        match m {
            Method::Gradient => Rule::Gradient,
            Method::Deconv => Rule::Deconv,
            Method::Guided => Rule::Guided,
            Method::GuidedNeg => Rule::GuidedNeg,
        }
    }
}

/// `--mult`: the names of [`MultMode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Mult {
    /// `sum|g| / sum|g[c]|`: the filtered gradient keeps the unfiltered one's magnitude.
    #[default]
    Auto,
    /// The blob's multiplier from the spec.
    Manual,
}

impl From<Mult> for MultMode {
    fn from(m: Mult) -> MultMode {
        match m {
            Mult::Auto => MultMode::Auto,
            Mult::Manual => MultMode::Manual,
        }
    }
}

/// `--display`: the names of [`Display`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum DisplayArg {
    /// cnn_treevis: `clip(mean + gradient)`, de-preprocessed: a grey (mean) background, no
    /// rescaling, so magnitudes compare across nodes but deep paths saturate.
    Mean,
    /// Per-image normalisation: grey 0.5 plus the gradient scaled so its largest absolute
    /// value (over all channels) reaches 0 or 1. Never saturates, whatever the path depth;
    /// magnitudes do not compare across images.
    #[default]
    Norm,
}

impl From<DisplayArg> for Display {
    fn from(d: DisplayArg) -> Display {
        match d {
            DisplayArg::Mean => Display::Mean,
            DisplayArg::Norm => Display::Norm,
        }
    }
}

/// The image to study.
#[derive(Args, Debug, Clone, Default)]
pub struct InputArgs {
    /// Image file (PNG, JPEG, ...) or an LMDB record (`DB_FOLDER/KEY`), preprocessed as the
    /// model's spec says.
    pub image: Option<PathBuf>,
    /// An already preprocessed float32 [3, H, W] `.npy` instead of an image.
    #[arg(long, conflicts_with = "image")]
    pub input_npy: Option<PathBuf>,
    /// Write the preprocessed input as float32 [3, H, W] `.npy`.
    #[arg(long)]
    pub dump_input: Option<PathBuf>,
}

impl InputArgs {
    /// One image file.
    pub fn image(path: PathBuf) -> InputArgs {
        InputArgs {
            image: Some(path),
            ..InputArgs::default()
        }
    }

    /// The preprocessed input `[3, H, W]` for `model`.
    pub fn load(&self, model: &Model) -> Result<Tensor> {
        let x = match (&self.image, &self.input_npy) {
            (Some(img), None) => {
                let rgb = data::load_image(img)?;
                data::preprocess(model, &rgb)?
            }
            (None, Some(npy)) => data::load_input_npy(npy)?,
            (None, None) => bail!("no input: give an IMAGE file or --input-npy FILE"),
            (Some(_), Some(_)) => bail!("give an IMAGE file or --input-npy FILE, not both"),
        };
        Ok(x)
    }

    /// Writes `x` to `--dump-input`, if given.
    pub fn dump(&self, x: &Tensor) -> Result<()> {
        if let Some(p) = &self.dump_input {
            let v = crate::model::net::host_vec(x)?;
            data::npy::write_f32(p, x.dims(), &v)?;
        }
        Ok(())
    }
}

/// A model with one image's forward state.
pub struct Loaded {
    pub model: Model,
    /// The preprocessed input, `[3, H, W]`.
    pub input: Tensor,
    pub state: ForwardState,
}

impl Loaded {
    /// Loads the model, preprocesses the image (resizing the net to an input of another
    /// size), writes `--dump-input` and runs the forward pass.
    pub fn new(engine: &EngineArgs, input: &InputArgs) -> Result<Loaded> {
        let mut model = engine.load()?;
        let x = input.load(&model)?;
        let (h, w) = (x.dims()[1], x.dims()[2]);
        if [h, w] != model.spec().input.size {
            model.net = model.net.resized(h, w)?;
            model.mean_image = None;
            tracing::warn!(
                "the input is {h}x{w}, not the spec's {}x{}: the net is run at that size where it can be",
                model.spec().input.size[0],
                model.spec().input.size[1]
            );
        }
        input.dump(&x)?;
        let state = model.net.forward(&x.unsqueeze(0)?)?;
        Ok(Loaded {
            model,
            input: x,
            state,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The command line's names are the library's (serde) names, value for value.
    fn same_names<A: ValueEnum + Copy, L: serde::Serialize>(f: impl Fn(A) -> L) {
        for v in A::value_variants() {
            let cli = v.to_possible_value().unwrap().get_name().to_string();
            let lib = serde_json::to_value(f(*v)).unwrap();
            assert_eq!(lib, serde_json::Value::String(cli));
        }
    }

    #[test]
    fn value_names_are_the_library_names() {
        same_names::<Method, Rule>(Rule::from);
        same_names::<Mult, MultMode>(MultMode::from);
        same_names::<DisplayArg, Display>(Display::from);
        assert_eq!(Method::value_variants().len(), Rule::ALL.len());
        for r in Rule::ALL {
            assert!(Method::from_str(r.name(), false).is_ok(), "{}", r.name());
        }
        assert_eq!(Rule::from(Method::default()), Rule::default());
        assert_eq!(MultMode::from(Mult::default()), MultMode::default());
        assert_eq!(Display::from(DisplayArg::default()), Display::default());
    }

    #[test]
    fn devices_parse_and_print_back() {
        for s in ["cpu", "cpu-generic", "cuda", "cuda:0", "cuda:3"] {
            assert_eq!(s.parse::<DeviceArg>().unwrap().to_string(), s);
        }
        assert!("gpu"
            .parse::<DeviceArg>()
            .unwrap_err()
            .contains("unknown device"));
        assert!("cuda:x"
            .parse::<DeviceArg>()
            .unwrap_err()
            .contains("cuda:N"));
        let l: DeviceList = "cuda:0, cuda:1".parse().unwrap();
        assert_eq!(l.to_string(), "cuda:0,cuda:1");
        assert!("cpu,tpu".parse::<DeviceList>().is_err());
        assert!(DeviceArg::Cpu.open().unwrap().device.is_cpu());
        assert_eq!(
            DeviceArg::CpuGeneric.open().unwrap().backend,
            crate::model::Backend::TensorOps
        );
    }

    #[test]
    fn weights_sources() {
        assert_eq!(weights_source("random:7"), Ok(WeightsSource::Random(7)));
        assert_eq!(
            weights_source("w.safetensors"),
            Ok(WeightsSource::File("w.safetensors".into()))
        );
    }
}

/// `--sign`: the names of [`crate::recon::Sign`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SignArg {
    /// The strongest children by `|s_j|` (cnn_treevis's ranking).
    #[default]
    Abs,
    /// The children that excite the parent most (largest positive `s_j`).
    Pos,
    /// The children that inhibit it most (most negative `s_j`).
    Neg,
}

impl From<SignArg> for crate::recon::Sign {
    fn from(s: SignArg) -> crate::recon::Sign {
        match s {
            SignArg::Abs => crate::recon::Sign::Abs,
            SignArg::Pos => crate::recon::Sign::Pos,
            SignArg::Neg => crate::recon::Sign::Neg,
        }
    }
}

/// A signed weight as its share in percent: `+12.3%` (excites), `-4.5%` (inhibits).
pub fn signed_share(value: f32, share: f32) -> String {
    let sign = if value < 0.0 { '-' } else { '+' };
    format!("{sign}{:.1}%", share * 100.0)
}
