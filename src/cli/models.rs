//! `treevis models import-caffe|import-onnx|info|fetch|list`: importing networks from other
//! frameworks' files, what treevis makes of a model, and fetching pretrained weights.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::fetch::{Progress, Registry};
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Import a Caffe net (deploy prototxt, caffemodel, mean binaryproto) as a model folder
    /// that `--model DIR` loads: model.toml, weights.safetensors, mean.npy, labels.txt.
    ImportCaffe {
        /// The deploy `.prototxt` (current `layer` or legacy V1 `layers` syntax).
        deploy: PathBuf,
        /// The trained `.caffemodel` (binary NetParameter, V1 or V2).
        caffemodel: PathBuf,
        /// The mean `.binaryproto` ([1, 3, H, W], BGR), centre-cropped to the input size.
        #[arg(long)]
        mean: Option<PathBuf>,
        /// Class names, one per line (default for 1000 classes: ImageNet's).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// The model folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Import an ONNX model as a model folder that `--model DIR` loads and a user can edit:
    /// model.toml (the graph, tree blobs, preprocessing), weights.safetensors, labels.
    /// (`--model FILE.onnx` reads the file directly, the same way.)
    ImportOnnx {
        /// The `.onnx` file (weights inline or in external data files beside it).
        onnx: PathBuf,
        /// Class names, one per line (default for 1000 classes: ImageNet's).
        #[arg(long)]
        labels: Option<PathBuf>,
        /// The model folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// What treevis makes of a model: its graph, activations and the rule row each takes,
    /// tree blobs with shapes, and preprocessing (what was assumed for an ONNX file).
    Info {
        /// A built-in name, spec file, model folder or `.onnx` file.
        model: String,
    },
    /// Download pretrained weights (alexnet, vgg16, caffenet) from the locations
    /// torchvision's and Caffe's own download code use, verified against the digests kept
    /// in the repository; an interrupted download resumes. Afterwards `--model NAME` finds
    /// them by itself.
    Fetch {
        /// Models to fetch.
        #[arg(required = true)]
        names: Vec<String>,
        /// Get the files from this URL folder instead (a local mirror).
        #[arg(long)]
        mirror: Option<String>,
        /// Another registry of models (TOML, as models/registry.toml).
        #[arg(long)]
        registry: Option<PathBuf>,
        /// Where fetched models go (default: $XDG_CACHE_HOME/treevis/models).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The models treevis knows how to fetch, and which are here (verified).
    List {
        #[arg(long)]
        registry: Option<PathBuf>,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn registry(path: Option<&std::path::Path>) -> Result<Registry> {
    Ok(match path {
        Some(p) => Registry::parse(
            &std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?,
            &p.display().to_string(),
        )?,
        None => Registry::builtin(),
    })
}

/// indicatif bars for downloads.
struct Bars(indicatif::ProgressBar);

impl Progress for Bars {
    fn start(&self, file: &str, total: Option<u64>, already: u64) {
        if let Some(t) = total {
            self.0.set_length(t);
        }
        self.0.set_position(already);
        self.0.set_message(file.to_string());
        if already > 0 {
            self.0
                .println(format!("resuming {file} at {already} bytes"));
        }
    }
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }
    fn finish(&self) {
        self.0.finish();
    }
}

pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::ImportCaffe {
            deploy,
            caffemodel,
            mean,
            labels,
            out,
        } => {
            let im = crate::caffe::import(
                &deploy,
                &caffemodel,
                mean.as_deref(),
                labels.as_deref(),
                &out,
            )?;
            let blobs: Vec<String> = im
                .spec
                .blobs
                .iter()
                .map(|b| format!("{} (x{})", b.name, b.mult))
                .collect();
            crate::outln!(
                "imported {} layers and {} tensors into {}; tree blobs {}; use it with --model {}",
                im.spec.layers.len(),
                im.tensors,
                im.dir.display(),
                blobs.join(", "),
                im.dir.display()
            )?;
        }
        ModelsCommand::ImportOnnx { onnx, labels, out } => {
            let im = crate::catalog::import_onnx(&onnx)?;
            let mut spec = im.spec;
            let existed = out.exists();
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let written = (|| -> anyhow::Result<()> {
                if let Some(l) = &labels {
                    std::fs::copy(l, out.join("labels.txt"))
                        .with_context(|| format!("cannot copy {}", l.display()))?;
                    spec.labels = Some("labels.txt".into());
                }
                spec.weights = Some("weights.safetensors".into());
                crate::model::weights::write_safetensors(
                    &im.tensors,
                    &out.join("weights.safetensors"),
                )?;
                std::fs::write(out.join("model.toml"), spec.to_toml()?).with_context(|| {
                    format!("cannot write {}", out.join("model.toml").display())
                })?;
                Ok(())
            })();
            if written.is_err() && !existed {
                // no half-written model folder is left behind
                let _ = std::fs::remove_dir_all(&out);
            }
            written?;
            for n in &im.notes {
                crate::outln!("note: {n}")?;
            }
            let blobs: Vec<&str> = spec.blobs.iter().map(|b| b.name.as_str()).collect();
            crate::outln!(
                "imported {} layers and {} tensors into {}; tree blobs {}; use it with --model {}",
                spec.layers.len(),
                im.tensors.len(),
                out.display(),
                blobs.join(", "),
                out.display()
            )?;
        }
        ModelsCommand::Info { model } => info(&model)?,
        ModelsCommand::Fetch {
            names,
            mirror,
            registry: reg,
            dir,
        } => {
            let reg = registry(reg.as_deref())?;
            let dir = dir.unwrap_or_else(crate::fetch::models_dir);
            for n in &names {
                let entry = reg.get(n)?;
                let bar = crate::progress::bar(
                    0,
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                );
                let files = crate::fetch::fetch(entry, &dir, mirror.as_deref(), &Bars(bar))?;
                for f in files {
                    crate::outln!("{n}: {} (verified)", f.display())?;
                }
            }
        }
        ModelsCommand::List { registry: reg, dir } => {
            let reg = registry(reg.as_deref())?;
            let dir = dir.unwrap_or_else(crate::fetch::models_dir);
            let wn = reg.model.iter().map(|m| m.name.len()).max().unwrap_or(0);
            let ws = reg.model.iter().map(|m| m.spec.len()).max().unwrap_or(0);
            for m in &reg.model {
                let here = m.files.iter().all(|f| {
                    crate::fetch::verify(&dir.join(&m.name).join(&f.name), f).unwrap_or(false)
                });
                crate::outln!(
                    "{:wn$} {:8} spec {:ws$} {}",
                    m.name,
                    if here { "present" } else { "absent" },
                    m.spec,
                    m.description
                )?;
                for f in &m.files {
                    crate::outln!("{:wn$}  {}  {}", "", f.name, f.url)?;
                }
            }
            crate::outln!("(folder: {})", dir.display())?;
        }
    }
    Ok(())
}

fn info(model: &str) -> Result<()> {
    use crate::model::WeightsSource;
    let dev = candle_core::Device::Cpu;
    let (m, notes, widths) =
        match crate::catalog::load_with_notes(model, &WeightsSource::Default, &dev) {
            Ok((m, notes)) => (m, notes, "from its weights"),
            Err(e) => {
                let (m, mut notes) =
                    crate::catalog::load_with_notes(model, &WeightsSource::Random(0), &dev)?;
                notes.push(format!(
                    "default weights not loaded ({e}); shapes at the spec's published widths"
                ));
                (m, notes, "published")
            }
        };
    let net = &m.net;
    let spec = m.spec();
    crate::outln!("{}: {}", spec.name, spec.description)?;
    let mut kinds: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in &spec.layers {
        *kinds.entry(l.kind.type_name()).or_default() += 1;
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    crate::outln!(
        "graph: {} layers ({}), {}",
        spec.layers.len(),
        kinds.join(", "),
        if net.is_chain() {
            "a chain"
        } else {
            "a graph with branches"
        }
    )?;
    let mut acts: Vec<String> = vec![];
    for l in &net.layers {
        let row = match l {
            crate::model::net::Layer::Relu => "relu: rectifier (the rule applies)".to_string(),
            crate::model::net::Layer::Prelu(_) => "prelu: rectifier (the rule applies)".to_string(),
            crate::model::net::Layer::Binary(b) if b.op.needs_operands() => format!(
                "{}: product rule (true gradient of both sides under every rule)",
                b.op.name()
            ),
            crate::model::net::Layer::Act(a) => format!(
                "{}: {}",
                a.name(),
                match a.family() {
                    crate::model::act::Family::Rectifier => "rectifier (the rule applies)",
                    crate::model::act::Family::Gate =>
                        "gate/squasher (true gradient under every rule)",
                }
            ),
            _ => continue,
        };
        if !acts.contains(&row) {
            acts.push(row);
        }
    }
    crate::outln!(
        "activations: {}",
        if acts.is_empty() {
            "none".into()
        } else {
            acts.join("; ")
        }
    )?;
    let i = &spec.input;
    crate::outln!(
        "input: {}x{} {:?}, values 0..{}, mean {:?}, std {:?}, {}",
        i.size[0],
        i.size[1],
        i.color,
        i.scale,
        i.mean,
        i.std,
        match i.resize {
            Some(r) => format!("resize {r} then centre crop"),
            None => "resized to the input size".into(),
        }
    )?;
    crate::outln!(
        "weights: {} (widths {widths}); {} classes",
        m.weights_origin,
        m.labels.len()
    )?;
    crate::outln!("tree blobs (top first), each with its children's blob:")?;
    for b in &net.blobs {
        crate::outln!(
            "  {:24} {:16} layer {:28} children in {}",
            b.name,
            b.shape.to_string(),
            spec.layers[b.layer].name,
            b.below.map(|j| net.blobs[j].name.as_str()).unwrap_or("-")
        )?;
    }
    for n in notes {
        crate::outln!("note: {n}")?;
    }
    Ok(())
}
