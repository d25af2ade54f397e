//! `treevis bench`: times the engine on full-size networks with random weights and prints a
//! table, one column per device (`--device cpu,cpu-generic`: the CPU kernels beside the
//! tensor-op backend on the same workloads, with their ratio); with `--compare` it adds the
//! numbers of `bench/pytorch_bench.py` (PyTorch + Captum on the same machine) and their
//! ratio. `--kernels` times the matrix products instead ([`gemm`]).

pub mod gemm;
pub mod peak;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};

use crate::model::{Model, Placement, WeightsSource};
use crate::recon::{self, MultMode, Options, Path, Rule};

/// What `treevis bench` measures (the command line's `bench` arguments, parsed).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Runs per measurement (the median is reported).
    pub runs: usize,
    /// JSON of bench/pytorch_bench.py or bench/onnxruntime_bench.py (with `kernels`, of
    /// bench/gemm_bench.py), shown beside ours.
    pub compare: Vec<PathBuf>,
    /// The devices the network benchmark runs on, in turn (`cpu`, `cpu-generic`, `cuda:N`;
    /// opened only by it): one column each, the first the base of the ratios.
    pub devices: Vec<String>,
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

/// One device's measurements, by key (`forward_b1_ms`, ...; see bench/README.md).
pub type Timings = BTreeMap<&'static str, f64>;

/// A compared file's numbers (top-level keys; `meta` and anything else not a number is
/// ignored by the table).
pub type Compared = BTreeMap<String, serde_json::Value>;

