//! `treevis bench`: times the engine on full-size networks with random weights and prints a
//! table; with `--compare` it adds the numbers of `bench/pytorch_bench.py` (PyTorch +
//! Captum on the same machine) and their ratio. `--kernels` times the matrix products
//! instead ([`gemm`]).

pub mod gemm;
pub mod peak;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use crate::model::WeightsSource;
use crate::recon::{self, MultMode, Options, Path, Rule};

/// What `treevis bench` measures (the command line's `bench` arguments, parsed).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// JSON of bench/pytorch_bench.py or bench/onnxruntime_bench.py (with `kernels`, of
    /// bench/gemm_bench.py), shown beside ours.
    pub compare: Vec<PathBuf>,
    /// `cpu` or `cuda:N` (opened only by the network benchmark).
    pub device: String,
    /// Where to write our numbers as JSON.
    pub json: Option<PathBuf>,
    /// Also the mean forward time of each layer (batch 1).
    pub layers: bool,
    /// Leave out the ResNet-50 rows.
    pub no_resnet: bool,
    /// Time the matrix products against the FMA peak instead ([`gemm`]).
    pub kernels: bool,
    /// The models whose products `kernels` times (built-in names).
    pub models: Vec<String>,
}

fn median_ms(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

fn input(h: usize, w: usize, batch: usize, device: &Device) -> Result<Tensor> {
    let n = batch * 3 * h * w;
    let v: Vec<f32> = (0..n)
        .map(|i| ((i * 2654435761usize) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    Ok(Tensor::from_vec(v, (batch, 3, h, w), device)?)
}

fn sync(d: &Device) -> Result<()> {
    d.synchronize()?;
    Ok(())
}

pub fn run(args: &BenchOptions) -> Result<()> {
    if args.kernels {
        return gemm::run(args);
    }
    let place = crate::model::parse_device(&args.device)?;
    let device = place.device.clone();
    let runs = args.runs;
    let mut res: BTreeMap<&'static str, f64> = BTreeMap::new();
    let opts = Options {
        rule: Rule::Guided,
        mult: MultMode::Auto,
    };

    let m = crate::catalog::load("alexnet", &WeightsSource::Random(0), &place)?;
    let x1 = input(224, 224, 1, &device)?;
    let x32 = input(224, 224, 32, &device)?;
    eprintln!(
        "alexnet (random weights, 224x224) on {}, {runs} runs each, {} threads",
        args.device,
        rayon::current_num_threads()
    );
    res.insert(
        "forward_b1_ms",
        median_ms(runs, || {
            m.net.forward_blobs(&x1)?;
            sync(&device)
        })?,
    );
    res.insert(
        "forward_b32_ms",
        median_ms(runs.min(7), || {
            m.net.forward_blobs(&x32)?;
            sync(&device)
        })?,
    );
    if args.layers {
        let (mut t1, mut t32) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            m.net.forward_timed(&x1, usize::MAX, Some(&mut t1))?;
        }
        for _ in 0..runs.min(3) {
            m.net.forward_timed(&x32, usize::MAX, Some(&mut t32))?;
        }
        crate::outln!("| layer | forward b1 ms | forward b32 ms |\n|---|---:|---:|")?;
        for ((l, a), b) in m.spec().layers.iter().zip(&t1).zip(&t32) {
            crate::outln!(
                "| {} ({}) | {:.2} | {:.1} |",
                l.name,
                l.kind.type_name(),
                a / runs as f64,
                b / runs.min(3) as f64
            )?;
        }
    }
    let state = m.net.forward(&x1)?;
    let top = |blob: &str| -> Result<Path> {
        let rows = recon::overview(&m, &state, 0, 1)?;
        let r = rows.iter().find(|r| r.blob == blob).context("blob")?;
        Ok(Path::root(blob, r.units[0].channel))
    };
    let conv5 = top("conv5")?;
    let fc8 = top("fc8")?;
    // a reconstruction runs the forward pass only as far as its root needs (as a PyTorch
    // model truncated at the blob would)
    let until = |p: &Path| {
        m.net
            .blob_index(&p.last().blob)
            .map_or(m.net.layers.len(), |b| m.net.blobs[b].layer)
    };
    for (name, p) in [("recon_conv5_ms", &conv5), ("recon_fc8_ms", &fc8)] {
        res.insert(
            name,
            median_ms(runs, || {
                let s = m.net.forward_until(&x1, until(p))?;
                recon::reconstruct(&m, &s, 0, &opts, std::slice::from_ref(p))?;
                sync(&device)
            })?,
        );
    }
    res.insert(
        "backward_conv5_ms",
        median_ms(runs, || {
            recon::reconstruct(&m, &state, 0, &opts, std::slice::from_ref(&conv5))?;
            sync(&device)
        })?,
    );
    res.insert(
        "overview40_ms",
        median_ms(runs, || {
            let s = m.net.forward(&x1)?;
            let rows = recon::overview(&m, &s, 0, 5)?;
            let r = recon::reconstruct(&m, &s, 0, &opts, &recon::overview_paths(&rows))?;
            anyhow::ensure!(r.len() == 40, "overview has {} tiles", r.len());
            sync(&device)
        })?,
    );
    res.insert(
        "children5_ms",
        median_ms(runs, || {
            let s = m.net.forward_until(&x1, until(&conv5))?;
            let e = recon::expand(&m, &s, 0, &opts, &conv5, 5)?;
            anyhow::ensure!(e.len() == 5);
            sync(&device)
        })?,
    );
    drop(state);

    let c = crate::catalog::load("caffenet", &WeightsSource::Random(0), &place)?;
    let xc = input(227, 227, 1, &device)?;
    res.insert(
        "caffenet_forward_b1_ms",
        median_ms(runs, || {
            c.net.forward_blobs(&xc)?;
            sync(&device)
        })?,
    );
    let sc = c.net.forward(&xc)?;
    let rows = recon::overview(&c, &sc, 0, 1)?;
    let r5 = rows.iter().find(|r| r.blob == "conv5").context("conv5")?;
    let p5 = Path::root("conv5", r5.units[0].channel);
    let until5 = c.net.blobs[c.net.blob_index("conv5").context("conv5")?].layer;
    res.insert(
        "caffenet_recon_conv5_ms",
        median_ms(runs, || {
            let s = c.net.forward_until(&xc, until5)?;
            recon::reconstruct(&c, &s, 0, &opts, std::slice::from_ref(&p5))?;
            sync(&device)
        })?,
    );
    drop(sc);
    if !args.no_resnet {
        resnet50(&mut res, runs, &device, &opts)?;
    }
    res.insert("peak_rss_mb", peak_rss_mb());

    // one column pair per compared file, named by its `meta.library` (PyTorch's has none)
    let mut theirs: Vec<(String, BTreeMap<String, serde_json::Value>)> = Vec::new();
    for p in &args.compare {
        let map: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not the JSON of a bench/ script", p.display()))?;
        let label = map
            .get("meta")
            .and_then(|m| m.get("library"))
            .and_then(|l| l.as_str())
            .unwrap_or("pytorch")
            .to_string();
        theirs.push((label, map));
    }
    let mut head = String::from("| measurement | treevis |");
    let mut rule = String::from("|---|---:|");
    for (label, _) in &theirs {
        head.push_str(&format!(" {label} | {label} / treevis |"));
        rule.push_str("---:|---:|");
    }
    crate::outln!("{head}")?;
    crate::outln!("{rule}")?;
    for (k, v) in &res {
        let mut line = format!("| {k} | {v:.1} |");
        for (_, map) in &theirs {
            match map.get(*k).and_then(|x| x.as_f64()) {
                Some(t) => line.push_str(&format!(" {t:.1} | {:.2}x |", t / v)),
                None => line.push_str(" - | - |"),
            }
        }
        crate::outln!("{line}")?;
    }
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&res)?)?;
    }
    Ok(())
}

