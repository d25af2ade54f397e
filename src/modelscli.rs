//! `treevis models ...`: importing networks from other frameworks' files.

use std::path::PathBuf;

use anyhow::Result;
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
    }
    Ok(())
}
