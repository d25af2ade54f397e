//! The feature cache on a generated dataset: build, info, show; a build killed with
//! SIGKILL and resumed equals an uninterrupted one; shards merged equal one build; several
//! workers equal one; a Caffe `Datum` LMDB is a dataset; a cache serves only its model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use candle_core::Device;
use treevis::featcache::FeatureCache;
use treevis::model::WeightsSource;

const BIN: &str = env!("CARGO_BIN_EXE_treevis");
const CONFIG: [&str; 8] = [
    "--layers",
    "conv5,conv4,conv2",
    "--top-k",
    "4",
    "--batch",
    "4",
    "--checkpoint",
    "4",
];

fn dataset(dir: &Path, n: u64) -> PathBuf {
    let data = dir.join("data");
    treevis::cli::write_demo_gallery(&data, n, 4242).unwrap();
    // an unreadable file is reported and skipped, never fatal
    std::fs::write(data.join("0005_zz_broken.png"), b"not a png").unwrap();
    data
}

fn build_cmd(data: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["cache", "build", "--quiet", "--model", "demo", "--data"])
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(CONFIG)
        .args(extra);
    c
}

fn build(data: &Path, out: &Path, extra: &[&str]) {
    let o = build_cmd(data, out, extra).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn records(p: &Path) -> Vec<(String, Vec<u8>)> {
    FeatureCache::open(p).unwrap().records().unwrap()
}

fn same(a: &Path, b: &Path) {
    let (ra, rb) = (records(a), records(b));
    assert_eq!(ra.len(), rb.len(), "record counts differ");
    for ((ka, va), (kb, vb)) in ra.iter().zip(&rb) {
        assert_eq!(ka, kb);
        assert!(va == vb, "record `{ka}` differs");
    }
}

/// Caches equal but for round-off in the activations, which batches of other sizes give
/// (a matrix product's blocking follows its width): the same records, lists of the same
/// images at the same positions, the same boxes and image crops, reconstruction crops at
/// most one level apart.
fn equivalent(a: &Path, b: &Path) {
    let (ca, cb) = (
        FeatureCache::open(a).unwrap(),
        FeatureCache::open(b).unwrap(),
    );
    let close = |x: f32, y: f32| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
    let (ra, rb) = (records(a), records(b));
    assert_eq!(
        ra.iter().map(|r| &r.0).collect::<Vec<_>>(),
        rb.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for ((k, va), (_, vb)) in ra.iter().zip(&rb) {
        if !k.starts_with("top/") && !k.starts_with("crop/") {
            assert!(va == vb, "record `{k}` differs");
        }
    }
    for (ta, tb) in ca.tops.iter().zip(&cb.tops) {
        assert_eq!(ta.name, tb.name);
        for (c, (la, lb)) in ta.top.iter().zip(&tb.top).enumerate() {
            let what = format!("{}:{c}", ta.name);
            assert_eq!(la.len(), lb.len(), "{what}");
            for (ea, eb) in la.iter().zip(lb) {
                assert_eq!((ea.image, ea.pos), (eb.image, eb.pos), "{what}");
                assert!(close(ea.act, eb.act), "{what}: {} vs {}", ea.act, eb.act);
            }
            let (sa, sb) = (&ta.samples[c], &tb.samples[c]);
            assert!(sa.len() == sb.len() && sa.iter().zip(sb).all(|(x, y)| close(*x, *y)));
            let (xa, xb) = (
                ca.crops(&ta.name, c).unwrap(),
                cb.crops(&ta.name, c).unwrap(),
            );
            for (pa, pb) in xa.iter().zip(&xb) {
                assert_eq!(
                    (pa.entry.image, pa.bbox),
                    (pb.entry.image, pb.bbox),
                    "{what}"
                );
                assert!(pa.image_png == pb.image_png, "{what}");
                if pa.recon_png != pb.recon_png {
                    let decode = |png: &[u8]| image::load_from_memory(png).unwrap().to_rgb8();
                    let (ia, ib) = (decode(&pa.recon_png), decode(&pb.recon_png));
                    assert_eq!(ia.dimensions(), ib.dimensions(), "{what}");
                    let most = ia.iter().zip(ib.iter()).map(|(x, y)| x.abs_diff(*y)).max();
                    assert!(most <= Some(1), "{what}: pixels {most:?} apart");
                }
            }
        }
    }
}

#[test]
fn build_info_show_and_the_lists_are_right() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path(), 40);
    let cache = d.path().join("cache");
    build(&data, &cache, &[]);
    let c = FeatureCache::open(&cache).unwrap();
    assert_eq!(c.meta.images, 41);
    assert_eq!(c.skipped.len(), 1);
    assert!(c.skipped[0].1.contains("zz_broken"), "{:?}", c.skipped);
    assert_eq!(c.meta.layers, ["conv5", "conv4", "conv2"]);
    // brute force: each channel's list is the top 4 of its spatial maxima over the dataset
    let model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
    let listing = c.dataset().unwrap();
    let maxima: Vec<Option<Vec<treevis::recon::BlobUnits>>> = listing
        .iter()
        .map(|p| {
            let img = treevis::data::load_image(p).ok()?;
            let x = treevis::data::preprocess(&model, &img).unwrap();
            let s = model.net.forward(&x.unsqueeze(0).unwrap()).unwrap();
            Some(treevis::recon::overview(&model, &s, 0, 1000).unwrap())
        })
        .collect();
    for (bi, blob) in ["conv5", "conv4", "conv2"].iter().enumerate() {
        let t = c.blob(blob).unwrap();
        for ch in [0usize, 7, 31] {
            let mut all: Vec<(f32, u32)> = maxima
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let rows = m.as_ref()?;
                    let row = rows.iter().find(|r| r.blob == *blob).unwrap();
                    let u = row.units.iter().find(|u| u.channel == ch).unwrap();
                    Some((u.activation, i as u32))
                })
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let got: Vec<(f32, u32)> = t.top[ch].iter().map(|e| (e.act, e.image)).collect();
            let want: Vec<(f32, u32)> = all[..4].to_vec();
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.1, w.1, "{blob}:{ch} (blob {bi}): {got:?} vs {want:?}");
                assert!((g.0 - w.0).abs() <= 1e-4 * w.0.abs().max(1.0));
            }
            // the quantile of the best activation is the top
            assert!(c.rank(blob, ch, want[0].0).unwrap() > 0.95);
        }
    }
    // crops: a box inside the input, PNGs that decode to the box's size (64 px images are
    // below the size where crops are scaled down)
    let crops = c.crops("conv2", 7).unwrap();
    assert_eq!(crops.len(), 4);
    for cr in &crops {
        let [x0, y0, x1, y1] = cr.bbox;
        assert!(x1 > x0 && y1 > y0 && x1 <= 64 && y1 <= 64, "{:?}", cr.bbox);
        let img = image::load_from_memory(&cr.image_png).unwrap();
        let rec = image::load_from_memory(&cr.recon_png).unwrap();
        assert_eq!((img.width(), img.height()), (x1 - x0, y1 - y0));
        assert_eq!((rec.width(), rec.height()), (x1 - x0, y1 - y0));
    }
    // conv2 sees a patch, not the whole image
    assert!(crops.iter().any(|cr| cr.bbox != [0, 0, 64, 64]));
    // the commands
    let info = Command::new(BIN)
        .args(["cache", "info"])
        .arg(&cache)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success() && text.contains("41 images") && text.contains("1 skipped"),
        "{text}"
    );
    let grid = d.path().join("grid.png");
    let show = Command::new(BIN)
        .args(["cache", "show"])
        .arg(&cache)
        .args(["conv2:7", "--model", "demo", "--out"])
        .arg(&grid)
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let g = image::open(&grid).unwrap();
    assert_eq!((g.width(), g.height()), (2 * (2 * 64 + 2) + 12, 2 * 64 + 2));
    let bad = Command::new(BIN)
        .args(["cache", "show"])
        .arg(&cache)
        .arg("fc7:1")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no blob `fc7`"));
}

