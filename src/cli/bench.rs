//! `treevis bench`: the arguments of the benchmark; the benchmark itself is
//! [`crate::bench`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{positive, DeviceArg};
use crate::bench::BenchOptions;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 15, value_parser = positive)]
    pub runs: usize,
    /// JSON written by bench/pytorch_bench.py or bench/onnxruntime_bench.py (repeatable),
    /// to show their numbers beside ours; with `--kernels`, that of bench/gemm_bench.py.
    #[arg(long)]
    pub compare: Vec<PathBuf>,
    /// `cpu` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceArg,
    /// Write our numbers as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also print the mean forward time of each layer (batch 1).
    #[arg(long)]
    pub layers: bool,
    /// Leave out the ResNet-50 rows (they take most of the time).
    #[arg(long)]
    pub no_resnet: bool,
    /// Time the matrix products of the convolutions of AlexNet, VGG16 and ResNet-50 against
    /// the measured FMA peak instead (with `--compare`: the JSON of bench/gemm_bench.py).
    #[arg(long)]
    pub kernels: bool,
    /// The models whose products `--kernels` times (built-in names, comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "alexnet,vgg16,resnet50")]
    pub models: Vec<String>,
}

impl BenchArgs {
    pub fn options(self) -> BenchOptions {
        BenchOptions {
            runs: self.runs,
            compare: self.compare,
            // opened by the benchmark, and only when it runs the network
            device: self.device.to_string(),
            json: self.json,
            layers: self.layers,
            no_resnet: self.no_resnet,
            kernels: self.kernels,
            models: self.models,
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    crate::bench::run(&args.options())
}
