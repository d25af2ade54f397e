//! `treevis cache build|info|show|merge`: the neuron feature cache from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

use super::args::{positive, weights_source, DeviceList, Method, ModelArgs, Mult};
use crate::featcache::{self, BuildOptions, FeatureCache};
use crate::model::WeightsSource;
use crate::recon::{Options, Path};

#[derive(Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Build (or resume) a cache: every neuron's top-k dataset images with their
    /// reconstructions, cropped, in LMDB.
    Build(BuildArgs),
    /// What a cache holds and how it was built.
    Info {
        cache: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A neuron's grid: its top-k image crops beside their reconstruction crops, as PNG.
    Show {
        cache: PathBuf,
        /// The neuron, `blob:channel` (e.g. `conv4:285`).
        neuron: Path,
        /// PNG to write (default: `<blob>_<channel>_grid.png`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also check that the cache belongs to this model (and `--weights`).
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_parser = weights_source)]
        weights: Option<WeightsSource>,
    },
    /// Merge the caches of shards `0/N .. N-1/N` into one, equal to a single build.
    Merge {
        /// The shard caches.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// The dataset: image folders (recursive, sorted), image files, Caffe `Datum` LMDBs,
    /// or text files listing images (`path [label]` per line). Repeatable.
    #[arg(long, required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub net: ModelArgs,
    /// Devices, comma-separated: one worker (and one copy of the model) each, e.g.
    /// `cuda:0,cuda:1`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceList,
    /// Blobs to cache, comma-separated (default: every blob of the tree).
    #[arg(long, value_delimiter = ',')]
    pub layers: Vec<String>,
    /// Images kept per neuron.
    #[arg(long, default_value_t = 16, value_parser = positive)]
    pub top_k: usize,
    /// ReLU backward rule of the reconstructions.
    #[arg(long, value_enum, default_value_t = Method::Guided)]
    pub method: Method,
    #[arg(long, value_enum, default_value_t)]
    pub mult: Mult,
    /// Images per forward pass, exactly (halved when they do not fit on the device).
    /// Default: as many as fit, up to --max-batch.
    #[arg(long, value_parser = positive, conflicts_with = "max_batch")]
    pub batch: Option<usize>,
    /// The most images per forward pass when treevis sizes the batches: each pass takes as
    /// many images as fit in half the device's free memory (the CUDA driver's count on a
    /// GPU, the available RAM on the CPU), by the net's shapes. A batch that does not fit
    /// after all is halved and retried (`-v` logs the sizes chosen).
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub max_batch: usize,
    /// The cache folder (an LMDB environment); an unfinished build there is resumed.
    #[arg(long)]
    pub out: PathBuf,
    /// Build only shard I of N (`I/N`: the images with index % N == I); merge the shards
    /// with `treevis cache merge`.
    #[arg(long, default_value = "0/1", value_parser = parse_shard)]
    pub shard: (u64, u64),
    /// Images between checkpoints (and at most 60 s; a killed build resumes from the last).
    /// Each checkpoint rewrites the lists and quantile samples (about 45 MB for AlexNet).
    #[arg(long, default_value_t = 2048, value_parser = positive)]
    pub checkpoint: usize,
    /// No progress bars (batch jobs).
    #[arg(long)]
    pub quiet: bool,
    /// Print the build's measurements as JSON at the end.
    #[arg(long)]
    pub json: bool,
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}`: expected I/N, e.g. 0/4"))?;
    let (i, n): (u64, u64) = (
        i.trim()
            .parse()
            .map_err(|_| format!("`{s}`: I is not a number"))?,
        n.trim()
            .parse()
            .map_err(|_| format!("`{s}`: N is not a number"))?,
    );
    if n == 0 || i >= n {
        return Err(format!("`{s}`: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub fn run(args: CacheArgs) -> Result<()> {
    match args.command {
        CacheCommand::Build(b) => {
            let images = crate::data::source::collect(&b.data)?;
            let models =
                featcache::load_models(&b.net.model, &b.net.weights(), &b.device.to_string())?;
            let opts = BuildOptions {
                images,
                layers: b.layers,
                top_k: b.top_k,
                opts: Options {
                    rule: b.method.into(),
                    mult: b.mult.into(),
                },
                batch: b.batch.unwrap_or(b.max_batch),
                out: b.out.clone(),
                shard: b.shard,
                checkpoint: b.checkpoint.max(1),
                quiet: b.quiet,
            };
            let sizing = featcache::Sizing {
                auto: b.batch.is_none(),
                ..Default::default()
            };
            let r = featcache::build_with(&models, &opts, &sizing)?;
            if b.json {
                crate::outln!("{}", serde_json::to_string_pretty(&r)?)?;
            } else if !b.quiet {
                crate::outln!(
                    "{}: scanned {} images ({:.1}/s, {} a batch, {} skipped), {} reconstructions ({:.1}/s, {} images of {} rows a batch), {} on disk",
                    b.out.display(),
                    r.scanned,
                    r.images_per_second(),
                    r.scan_batch,
                    r.skipped,
                    r.reconstructions,
                    r.recons_per_second(),
                    r.crop_batch,
                    r.crop_rows,
                    mb(r.disk_bytes)
                )?;
            }
        }
        CacheCommand::Info { cache, json } => {
            let c = FeatureCache::open(&cache)?;
            let m = &c.meta;
            if json {
                let v = serde_json::json!({
                    "meta": m,
                    "skipped": c.skipped,
                    "disk_bytes": c.disk_bytes(),
                    "blobs": c.tops.iter().map(|t| serde_json::json!({
                        "blob": t.name, "channels": t.top.len(),
                        "samples_per_channel": t.samples.first().map(Vec::len).unwrap_or(0),
                    })).collect::<Vec<_>>(),
                });
                crate::outln!("{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            crate::outln!("feature cache {} (complete)", cache.display())?;
            crate::outln!(
                "model {}: spec sha256 {}…, weights sha256 {}…",
                m.model,
                featcache::short(&m.spec_sha256),
                featcache::short(&m.weights_sha256)
            )?;
            crate::outln!(
                "method {}, multiplier {:?}, top {} per neuron",
                m.opts.rule.name(),
                m.opts.mult,
                m.top_k
            )?;
            crate::outln!(
                "dataset: {} images (listing sha256 {}…), {} skipped{}",
                m.images,
                featcache::short(&m.dataset_sha256),
                c.skipped.len(),
                if m.shard.1 > 1 {
                    format!("; shard {}/{}", m.shard.0, m.shard.1)
                } else {
                    String::new()
                }
            )?;
            for (i, msg) in c.skipped.iter().take(5) {
                crate::outln!("  skipped #{i}: {msg}")?;
            }
            for t in &c.tops {
                crate::outln!(
                    "  {:>8}: {} neurons, {} quantile samples each",
                    t.name,
                    t.top.len(),
                    t.samples.first().map(Vec::len).unwrap_or(0)
                )?;
            }
            crate::outln!("{} on disk", mb(c.disk_bytes()))?;
        }
        CacheCommand::Show {
            cache,
            neuron,
            out,
            model,
            weights,
        } => {
            let c = FeatureCache::open(&cache)?;
            if let Some(m) = model {
                let model = crate::catalog::load(
                    &m,
                    &weights.unwrap_or(WeightsSource::Default),
                    &candle_core::Device::Cpu,
                )?;
                c.meta.check_model(&model, &cache)?;
            }
            if neuron.len() != 1 {
                bail!("`{neuron}`: give one neuron, `blob:channel`");
            }
            let n = neuron.last();
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("{}_{}_grid.png", n.blob, n.channel)));
            let crops = c.crops(&n.blob, n.channel)?;
            crate::featcache::grid::render(&crops)?
                .save(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let dataset = c.dataset()?;
            crate::outln!("{neuron}: top {} of {} images", crops.len(), c.meta.images)?;
            for (r, cr) in crops.iter().enumerate() {
                let name = dataset
                    .get(cr.entry.image as usize)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| format!("#{}", cr.entry.image));
                crate::outln!("  {:2}. {:9.3}  {name}", r + 1, cr.entry.act)?;
            }
            crate::outln!("wrote {}", out.display())?;
        }
        CacheCommand::Merge { shards, out } => {
            let m = featcache::merge(&shards, &out)?;
            crate::outln!(
                "merged {} shards ({} images) into {}",
                shards.len(),
                m.images,
                out.display()
            )?;
        }
    }
    Ok(())
}
