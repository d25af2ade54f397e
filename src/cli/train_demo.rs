//! `treevis train-demo`: trains the demo network on generated images (CPU) and writes its
//! weights.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::args::positive;
use super::output::create_dir;
use crate::{data, train};

#[derive(Args, Debug)]
pub struct TrainDemoArgs {
    /// Seed of the initial weights, the training images and dropout.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 3000, value_parser = positive)]
    pub steps: usize,
    #[arg(long, default_value_t = 64, value_parser = positive)]
    pub batch: usize,
    /// Peak learning rate of AdamW (cosine decay).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Held-out images (a seed the training never sees) to report accuracy on.
    #[arg(long, default_value_t = 2200)]
    pub eval: u64,
    /// Spec to train (built-in name or file).
    #[arg(long, default_value = "demo")]
    pub model: String,
    #[arg(long, default_value = "models/demo.safetensors")]
    pub out: PathBuf,
}

impl TrainDemoArgs {
    pub fn options(&self) -> train::TrainOptions {
        train::TrainOptions {
            seed: self.seed,
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            weight_decay: 5e-4,
        }
    }
}

pub fn run(args: TrainDemoArgs) -> Result<()> {
    let spec = crate::model::LoadedSpec::resolve(&args.model)?.spec;
    let opts = args.options();
    let (steps, batch, eval, out) = (args.steps, args.batch, args.eval, &args.out);
    let started = std::time::Instant::now();
    let bar = crate::progress::bar(
        steps as u64,
        "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
    );
    let (mut avg_loss, mut avg_acc) = (0f32, 0f32);
    let weights = train::train(&spec, &opts, |s| {
        let a = if s.step == 0 { 1.0 } else { 0.05 };
        avg_loss = avg_loss * (1.0 - a) + s.loss * a;
        avg_acc = avg_acc * (1.0 - a) + s.acc * a;
        // an epoch: 100 steps
        bar.set_prefix(format!("{}", s.step / 100 + 1));
        bar.set_message(format!("loss {avg_loss:.3}  acc {:.1}%", avg_acc * 100.0));
        bar.inc(1);
    })?;
    bar.finish();
    let train_s = started.elapsed().as_secs_f64();
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_dir(dir)?;
    }
    crate::model::weights::write_safetensors(&weights, out)?;
    let net = crate::model::Net::build(spec, weights, &candle_core::Device::Cpu, out)?;
    let held_out = data::synth::HELD_OUT_SEED;
    let acc = train::evaluate(&net, held_out, 0..eval)?;
    crate::outln!(
        "trained {steps} steps of {batch} in {train_s:.0} s; held-out accuracy {:.2}% on {eval} fresh images (seed {held_out:#x}); wrote {}",
        acc * 100.0,
        out.display()
    )?;
    Ok(())
}
