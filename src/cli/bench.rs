//! `treevis bench`: the arguments of the benchmark; the benchmark itself is
//! [`crate::bench`].

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::{positive, DeviceList};
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
    /// `cpu` (the CPU kernels), `cpu-generic` (the tensor-op backend a GPU runs, on the
    /// CPU) or `cuda:N`; comma-separated, the same workloads on each in turn, one column
    /// each and their ratio to the first (`--device cpu,cpu-generic`).
    #[arg(long, default_value = "cpu", value_parser = device_list)]
    pub device: DeviceList,
    /// Write our numbers as JSON here (with several devices, keyed by device).
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
            devices: self.device.0.iter().map(ToString::to_string).collect(),
            json: self.json,
            layers: self.layers,
            no_resnet: self.no_resnet,
            kernels: self.kernels,
            models: self.models,
        }
    }
}

/// `--device`: a [`DeviceList`] naming no device twice (each is a column of the table and a
/// key of the JSON).
fn device_list(s: &str) -> Result<DeviceList, String> {
    let list: DeviceList = s.parse()?;
    for (i, d) in list.0.iter().enumerate() {
        if list.0[..i].contains(d) {
            return Err(format!("`{s}`: {d} is given twice"));
        }
    }
    Ok(list)
}

pub fn run(args: BenchArgs) -> Result<()> {
    crate::bench::run(&args.options())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn devices(args: &[&str]) -> Result<Vec<String>, String> {
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied()))
            .map(|c| c.bench.options().devices)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn device_takes_a_comma_separated_list() {
        assert_eq!(devices(&[]).unwrap(), ["cpu"]);
        assert_eq!(
            devices(&["--device", "cpu-generic"]).unwrap(),
            ["cpu-generic"]
        );
        assert_eq!(
            devices(&["--device", "cpu,cpu-generic"]).unwrap(),
            ["cpu", "cpu-generic"]
        );
        assert_eq!(
            devices(&["--device", "cuda:0, cpu"]).unwrap(),
            ["cuda:0", "cpu"]
        );
        let e = devices(&["--device", "cpu,tpu"]).unwrap_err();
        assert!(e.contains("unknown device `tpu`"), "{e}");
        let e = devices(&["--device", "cpu,cpu-generic,cpu"]).unwrap_err();
        assert!(e.contains("cpu is given twice"), "{e}");
    }
}