/// torchvision's ResNet-50 (random weights, 224x224): forward at batch 1 and 32, one guided
/// reconstruction from `layer4.2`, the overview (forward + top 5 of each of the 18 tree
/// blobs, 90 reconstructions in one batched pass) and the tree's expand step.
fn resnet50(
    res: &mut BTreeMap<&'static str, f64>,
    runs: usize,
    device: &Device,
    opts: &Options,
) -> Result<()> {
    let m = crate::catalog::load("resnet50", &WeightsSource::Random(0), device)?;
    let x1 = input(224, 224, 1, device)?;
    eprintln!("resnet50 (random weights, 224x224)");
    res.insert(
        "resnet50_forward_b1_ms",
        median_ms(runs, || {
            m.net.forward_blobs(&x1)?;
            sync(device)
        })?,
    );
    {
        let x32 = input(224, 224, 32, device)?;
        res.insert(
            "resnet50_forward_b32_ms",
            median_ms(runs.min(5), || {
                m.net.forward_blobs(&x32)?;
                sync(device)
            })?,
        );
    }
    let state = m.net.forward(&x1)?;
    let rows = recon::overview(&m, &state, 0, 1)?;
    let r = rows
        .iter()
        .find(|r| r.blob == "layer4.2")
        .context("layer4.2")?;
    let p = Path::root("layer4.2", r.units[0].channel);
    let until = m.net.blobs[m.net.blob_index("layer4.2").context("layer4.2")?].layer;
    drop(state);
    res.insert(
        "resnet50_recon_ms",
        median_ms(runs, || {
            let s = m.net.forward_until(&x1, until)?;
            recon::reconstruct(&m, &s, 0, opts, std::slice::from_ref(&p))?;
            sync(device)
        })?,
    );
    res.insert(
        "resnet50_overview_ms",
        median_ms(runs.min(5), || {
            let s = m.net.forward(&x1)?;
            let rows = recon::overview(&m, &s, 0, 5)?;
            let r = recon::reconstruct(&m, &s, 0, opts, &recon::overview_paths(&rows))?;
            anyhow::ensure!(r.len() == 90, "overview has {} tiles", r.len());
            sync(device)
        })?,
    );
    res.insert(
        "resnet50_children5_ms",
        median_ms(runs, || {
            let s = m.net.forward_until(&x1, until)?;
            let e = recon::expand(&m, &s, 0, opts, &p, 5)?;
            anyhow::ensure!(e.len() == 5);
            sync(device)
        })?,
    );
    Ok(())
}

/// Peak resident set size of this process (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}
