//! `treevis bench --kernels`: the matrix products the convolutions and fully connected
//! layers of AlexNet, VGG16 and ResNet-50 (or `--models`) hand to the CPU kernels (forward at batch 1 and 32, the data gradient and the
//! weight gradient), timed on their own on all threads and on one, beside the machine's
//! measured peak; and where whole passes spend their time (the [`profile`] phases).
//!
//! `--json` writes the shapes with our numbers; `bench/gemm_bench.py` reads that file and
//! times the same shapes with `torch.mm` and ONNX Runtime; `--compare` prints its columns.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::model::kernels::{self, MatRef, Threads};
use crate::model::net::ConvPath;
use crate::model::net::Layer;
use crate::model::ops::conv::{
    conv_backward, conv_forward, fast_scheme, geom, images_per_product, Scheme,
};
use crate::model::profile::{self, Phase};
use crate::model::winograd;
use crate::model::{Model, WeightsSource};

use super::peak;

/// Which product of a convolution a shape is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Product {
    /// `Y[cout_g, ohw] = W[cout_g, K] . cols[K, ohw]` for one image.
    Fwd,
    /// The same for the images of a batch of 32 that one product covers (as many as fit
    /// the columns budget).
    FwdB32,
    /// `dcols[K, ohw] = W^T . dY`: the data gradient (its lhs is a transposed view).
    BwdData,
    /// `dW[cout_g, K] = dY . cols^T`: the weight gradient (its rhs is a transposed view).
    BwdWeight,
    /// A fully connected layer at batch 32: `Y^T[out, 32] = W . X^T` (a transposed view).
    LinearB32,
    /// Its data gradient at batch 32: `dX[32, in] = dY . W`.
    LinearBwdB32,
}

impl Product {
    fn name(self) -> &'static str {
        match self {
            Product::Fwd => "fwd b1",
            Product::FwdB32 => "fwd b32",
            Product::BwdData => "bwd data",
            Product::BwdWeight => "bwd weight",
            Product::LinearB32 => "linear b32",
            Product::LinearBwdB32 => "linear bwd b32",
        }
    }
}

/// One GEMM shape: `C[m, n] = A[m, k] . B[k, n]`, row-major `C`; `a_t` / `b_t` when the
/// operand is the transposed view of a row-major matrix.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    pub id: String,
    pub model: String,
    /// The layers with this shape (ResNet-50 repeats most of its shapes).
    pub layers: Vec<String>,
    pub product: Product,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_t: bool,
    pub b_t: bool,
    /// Our GFLOP/s on all threads and on one (filled in by the run).
    #[serde(default)]
    pub gflops: f64,
    #[serde(default)]
    pub gflops_1t: f64,
    /// With the `gemm` crate's own threading (what treevis used before the split).
    #[serde(default)]
    pub gflops_crate: f64,
}

impl Case {
    fn flops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
}

/// The GEMM shapes of the convolutions of `m` at batch 1 and 32, deduplicated.
pub fn cases(name: &str, m: &Model) -> Vec<Case> {
    let net = &m.net;
    let mut by_shape: BTreeMap<(Product, usize, usize, usize), Vec<String>> = BTreeMap::new();
    for (i, layer) in net.layers.iter().enumerate() {
        let name = || net.spec.layers[i].name.clone();
        if let Layer::Linear(l) = layer {
            let (out, fin) = (l.w.dims()[0], l.w.dims()[1]);
            for key in [
                (Product::LinearB32, out, 32, fin),
                (Product::LinearBwdB32, 32, fin, out),
            ] {
                by_shape.entry(key).or_default().push(name());
            }
        }
        let Layer::Conv(c) = layer else { continue };
        let (in_shape, out_shape) = (net.shape_at(net.inputs[i][0]), net.shapes[i]);
        let g = geom(c, in_shape, out_shape);
        let ohw = g.oh * g.ow;
        let (cout_g, kk) = (
            out_shape.channels() / c.groups,
            in_shape.channels() / c.groups,
        );
        let kk = kk * g.window();
        let chunk = images_per_product(kk, ohw, 32);
        for key in [
            (Product::Fwd, cout_g, ohw, kk),
            (Product::FwdB32, cout_g, chunk * ohw, kk),
            (Product::BwdData, kk, ohw, cout_g),
            (Product::BwdWeight, cout_g, kk, ohw),
        ] {
            by_shape.entry(key).or_default().push(name());
        }
    }
    by_shape
        .into_iter()
        .map(|((product, m, n, k), layers)| Case {
            id: format!("{name}/{}/{m}x{n}x{k}", product.name().replace(' ', "_")),
            model: name.into(),
            layers,
            product,
            m,
            n,
            k,
            a_t: product == Product::BwdData,
            b_t: matches!(product, Product::BwdWeight | Product::LinearB32),
            gflops: 0.0,
            gflops_1t: 0.0,
            gflops_crate: 0.0,
        })
        .collect()
}