#[test]
fn a_killed_build_resumes_to_the_same_cache() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path(), 24);
    let whole = d.path().join("whole");
    let t0 = Instant::now();
    build(&data, &whole, &[]);
    let full = t0.elapsed();
    // kill -9 at a moment drawn from the clock, within the build's own duration
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut at =
        Duration::from_nanos(nanos % full.as_nanos().max(1) as u64).max(Duration::from_millis(50));
    let killed = d.path().join("killed");
    let mut kills = 0;
    loop {
        let mut child = build_cmd(&data, &killed, &[]).spawn().unwrap();
        std::thread::sleep(at);
        let finished = child.try_wait().unwrap().is_some();
        child.kill().unwrap_or(());
        child.wait().unwrap();
        if finished {
            break;
        }
        kills += 1;
        eprintln!("killed after {at:?}");
        if kills == 3 {
            break;
        }
        at = at.mul_f32(0.7).max(Duration::from_millis(50));
    }
    assert!(kills > 0, "every build finished before it could be killed");
    build(&data, &killed, &[]);
    same(&whole, &killed);
}

#[test]
fn shards_merge_to_one_build_and_workers_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path(), 24);
    let whole = d.path().join("whole");
    build(&data, &whole, &[]);
    let (s0, s1) = (d.path().join("s0"), d.path().join("s1"));
    build(&data, &s0, &["--shard", "0/2"]);
    build(&data, &s1, &["--shard", "1/2"]);
    // a shard alone cannot be merged
    let merged = d.path().join("merged");
    let lonely = Command::new(BIN)
        .args(["cache", "merge", "--out"])
        .arg(&merged)
        .arg(&s0)
        .output()
        .unwrap();
    assert!(!lonely.status.success());
    assert!(String::from_utf8_lossy(&lonely.stderr).contains("shard 1/2 is missing"));
    let o = Command::new(BIN)
        .args(["cache", "merge", "--out"])
        .arg(&merged)
        .arg(&s1)
        .arg(&s0)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    same(&whole, &merged);
    // two workers (one model each), results in the same order
    let two = d.path().join("two");
    build(&data, &two, &["--device", "cpu,cpu"]);
    same(&whole, &two);
}