pub fn run(args: &BenchOptions) -> Result<()> {
    if args.kernels {
        return gemm::run(args);
    }
    anyhow::ensure!(!args.devices.is_empty(), "bench: no device given");
    // every device opened before the first is timed: a missing GPU is said at once, not
    // after minutes of CPU measurements that it then throws away
    let mut places: Vec<Placement> = Vec::new();
    for d in &args.devices {
        let place = crate::model::parse_device(d)?;
        anyhow::ensure!(
            places.iter().all(|p| p.name() != place.name()),
            "bench: device {} given twice",
            place.name()
        );
        places.push(place);
    }
    let mut ours: Vec<(String, Timings)> = Vec::new();
    for (i, place) in places.iter().enumerate() {
        // the peak resident memory is the process's; start each device from what is
        // resident now, or leave the row out where the kernel cannot reset it
        let peak_is_ours = reset_peak_rss() || i == 0;
        let mut res = measure(place, args)?;
        if peak_is_ours {
            res.insert("peak_rss_mb", peak_rss_mb());
        }
        ours.push((place.name(), res));
    }
    let theirs = args
        .compare
        .iter()
        .map(|p| read_compared(p))
        .collect::<Result<Vec<_>>>()?;
    crate::out!("{}", table(&ours, &theirs))?;
    if let Some(p) = &args.json {
        let text = match ours.as_slice() {
            [(_, res)] => serde_json::to_string_pretty(res)?,
            _ => serde_json::to_string_pretty(&ours.iter().cloned().collect::<BTreeMap<_, _>>())?,
        };
        std::fs::write(p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}

/// A bench/ script's JSON, labelled by its `meta.library` (PyTorch's has none).
fn read_compared(p: &std::path::Path) -> Result<(String, Compared)> {
    let map: Compared = serde_json::from_str(
        &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
    )
    .with_context(|| format!("{} is not the JSON of a bench/ script", p.display()))?;
    let label = map
        .get("meta")
        .and_then(|m| m.get("library"))
        .and_then(|l| l.as_str())
        .unwrap_or("pytorch")
        .to_string();
    Ok((label, map))
}

/// The table: one row per key of any of our devices; a column per device (`treevis` alone
/// when there is one, else `treevis DEVICE`), then each other device over the first, then
/// per compared file its number and its ratio to our first device.
pub fn table(ours: &[(String, Timings)], theirs: &[(String, Compared)]) -> String {
    let single = ours.len() == 1;
    let base = match ours.first() {
        Some((n, _)) if !single => n.as_str(),
        _ => "treevis",
    };
    let mut head = String::from("| measurement |");
    let mut rule = String::from("|---|");
    for (name, _) in ours {
        if single {
            head.push_str(" treevis |");
        } else {
            head.push_str(&format!(" treevis {name} |"));
        }
        rule.push_str("---:|");
    }
    for (name, _) in ours.iter().skip(1) {
        head.push_str(&format!(" {name} / {base} |"));
        rule.push_str("---:|");
    }
    for (label, _) in theirs {
        head.push_str(&format!(" {label} | {label} / {base} |"));
        rule.push_str("---:|---:|");
    }
    let keys: BTreeSet<&str> = ours.iter().flat_map(|(_, r)| r.keys().copied()).collect();
    let mut out = format!("{head}\n{rule}\n");
    for k in keys {
        let first = ours.first().and_then(|(_, r)| r.get(k)).copied();
        let mut line = format!("| {k} |");
        for (_, r) in ours {
            line.push_str(&format!(" {} |", number(r.get(k).copied())));
        }
        for (_, r) in ours.iter().skip(1) {
            line.push_str(&format!(" {} |", ratio(r.get(k).copied(), first)));
        }
        for (_, map) in theirs {
            let t = map.get(k).and_then(|x| x.as_f64());
            line.push_str(&format!(" {} | {} |", number(t), ratio(t, first)));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A measurement: milliseconds (or MB), with more decimals below 10 (a GPU's times).
fn number(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.abs() < 1.0 => format!("{v:.3}"),
        Some(v) if v.abs() < 10.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.1}"),
    }
}

/// `a / b` as `1.23x`; `-` where either is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

/// An error unless the model was loaded where it was asked to be: a row timed on another
/// backend (a `Device` turned into its native backend) would go unnoticed in the table.
fn check_placement(name: &str, m: &Model, place: &Placement) -> Result<()> {
    anyhow::ensure!(
        m.net.backend == place.backend && m.net.device.same_device(&place.device),
        "bench: {name} was loaded on {:?} ({:?}), not on {} ({:?})",
        m.net.device.location(),
        m.net.backend,
        place.name(),
        place.backend
    );
    Ok(())
}

/// Every network measurement on one device (all but `peak_rss_mb`).
fn measure(place: &Placement, args: &BenchOptions) -> Result<Timings> {
    let device = place.device.clone();
    let runs = args.runs;
    let mut res = Timings::new();
    let opts = Options {
        rule: Rule::Guided,
        mult: MultMode::Auto,
    };

    let m = crate::catalog::load("alexnet", &WeightsSource::Random(0), place)?;
    check_placement("alexnet", &m, place)?;
    let x1 = input(224, 224, 1, &device)?;
    let x32 = input(224, 224, 32, &device)?;
    eprintln!(
        "alexnet (random weights, 224x224) on {} ({:?}), {runs} runs each, {} threads",
        place.name(),
        place.backend,
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
        if args.devices.len() > 1 {
            crate::outln!("\nlayers on {}:\n", place.name())?;
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

    let c = crate::catalog::load("caffenet", &WeightsSource::Random(0), place)?;
    check_placement("caffenet", &c, place)?;
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
        resnet50(&mut res, runs, place, &opts)?;
    }
    Ok(res)
}

/// torchvision's ResNet-50 (random weights, 224x224): forward at batch 1 and 32, one guided
/// reconstruction from `layer4.2`, the overview (forward + top 5 of each of the 18 tree
/// blobs, 90 reconstructions in one batched pass) and the tree's expand step.
fn resnet50(res: &mut Timings, runs: usize, place: &Placement, opts: &Options) -> Result<()> {
    // on the placement, not its bare device: a `Device` loads with its native backend, so
    // `cpu-generic` would have timed the CPU kernels here
    let m = crate::catalog::load("resnet50", &WeightsSource::Random(0), place)?;
    check_placement("resnet50", &m, place)?;
    let device = &place.device;
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

/// Resets the process's peak resident set size to what is resident now (Linux: `5` into
/// `/proc/self/clear_refs`); false where that is not possible.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn timings(rows: &[(&'static str, f64)]) -> Timings {
        rows.iter().copied().collect()
    }

    fn compared(json: &str) -> Compared {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn one_device_keeps_the_treevis_column() {
        let ours = [(
            "cpu".to_string(),
            timings(&[("forward_b1_ms", 20.0), ("peak_rss_mb", 812.34)]),
        )];
        let theirs = [(
            "pytorch".to_string(),
            compared(r#"{"forward_b1_ms": 40.0, "meta": {"runs": 7}}"#),
        )];
        assert_eq!(
            table(&ours, &theirs),
            "| measurement | treevis | pytorch | pytorch / treevis |\n\
             |---|---:|---:|---:|\n\
             | forward_b1_ms | 20.0 | 40.0 | 2.00x |\n\
             | peak_rss_mb | 812.3 | - | - |\n"
        );
        assert_eq!(
            table(&ours, &[]),
            "| measurement | treevis |\n|---|---:|\n\
             | forward_b1_ms | 20.0 |\n| peak_rss_mb | 812.3 |\n"
        );
    }

    #[test]
    fn several_devices_get_a_column_each_and_ratios_to_the_first() {
        let ours = [
            (
                "cpu".to_string(),
                timings(&[("forward_b1_ms", 20.0), ("recon_fc8_ms", 4.0)]),
            ),
            (
                "cpu-generic".to_string(),
                // a row only one device has is still a row, with `-` elsewhere
                timings(&[("forward_b1_ms", 50.0), ("peak_rss_mb", 1000.0)]),
            ),
        ];
        let theirs = [
            (
                "pytorch".to_string(),
                compared(r#"{"forward_b1_ms": 10.0, "recon_fc8_ms": 0.25}"#),
            ),
            (
                "onnxruntime".to_string(),
                compared(r#"{"forward_b1_ms": 5.0, "meta": {"library": "onnxruntime"}}"#),
            ),
        ];
        let t = table(&ours, &theirs);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "| measurement | treevis cpu | treevis cpu-generic | cpu-generic / cpu \
             | pytorch | pytorch / cpu | onnxruntime | onnxruntime / cpu |"
        );
        assert_eq!(lines[1], "|---|---:|---:|---:|---:|---:|---:|---:|");
        assert_eq!(
            lines[2],
            "| forward_b1_ms | 20.0 | 50.0 | 2.50x | 10.0 | 0.50x | 5.00 | 0.25x |"
        );
        assert_eq!(lines[3], "| peak_rss_mb | - | 1000.0 | - | - | - | - | - |");
        assert_eq!(
            lines[4],
            "| recon_fc8_ms | 4.00 | - | - | 0.250 | 0.06x | - | - |"
        );
        assert_eq!(lines.len(), 5);
        // every line has as many cells as the header
        let cells = |l: &str| l.matches('|').count();
        assert!(lines.iter().all(|l| cells(l) == cells(lines[0])), "{t}");
    }

    #[test]
    fn compared_files_are_labelled_by_their_library() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("ort.json");
        std::fs::write(
            &p,
            r#"{"forward_b1_ms": 5.0, "meta": {"library": "onnxruntime"}}"#,
        )
        .unwrap();
        assert_eq!(read_compared(&p).unwrap().0, "onnxruntime");
        std::fs::write(&p, r#"{"forward_b1_ms": 5.0, "meta": {}}"#).unwrap();
        assert_eq!(read_compared(&p).unwrap().0, "pytorch");
        std::fs::write(&p, "[1, 2]").unwrap();
        let e = format!("{:#}", read_compared(&p).unwrap_err());
        assert!(e.contains("not the JSON of a bench/ script"), "{e}");
    }
}