fn filled(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i.wrapping_mul(2654435761).wrapping_add(seed)) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// Median GFLOP/s of `samples` timings of the product, each repeating it for at least
/// 20 ms.
fn time_case(c: &Case, threads: Threads, samples: usize) -> f64 {
    let a = filled(c.m * c.k, 1);
    let b = filled(c.k * c.n, 2);
    let mut dst = vec![0f32; c.m * c.n];
    let lhs = if c.a_t {
        MatRef::transposed(&a, c.m)
    } else {
        MatRef::rows(&a, c.k)
    };
    let rhs = if c.b_t {
        MatRef::transposed(&b, c.k)
    } else {
        MatRef::rows(&b, c.n)
    };
    let mut once = || kernels::sgemm_threads(&mut dst, (c.m, c.n, c.k), lhs, rhs, false, threads);
    once();
    let t = Instant::now();
    once();
    let reps = ((0.02 / t.elapsed().as_secs_f64().max(1e-6)).ceil() as usize).clamp(1, 10_000);
    let mut v: Vec<f64> = (0..samples.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                once();
            }
            c.flops() * reps as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What `bench/gemm_bench.py` writes: GFLOP/s per case id and library.
#[derive(Debug, Default, Deserialize)]
struct Theirs {
    #[serde(default)]
    torch: BTreeMap<String, f64>,
    #[serde(default)]
    onnxruntime: BTreeMap<String, f64>,
    #[serde(default)]
    meta: serde_json::Value,
}

#[derive(Serialize)]
struct Report<'a> {
    peak: &'a peak::Peak,
    cases: &'a [Case],
}

