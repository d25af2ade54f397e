//! treevis: what a convolutional neural network sees, neuron by neuron.
//!
//! * [`model`]: specs, weights, the network and its forward state (pure numerics);
//! * [`recon`]: ReLU rules, paths, batched reconstructions, children, overviews, labels;
//! * [`data`]: image decoding, preprocessing, `.npy`;
//! * [`cli`]: the command line, one file per command (`cli/render.rs`, ...), thin wrappers
//!   over the above; its arguments become library values in `cli/args.rs`, and no module
//!   below it sees clap;
//! * [`bench`]: the benchmark behind `treevis bench`.
//!
//! Library code does not panic on anything a user can hand it: `unwrap`, `expect` and
//! `panic!` are denied outside tests (a broken invariant is an `Error::Internal`), and the
//! few compiled-in facts that are checked by tests say so where they are allowed.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod bench;
pub mod caffe;
pub mod catalog;
pub mod cli;
pub mod data;
pub mod engine;
pub mod error;
pub mod featcache;
pub mod fetch;
pub mod hex;
pub mod memory;
pub mod model;
pub mod onnx;
pub mod out;
pub mod panics;
pub mod progress;
pub mod recon;
pub mod report;
pub mod sysmem;
pub mod train;
pub mod tui;

pub use error::{Error, Result};
