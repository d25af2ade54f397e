//! `treevis models ...`: importing networks from other frameworks' files.

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
            println!(
                "imported {} layers and {} tensors into {}; tree blobs {}; use it with --model {}",
                im.spec.layers.len(),
                im.tensors,
                im.dir.display(),
                blobs.join(", "),
                im.dir.display()
            );
        }
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
                let bar = indicatif::ProgressBar::new(0);
                bar.set_style(
                    indicatif::ProgressStyle::with_template(
                        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template")
                    .progress_chars("=> "),
                );
                let files = crate::fetch::fetch(entry, &dir, mirror.as_deref(), &Bars(bar))?;
                for f in files {
                    println!("{n}: {} (verified)", f.display());
                }
            }
        }
        ModelsCommand::List { registry: reg, dir } => {
            let reg = registry(reg.as_deref())?;
            let dir = dir.unwrap_or_else(crate::fetch::models_dir);
            for m in &reg.model {
                let here = m.files.iter().all(|f| {
                    crate::fetch::verify(&dir.join(&m.name).join(&f.name), f).unwrap_or(false)
                });
                println!(
                    "{:10} {:8} spec {:9} {}",
                    m.name,
                    if here { "present" } else { "absent" },
                    m.spec,
                    m.description
                );
                for f in &m.files {
                    println!("           {}  {}", f.name, f.url);
                }
            }
            println!("(folder: {})", dir.display());
        }
    }
    Ok(())
}