pub fn run(args: &super::BenchOptions) -> Result<()> {
    let device = Device::Cpu;
    let samples = args.runs.min(7);
    let peak = peak::measure();
    let threads = rayon::current_num_threads();
    crate::outln!(
        "peak ({}, FMA loop): {:.1} GFLOP/s on 1 thread, {:.1} GFLOP/s on {} threads",
        peak.isa,
        peak.one_thread,
        peak.all_threads,
        peak.threads
    )?;
    let theirs: Theirs = match args.compare.first() {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not the JSON of bench/gemm_bench.py", p.display()))?,
        None => Theirs::default(),
    };
    if !theirs.meta.is_null() {
        crate::outln!("theirs: {}", theirs.meta)?;
    }
    let mut all = Vec::new();
    let mut passes = Vec::new();
    let mut wino = Vec::new();
    let models: Vec<&str> = args
        .models
        .iter()
        .map(String::as_str)
        .filter(|m| !(args.no_resnet && *m == "resnet50"))
        .collect();
    for &name in &models {
        let m = crate::catalog::load(name, &WeightsSource::Random(0), &device)?;
        let mut cases = cases(name, &m);
        eprintln!("{name}: {} shapes", cases.len());
        for c in cases.iter_mut() {
            c.gflops = time_case(c, Threads::Split(threads), samples);
            c.gflops_crate = time_case(c, Threads::Crate(threads), samples);
            c.gflops_1t = time_case(c, Threads::One, samples.min(3));
        }
        passes.extend(where_time_goes(name, &m, args.runs.min(5))?);
        wino.extend(winograd_rows(name, &m, samples)?);
        all.extend(cases);
    }

    crate::outln!(
        "\n| model | product | m x n x k | layers | treevis GFLOP/s | % of peak | 1 thread | scaling | crate threads | torch.mm | onnxruntime | treevis / torch |"
    )?;
    crate::outln!("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    let col = |m: &BTreeMap<String, f64>, id: &str| m.get(id).copied();
    let fmt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    for c in &all {
        let t = col(&theirs.torch, &c.id);
        let o = col(&theirs.onnxruntime, &c.id);
        crate::outln!(
            "| {} | {} | {}x{}x{} | {} | {:.1} | {:.0}% | {:.1} | {:.2}x | {:.1} | {} | {} | {} |",
            c.model,
            c.product.name(),
            c.m,
            c.n,
            c.k,
            layer_list(&c.layers),
            c.gflops,
            100.0 * c.gflops / peak.all_threads,
            c.gflops_1t,
            c.gflops / c.gflops_1t,
            c.gflops_crate,
            fmt(t),
            fmt(o),
            t.map_or("-".into(), |t| format!("{:.2}x", c.gflops / t)),
        )?;
    }
    // per model and product: the time-weighted rate (total operations / total time) of the
    // products one pass makes, each shape counted once per layer that has it
    crate::outln!(
        "\n| model | product | GFLOP per pass | treevis GFLOP/s | % of peak | crate threads | torch.mm | onnxruntime |"
    )?;
    crate::outln!("|---|---|---:|---:|---:|---:|---:|---:|")?;
    for &name in &models {
        for p in [
            Product::Fwd,
            Product::FwdB32,
            Product::BwdData,
            Product::BwdWeight,
            Product::LinearB32,
            Product::LinearBwdB32,
        ] {
            let cs: Vec<&Case> = all
                .iter()
                .filter(|c| c.model == name && c.product == p)
                .collect();
            if cs.is_empty() {
                continue;
            }
            let flops: f64 = cs.iter().map(|c| c.flops() * c.layers.len() as f64).sum();
            let rate = |g: &dyn Fn(&Case) -> Option<f64>| -> Option<f64> {
                let mut secs = 0.0;
                for c in &cs {
                    secs += c.flops() * c.layers.len() as f64 / (g(c)? * 1e9);
                }
                Some(flops / secs / 1e9)
            };
            let ours = rate(&|c| Some(c.gflops)).unwrap_or(f64::NAN);
            crate::outln!(
                "| {name} | {} | {:.2} | {ours:.1} | {:.0}% | {} | {} | {} |",
                p.name(),
                flops / 1e9,
                100.0 * ours / peak.all_threads,
                fmt(rate(&|c| Some(c.gflops_crate))),
                fmt(rate(&|c| col(&theirs.torch, &c.id))),
                fmt(rate(&|c| col(&theirs.onnxruntime, &c.id))),
            )?;
        }
    }
    crate::outln!(
        "\n| pass | total ms | im2col | winograd in | conv gemm | winograd out | conv gemm (bwd) | col2im | linear | other layers | conv gemm GFLOP/s |"
    )?;
    crate::outln!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for p in &passes {
        let ms = |ph: Phase| p.phases.iter().find(|x| x.0 == ph).map_or(0.0, |x| x.1);
        let known: f64 = p.phases.iter().map(|x| x.1).sum();
        crate::outln!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            p.name,
            p.total_ms,
            ms(Phase::Im2col),
            ms(Phase::WinogradIn),
            ms(Phase::ConvGemm),
            ms(Phase::WinogradOut),
            ms(Phase::ConvGemmBackward),
            ms(Phase::Col2im),
            ms(Phase::Linear),
            p.total_ms - known,
            p.gemm_gflops
        )?;
    }
    crate::outln!(
        "\n| model | stride-1 conv | cin -> cout | h x w | scheme | used | b1 im2col ms | b1 winograd ms | b1 gain | b32 im2col ms | b32 winograd ms | b32 gain | grad im2col ms | grad winograd ms | grad gain |"
    )?;
    crate::outln!("|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for w in &wino {
        let t = &w.ms;
        crate::outln!(
            "| {} | {} | {} -> {} | {}x{} | {} | {} | {:.2} | {:.2} | {:.2}x | {:.1} | {:.1} | {:.2}x | {:.2} | {:.2} | {:.2}x |",
            w.model,
            layer_list(&w.layers),
            w.cin,
            w.cout,
            w.h,
            w.w,
            w.scheme.name(),
            w.used,
            t[0],
            t[1],
            t[0] / t[1],
            t[2],
            t[3],
            t[2] / t[3],
            t[4],
            t[5],
            t[4] / t[5],
        )?;
    }
    if let Some(path) = &args.json {
        let r = Report {
            peak: &peak,
            cases: &all,
        };
        std::fs::write(path, serde_json::to_string_pretty(&r)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn layer_list(layers: &[String]) -> String {
    match layers {
        [one] => one.clone(),
        [first, ..] => format!("{first} (+{})", layers.len() - 1),
        [] => String::new(),
    }
}

/// One whole pass, split by phase (ms per pass, the mean of `runs`).
#[derive(Clone)]
struct Pass {
    name: String,
    total_ms: f64,
    phases: Vec<(Phase, f64)>,
    gemm_gflops: f64,
}

impl Pass {
    /// The fastest of `runs` of one pass: on a shared machine the others' load only adds
    /// time, so the least is the closest to the pass's own cost.
    fn fastest(runs: Vec<Pass>) -> Option<Pass> {
        runs.into_iter()
            .min_by(|a, b| a.total_ms.total_cmp(&b.total_ms))
    }
}

/// `runs` runs of `f` after one to warm up, profiled.
fn profiled(name: String, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Pass> {
    f()?;
    profile_runs(name, runs, f)
}

/// `runs` runs of `f`, profiled: the mean time and phases of one.
fn profile_runs(name: String, runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Pass> {
    profile::start();
    let t = Instant::now();
    for _ in 0..runs {
        f()?;
    }
    let total_ms = t.elapsed().as_secs_f64() * 1e3 / runs as f64;
    let phases = profile::stop();
    let gemm: Vec<_> = phases
        .iter()
        .filter(|(p, _)| matches!(p, Phase::ConvGemm | Phase::ConvGemmBackward))
        .map(|x| x.1)
        .collect();
    let (nanos, flops) = gemm
        .iter()
        .fold((0u64, 0u64), |a, t| (a.0 + t.nanos, a.1 + t.flops));
    Ok(Pass {
        name,
        total_ms,
        phases: phases
            .iter()
            .map(|(p, t)| (*p, t.nanos as f64 / 1e6 / runs as f64))
            .collect(),
        gemm_gflops: flops as f64 / nanos.max(1) as f64,
    })
}

/// The forward pass at batch 1 and 32, and one guided reconstruction's backward from the
/// top conv blob, profiled.
fn where_time_goes(name: &str, m: &Model, runs: usize) -> Result<Vec<Pass>> {
    use crate::recon::{self, MultMode, Options, Path, Rule};
    let dev = Device::Cpu;
    let (_, h, w) = match m.net.input {
        crate::model::Shape::Spatial { c, h, w } => (c, h, w),
        crate::model::Shape::Flat(_) => anyhow::bail!("{name} takes flat input"),
    };
    let x1 = super::input(h, w, 1, &dev)?;
    let x32 = super::input(h, w, 32, &dev)?;
    // the forward at batch 32 by layer type, for what the phases leave as "other"
    let mut times = Vec::new();
    m.net.forward_timed(&x32, usize::MAX, None)?;
    m.net.forward_timed(&x32, usize::MAX, Some(&mut times))?;
    let mut by_type: BTreeMap<&str, f64> = BTreeMap::new();
    for (l, t) in m.spec().layers.iter().zip(&times) {
        *by_type.entry(l.kind.type_name()).or_default() += t;
    }
    let mut v: Vec<_> = by_type.into_iter().filter(|x| x.1 >= 0.05).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    let list: Vec<String> = v.iter().map(|(k, t)| format!("{k} {t:.1}")).collect();
    crate::outln!(
        "{name} forward b32 by layer type (ms, with backward state kept): {}",
        list.join(", ")
    )?;
    // the same passes with every convolution through `im2col` (no Winograd), with each
    // Winograd scheme forced, and with no layers merged (fused ReLUs, convolutions run by
    // residual Adds): one run of each in turn, so the machine's drift hits them alike
    let variant = |how: &'static str, convs: ConvPath, fuse: bool| {
        let mut net = m.net.clone();
        net.convs = convs;
        net.fuse = fuse;
        (how, net)
    };
    let variants = [
        ("", m.net.clone()),
        variant(" (im2col only)", ConvPath::Direct, true),
        variant(" (2x2 tiles)", ConvPath::Winograd, true),
        variant(" (4x4 tiles)", ConvPath::Winograd4, true),
        variant(" (unfused)", m.net.convs, false),
    ];
    let mut out = Vec::new();
    for (batch, x, rounds) in [(1, &x1, runs), (32, &x32, runs.min(5))] {
        let mut passes: Vec<Vec<Pass>> = vec![Vec::new(); variants.len()];
        for round in 0..=rounds {
            for (k, (how, net)) in variants.iter().enumerate() {
                let p = profile_runs(format!("{name} forward b{batch}{how}"), 1, || {
                    net.forward_blobs(x)?;
                    Ok(())
                })?;
                // the first round warms up
                if round > 0 {
                    passes[k].push(p);
                }
            }
        }
        out.extend(passes.into_iter().filter_map(Pass::fastest));
    }
    let state = m.net.forward(&x1)?;
    let rows = recon::overview(m, &state, 0, 1)?;
    // the top spatial blob: the reconstruction that runs every conv backward
    let r = rows
        .iter()
        .find(|r| {
            m.net
                .blobs
                .iter()
                .any(|b| b.name == r.blob && b.shape.plane() > 1)
        })
        .context("no spatial blob")?;
    let p = Path::root(&r.blob, r.units[0].channel);
    let opts = Options {
        rule: Rule::Guided,
        mult: MultMode::Auto,
    };
    out.push(profiled(
        format!("{name} backward from {}", r.blob),
        runs,
        || {
            recon::reconstruct(m, &state, 0, &opts, std::slice::from_ref(&p))?;
            Ok(())
        },
    )?);
    Ok(out)
}

/// One stride-1 3x3 convolution shape timed both ways.
struct WinoRow {
    model: String,
    layers: Vec<String>,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    scheme: Scheme,
    /// At which batch sizes the CPU kernels take this scheme for it ([`fast_scheme`]).
    used: &'static str,
    /// Median ms: b1 direct, b1 Winograd, b32 direct, b32 Winograd, data gradient of one
    /// dense row direct, Winograd.
    ms: [f64; 6],
}

/// Every distinct stride-1 3x3 or 5x5 convolution of one group and at least 16 channels
/// in `m`, alone: its forward at batch 1 and 32 and the data gradient of one dense
/// gradient row, by `im2col` and one product (`direct`) and by each Winograd scheme that
/// takes it (transformed weights cached, as in a pass), whether or not the kernels would
/// choose it: the measurement behind [`fast_scheme`].
fn winograd_rows(name: &str, m: &Model, samples: usize) -> Result<Vec<WinoRow>> {
    let net = &m.net;
    // (cin, cout, h, w, kernel, padding) -> the first layer with it, and every one
    type ConvShape = (usize, usize, usize, usize, usize, [usize; 2]);
    let mut by_shape: BTreeMap<ConvShape, (usize, Vec<String>)> = BTreeMap::new();
    for (i, layer) in net.layers.iter().enumerate() {
        let Layer::Conv(c) = layer else { continue };
        let (in_shape, out_shape) = (net.shape_at(net.inputs[i][0]), net.shapes[i]);
        let g = geom(c, in_shape, out_shape);
        let (cin, cout) = (in_shape.channels(), out_shape.channels());
        if !winograd::applies(&g, c.groups, cin, cout) {
            continue;
        }
        let key = (cin, cout, g.h, g.w, g.k[0], g.pad);
        by_shape
            .entry(key)
            .or_insert_with(|| (i, vec![]))
            .1
            .push(net.spec.layers[i].name.clone());
    }
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> { super::median_ms(samples, f) };
    let mut rows = Vec::new();
    for ((cin, cout, h, w, k, _), (i, layers)) in by_shape {
        let Layer::Conv(c) = &net.layers[i] else {
            continue;
        };
        let (in_shape, out_shape) = (net.shape_at(net.inputs[i][0]), net.shapes[i]);
        let g = geom(c, in_shape, out_shape);
        let dev = Device::Cpu;
        let weights = c.w.flatten_all()?.to_vec1::<f32>()?;
        let bias = vec![0f32; cout];
        let mut inputs = Vec::new();
        for n in [1, 32] {
            let x = Tensor::from_vec(filled(n * cin * h * w, 3), (n, cin, h, w), &dev)?;
            inputs.push((n, x, filled(n * cin * h * w, 3)));
        }
        let dy = filled(cout * g.oh * g.ow, 4);
        let dyt = Tensor::from_vec(dy.clone(), (1, cout, g.oh, g.ow), &dev)?;
        // the direct way once
        let mut direct = [0f64; 3];
        for (slot, (_, x, _)) in inputs.iter().enumerate() {
            direct[slot] = time(&mut || {
                conv_forward(x, c, in_shape, out_shape, false, None, ConvPath::Direct)?;
                Ok(())
            })?;
        }
        direct[2] = time(&mut || {
            conv_backward(&dyt, c, in_shape, out_shape, ConvPath::Direct)?;
            Ok(())
        })?;
        let schemes: &[Scheme] = if k == 3 {
            &[Scheme::F2k3, Scheme::F4k3]
        } else {
            &[Scheme::F2k5]
        };
        for &scheme in schemes {
            let Some(gb) = scheme.backward_geom(&g) else {
                continue;
            };
            let u = scheme.transform(&weights, cout, cin, false);
            let ut = scheme.transform(&weights, cout, cin, true);
            let mut ms = [direct[0], 0.0, direct[1], 0.0, direct[2], 0.0];
            for (slot, (n, _, xs)) in inputs.iter().enumerate() {
                let mut out = vec![0f32; n * cout * g.oh * g.ow];
                ms[2 * slot + 1] = time(&mut || {
                    // as the convolution does: onto a zeroed output
                    out.fill(0.0);
                    scheme.forward(xs, *n, cin, &g, &u, &bias, false, &mut out);
                    Ok(())
                })?;
            }
            let mut dx = vec![0f32; cin * h * w];
            ms[5] = time(&mut || {
                dx.fill(0.0);
                scheme.forward(&dy, 1, cout, &gb, &ut, &vec![0.0; cin], false, &mut dx);
                Ok(())
            })?;
            let takes = |n| {
                fast_scheme(ConvPath::Auto, &g, c.groups, n, (cin, cout), false) == Some(scheme)
            };
            rows.push(WinoRow {
                model: name.into(),
                layers: layers.clone(),
                cin,
                cout,
                h,
                w,
                scheme,
                used: match (takes(1), takes(32)) {
                    (true, true) => "b1, b32",
                    (true, false) => "b1",
                    (false, true) => "b32",
                    (false, false) => "no",
                },
                ms,
            });
        }
    }
    Ok(rows)
}
