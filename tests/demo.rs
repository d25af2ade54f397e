//! The built-in demo network: the committed weights classify fresh generated images, and
//! training (a short run) lowers the loss, so the training code cannot rot.

use candle_core::Device;
use treevis::data::synth;
use treevis::model::weights::{random_weights, TensorMap};
use treevis::model::{LoadedSpec, Net, WeightsSource};
use treevis::train::{self, demo_batch, softmax_xent, TrainOptions};

fn loss_on(spec: &treevis::model::Spec, w: TensorMap, seed: u64) -> f32 {
    let net = Net::build(spec.clone(), w, &Device::Cpu, std::path::Path::new("w")).unwrap();
    let (x, labels) = demo_batch(spec, seed, 0..44).unwrap();
    let s = net.forward(&x).unwrap();
    let top = net.blobs[0].layer;
    let logits = s.outputs[top]
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    softmax_xent(&logits, &labels, synth::CLASSES.len()).0
}

/// Accuracy of a built-in model's committed weights on `n` fresh images of `seed`.
fn accuracy(model: &str, seed: u64, n: u64) -> f32 {
    let m = treevis::catalog::load(model, &WeightsSource::Default, &Device::Cpu).unwrap();
    assert_eq!(
        m.labels,
        synth::CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    );
    let acc = train::evaluate(&m.net, seed, 0..n).unwrap();
    eprintln!(
        "{model}: {:.2}% of {n} fresh images of seed {seed}",
        acc * 100.0
    );
    acc
}

#[test]
fn committed_weights_classify_fresh_images() {
    let acc = accuracy("demo", synth::HELD_OUT_SEED, 550);
    assert!(acc >= 0.97, "held-out accuracy {acc}");
    let acc = accuracy("demo", 4242, 60);
    assert!(acc >= 0.97, "accuracy on 60 images of seed 4242: {acc}");
}

/// The residual demo (a graph: skips and projections) is trained by the same trainer to
/// at least 97% on images it never saw: the held-out set and the 60 of seed 4242.
#[test]
fn the_residual_demo_classifies_fresh_images() {
    let acc = accuracy("demo-resnet", synth::HELD_OUT_SEED, 550);
    assert!(acc >= 0.97, "held-out accuracy {acc}");
    let acc = accuracy("demo-resnet", 4242, 60);
    assert!(acc >= 0.97, "accuracy on 60 images of seed 4242: {acc}");
}

#[test]
fn a_short_training_run_of_the_residual_demo_lowers_the_loss() {
    short_run_lowers_the_loss("demo-resnet");
}

#[test]
fn a_short_training_run_lowers_the_loss() {
    short_run_lowers_the_loss("demo");
}

fn short_run_lowers_the_loss(model: &str) {
    let spec = LoadedSpec::resolve(model).unwrap().spec;
    let opts = TrainOptions {
        seed: 11,
        steps: 60,
        batch: 16,
        lr: 3e-3,
        weight_decay: 0.0,
    };
    let mut losses = Vec::new();
    let trained = train::train(&spec, &opts, |s| losses.push(s.loss)).unwrap();
    assert_eq!(losses.len(), 60);
    let before = loss_on(&spec, random_weights(&spec, 11).unwrap(), 99);
    let after = loss_on(&spec, trained, 99);
    assert!(after < before - 0.1, "held-out loss {before} -> {after}");
}

#[test]
fn training_is_deterministic_for_a_seed() {
    let spec = LoadedSpec::resolve("demo").unwrap().spec;
    let opts = TrainOptions {
        seed: 3,
        steps: 6,
        batch: 8,
        lr: 2e-3,
        weight_decay: 5e-4,
    };
    let a = train::train(&spec, &opts, |_| {}).unwrap();
    let b = train::train(&spec, &opts, |_| {}).unwrap();
    let c = train::train(
        &spec,
        &TrainOptions {
            seed: 4,
            ..opts.clone()
        },
        |_| {},
    )
    .unwrap();
    let flat = |m: &TensorMap, k: &str| m[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for k in a.keys() {
        assert_eq!(
            flat(&a, k),
            flat(&b, k),
            "{k} differs between two runs with one seed"
        );
    }
    assert_ne!(flat(&a, "conv1.weight"), flat(&c, "conv1.weight"));
}
