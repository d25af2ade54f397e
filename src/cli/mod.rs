//! The command line: [`Cli`] and its [`Command`]s, one file per command, each with its
//! `XArgs` (clap) and `run(XArgs)`. Shared argument groups and their conversions into the
//! library's values are in [`args`]; what commands write, in [`output`]. The library below
//! never sees clap.
//!
//! A new command that studies one image flattens [`args::EngineArgs`],
//! [`args::MethodArgs`] and [`args::InputArgs`], gets its model, image and forward state
//! from [`args::Loaded::new`] and its [`crate::recon::Options`] from
//! [`args::MethodArgs::options`] (see [`children`] for a short one).

pub mod args;
pub mod bench;
pub mod cache;
pub mod children;
pub mod default;
pub mod demo_gallery;
pub mod forward;
pub mod keys;
pub mod labels;
pub mod models;
pub mod output;
pub mod overview;
pub mod parents;
pub mod random_weights;
pub mod render;
pub mod sanity;
pub mod train_demo;
pub mod tree;
pub mod tui;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

pub use args::{EngineArgs, InputArgs, Loaded, MethodArgs, ModelArgs};
pub use default::{demo_gallery, write_demo_gallery, DEMO_GALLERY_SEED};
pub use tui::{collect_images, TuiArgs};

/// Explore what a convolutional neural network sees: Zeiler/Fergus reconstructions
/// (deconv, guided backprop) of single neurons and of paths through the feature hierarchy.
///
/// A path names neurons top first, `blob:channel` joined by `/`, e.g.
/// `conv5:12/conv4:40/conv3:7`: a reconstruction from conv5 channel 12, filtered through
/// channel 40 of conv4 and channel 7 of conv3.
///
/// With no command, treevis opens the terminal app on IMAGE files and folders (the demo
/// gallery when none are given); without a terminal it prints a headless summary instead.
#[derive(Parser, Debug)]
#[command(
    name = "treevis",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub tui: TuiArgs,
    /// Log more (repeat for more detail); logs go to stderr.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The commands, in the order `--help` lists them.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// The neuron feature cache: build, info, show, merge.
    Cache(cache::CacheArgs),
    /// Models: import-onnx, import-caffe, info, fetch, list.
    Models(models::ModelsArgs),
    /// Top-5 classes of an image.
    Labels(labels::LabelsArgs),
    /// The most active neurons of every blob, with their reconstructions.
    Overview(overview::OverviewArgs),
    /// Reconstruction of one path, as PNG and/or the raw gradient.
    Render(render::RenderArgs),
    /// The neurons of the blob below that contribute most to a path's last node.
    Children(children::ChildrenArgs),
    /// The neurons of the blob above whose reconstructions reach a path's last node most.
    Parents(parents::ParentsArgs),
    /// Does a reconstruction show what the network learned? Cascading randomization of the
    /// weights, top down, with the similarity to the trained reconstruction at each step.
    Sanity(sanity::SanityArgs),
    /// A tree from one root, `depth` levels of `k` children, with a PNG per node.
    Tree(tree::TreeArgs),
    /// Every blob of the forward pass as `.npy` (plus the input as `data.npy`).
    Forward(forward::ForwardArgs),
    /// Time the engine on a network with random weights and print a table.
    Bench(bench::BenchArgs),
    /// Train the demo network on generated images (CPU) and write its weights.
    TrainDemo(train_demo::TrainDemoArgs),
    /// Write generated demo images (named after their class) into a folder.
    DemoGallery(demo_gallery::DemoGalleryArgs),
    /// Print the effective key bindings of the terminal app.
    Keys(keys::KeysArgs),
    /// Write deterministic random weights of a spec's published widths (safetensors).
    RandomWeights(random_weights::RandomWeightsArgs),
}

/// Runs the command; with none, the terminal app on a terminal, else the headless summary.
pub fn run(cli: Cli) -> Result<()> {
    let tui_mode = opens_tui(&cli);
    let Some(command) = cli.command else {
        return if tui_mode {
            tui::run(cli.tui)
        } else if cli.tui.paths.is_empty() {
            default::run()
        } else {
            bail!("the terminal app needs a terminal; for scripts use the headless commands (treevis --help)")
        };
    };
    match command {
        Command::Cache(a) => cache::run(a),
        Command::Models(a) => models::run(a),
        Command::Labels(a) => labels::run(a),
        Command::Overview(a) => overview::run(a),
        Command::Render(a) => render::run(a),
        Command::Children(a) => children::run(a),
        Command::Parents(a) => parents::run(a),
        Command::Sanity(a) => sanity::run(a),
        Command::Tree(a) => tree::run(a),
        Command::Forward(a) => forward::run(a),
        Command::Bench(a) => bench::run(a),
        Command::TrainDemo(a) => train_demo::run(a),
        Command::DemoGallery(a) => demo_gallery::run(a),
        Command::Keys(a) => keys::run(a),
        Command::RandomWeights(a) => random_weights::run(a),
    }
}

/// Whether `treevis` with these arguments opens the terminal app.
pub fn opens_tui(cli: &Cli) -> bool {
    use std::io::IsTerminal;
    cli.command.is_none() && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Logs go to stderr, or to `treevis.log` in the cache folder while the terminal app owns
/// the screen.
pub fn init_logging(verbose: u8, to_file: bool) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TREEVIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    if to_file {
        let dir = crate::fetch::cache_dir();
        let file = std::fs::create_dir_all(&dir).and_then(|_| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("treevis.log"))
        });
        if let Ok(file) = file {
            let filter = tracing_subscriber::EnvFilter::try_from_env("TREEVIS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_writer(std::sync::Mutex::new(file))
                .with_ansi(false)
                .try_init();
        }
        return;
    }
    // warnings are part of a command's output: plain lines a user or a script can read
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// An error message as one line of at most [`MAX_ERROR_CHARS`] characters: a message that
/// echoes a huge input (a path of 10,000 nodes) keeps its start and end.
pub fn one_line(msg: &str) -> String {
    let flat = msg.replace(['\n', '\r'], " ");
    let n = flat.chars().count();
    if n <= MAX_ERROR_CHARS {
        return flat;
    }
    let head: String = flat.chars().take(MAX_ERROR_CHARS / 2).collect();
    let tail: String = flat.chars().skip(n - MAX_ERROR_CHARS / 4).collect();
    format!(
        "{head} [... {} characters ...] {tail}",
        n - head.chars().count() - tail.chars().count()
    )
}

/// The longest error line the binary prints.
pub const MAX_ERROR_CHARS: usize = 360;

#[cfg(test)]
mod one_line_tests {
    #[test]
    fn long_messages_keep_their_ends_on_one_line() {
        let long = format!("bad path `{}`: no blob x", "conv5:1/".repeat(10_000));
        let l = super::one_line(&long);
        assert!(
            l.chars().count() < super::MAX_ERROR_CHARS + 40,
            "{}",
            l.len()
        );
        assert!(l.starts_with("bad path `conv5:1/") && l.ends_with("no blob x"));
        assert_eq!(super::one_line("a\nb"), "a b");
    }
}