#[test]
fn datum_lmdb_datasets_and_other_models_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let db = d.path().join("lmdb");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/datum/lmdb/data.mdb"),
        db.join("data.mdb"),
    )
    .unwrap();
    let cache = d.path().join("cache");
    build(&db, &cache, &[]);
    let c = FeatureCache::open(&cache).unwrap();
    assert_eq!((c.meta.images, c.skipped.len()), (5, 0));
    assert!(c.dataset().unwrap()[4].ends_with("00000004_encoded.png"));
    // another model's weights: refused with a message
    let other = treevis::catalog::load("demo", &WeightsSource::Random(3), &Device::Cpu).unwrap();
    let e = match FeatureCache::open_for(&cache, &other) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a cache for other weights was accepted"),
    };
    assert!(
        e.contains("was built for model `demo` with other weights"),
        "{e}"
    );
    let same_model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
    assert!(FeatureCache::open_for(&cache, &same_model).is_ok());
    // building into it with another configuration is refused too
    let o = build_cmd(&db, &cache, &["--method", "deconv"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("another method or multiplier mode"));
}

/// A graph network (an ONNX ResNet-18): blobs are residual blocks; each channel's best
/// image is the one a brute-force forward finds, and `overview --cache` ranks against it.
#[test]
fn a_cache_of_a_graph_model() {
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path(), 8);
    let cache = d.path().join("cache");
    let onnx = format!(
        "{}/tests/golden/resnet18_dynamo.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let o = Command::new(BIN)
        .args(["cache", "build", "--quiet", "--model", &onnx, "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&cache)
        .args([
            "--layers",
            "layer4.1,layer2.0",
            "--top-k",
            "2",
            "--batch",
            "4",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = FeatureCache::open(&cache).unwrap();
    assert_eq!(c.meta.layers, ["layer4.1", "layer2.0"]);
    let model = treevis::catalog::load(&onnx, &WeightsSource::Default, &Device::Cpu).unwrap();
    let listing = c.dataset().unwrap();
    let best: Vec<(f32, u32)> = listing
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let img = treevis::data::load_image(p).ok()?;
            let x = treevis::data::preprocess(&model, &img).unwrap();
            let s = model.net.forward(&x.unsqueeze(0).unwrap()).unwrap();
            let rows = treevis::recon::overview(&model, &s, 0, 1000).unwrap();
            let row = rows.iter().find(|r| r.blob == "layer4.1").unwrap();
            let u = row.units.iter().find(|u| u.channel == 3).unwrap();
            Some((u.activation, i as u32))
        })
        .collect();
    let top = best
        .iter()
        .copied()
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
        .unwrap();
    let e = &c.blob("layer4.1").unwrap().top[3][0];
    assert_eq!(e.image, top.1);
    assert!((e.act - top.0).abs() <= 1e-4 * top.0.abs().max(1.0));
    let img = listing[0].to_str().unwrap().to_string();
    let o = Command::new(BIN)
        .args([
            "overview", &img, "--model", &onnx, "--json", "--top", "2", "--cache",
        ])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["blob"] == "layer4.1")
        .unwrap();
    assert!(row["units"][0]["rank"].as_f64().is_some(), "{row}");
}

/// Allocations that fail as on a full GPU (batches above a size, in every stage) halve the
/// batches, and the build completes with the cache an unhindered build gives, on both
/// backends; a device where not even one image fits ends the build with an error that
/// says so, and the build resumes from its checkpoint once it fits.
#[test]
fn failed_allocations_halve_the_batches_and_change_nothing() {
    use treevis::featcache::{BuildOptions, Sizing};
    use treevis::memory::{Faults, Stage};
    let d = tempfile::tempdir().unwrap();
    let data = dataset(d.path(), 12);
    let images = treevis::data::source::collect(&[data]).unwrap();
    let opts = |out: &Path| BuildOptions {
        images: images.clone(),
        layers: vec!["conv5".into(), "conv2".into()],
        top_k: 3,
        opts: Default::default(),
        batch: 8,
        out: out.to_path_buf(),
        shard: (0, 1),
        checkpoint: 4,
        quiet: true,
    };
    for place in ["cpu", "cpu-generic"] {
        let place = treevis::model::parse_device(place).unwrap();
        let model = treevis::catalog::load("demo", &WeightsSource::Default, &place).unwrap();
        let models = std::slice::from_ref(&model);
        let whole = d.path().join(format!("whole-{}", place.name()));
        let w = treevis::featcache::build(models, &opts(&whole)).unwrap();
        let faults = Faults::default()
            .above(Stage::Scan, 3)
            .above(Stage::Forward, 2)
            .above(Stage::Rows, 5);
        let hindered = d.path().join(format!("hindered-{}", place.name()));
        let sizing = Sizing {
            auto: false,
            faults: faults.clone(),
        };
        let r = treevis::featcache::build_with(models, &opts(&hindered), &sizing).unwrap();
        for stage in [Stage::Scan, Stage::Forward, Stage::Rows] {
            assert!(faults.fired(stage) > 0, "{stage:?}");
        }
        assert_eq!((r.scanned, r.skipped), (13, 1));
        assert_eq!(r.reconstructions, w.reconstructions);
        equivalent(&whole, &hindered);
        // sized by memory (the CPU's RAM: the cap) gives the same cache again
        let sized = d.path().join(format!("sized-{}", place.name()));
        let auto = Sizing {
            auto: true,
            ..Default::default()
        };
        let r = treevis::featcache::build_with(models, &opts(&sized), &auto).unwrap();
        assert!(r.scan_batch >= 1 && r.scan_batch <= 8 && r.crop_rows >= 1);
        equivalent(&whole, &sized);
    }
    // nothing fits in pass 2: a clear error, and the scan it finished is kept
    let model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
    let models = std::slice::from_ref(&model);
    let full = d.path().join("full");
    let nothing = Sizing {
        auto: false,
        faults: Faults::default().above(Stage::Forward, 0),
    };
    let e = treevis::featcache::build_with(models, &opts(&full), &nothing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("out of memory even for one image"), "{e}");
    treevis::featcache::build(models, &opts(&full)).unwrap();
    equivalent(&d.path().join("whole-cpu"), &full);
}
