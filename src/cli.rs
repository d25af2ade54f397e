//! The headless commands: each loads a model and one image, calls the same library
//! functions the TUI will, and writes text, JSON, PNG or `.npy`.

use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::data;
use crate::model::{parse_device, ForwardState, Model};
use crate::recon::display::{self, Display};
use crate::recon::{self, MultMode, Options, Path, Rule};

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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The neuron feature cache: build, info, show, merge.
    Cache(crate::cachecli::CacheArgs),
    /// Models: import-onnx, import-caffe, info, fetch, list.
    Models(crate::modelscli::ModelsArgs),
    /// Top-5 classes of an image.
    Labels {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        /// Print JSON: [{index, name, prob}].
        #[arg(long)]
        json: bool,
    },
    /// The most active neurons of every blob, with their reconstructions.
    Overview {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        /// Neurons per blob.
        #[arg(long, default_value_t = 5, value_parser = crate::args::positive)]
        top: usize,
        /// Print JSON: [{blob, units: [{channel, activation, rank?}]}].
        #[arg(long)]
        json: bool,
        /// Write the input and one PNG per neuron (`conv5_12.png`) into this folder.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        display: Display,
        /// A feature cache of this model: each neuron's activation is ranked against the
        /// dataset's (`p97`: above 97% of the images).
        #[arg(long)]
        cache: Option<PathBuf>,
    },
    /// Reconstruction of one path, as PNG and/or the raw gradient.
    Render {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        /// The path, top node first: `conv4:285/conv3:303`.
        #[arg(long)]
        path: Path,
        #[arg(long, value_enum, default_value_t)]
        display: Display,
        /// PNG to write (default: the path's name in the current folder).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the raw gradient at the input, float32 [3, H, W] `.npy`.
        #[arg(long)]
        raw: Option<PathBuf>,
    },
    /// The neurons of the blob below that contribute most to a path's last node.
    Children {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        #[arg(long)]
        path: Path,
        /// How many children.
        #[arg(long, default_value_t = 5, value_parser = crate::args::positive)]
        k: usize,
        /// Print JSON: [{blob, channel, weight, path}].
        #[arg(long)]
        json: bool,
    },
    /// A tree from one root, `depth` levels of `k` children, with a PNG per node.
    Tree {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        /// The root path (usually one node, e.g. `conv5:12`).
        #[arg(long)]
        root: Path,
        /// Levels below the root.
        #[arg(long, default_value_t = 2)]
        depth: usize,
        #[arg(long, default_value_t = 3, value_parser = crate::args::positive)]
        k: usize,
        #[arg(long, value_enum, default_value_t)]
        display: Display,
        /// Folder for tree.json and the PNGs.
        #[arg(long)]
        out: PathBuf,
    },
    /// Every blob of the forward pass as `.npy` (plus the input as `data.npy`).
    Forward {
        #[command(flatten)]
        engine: EngineArgs,
        #[command(flatten)]
        input: InputArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time the engine on a network with random weights and print a table.
    Bench(crate::bench::BenchArgs),
    /// Train the demo network on generated images (CPU) and write its weights.
    TrainDemo {
        /// Seed of the initial weights, the training images and dropout.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 3000, value_parser = crate::args::positive)]
        steps: usize,
        #[arg(long, default_value_t = 64, value_parser = crate::args::positive)]
        batch: usize,
        /// Peak learning rate of AdamW (cosine decay).
        #[arg(long, default_value_t = 2e-3)]
        lr: f64,
        /// Held-out images (a seed the training never sees) to report accuracy on.
        #[arg(long, default_value_t = 2200)]
        eval: u64,
        /// Spec to train (built-in name or file).
        #[arg(long, default_value = "demo")]
        model: String,
        #[arg(long, default_value = "models/demo.safetensors")]
        out: PathBuf,
    },
    /// Write generated demo images (named after their class) into a folder.
    DemoGallery {
        #[arg(long)]
        out: PathBuf,
        /// How many images (classes in turn).
        #[arg(long, default_value_t = 22)]
        n: u64,
        /// Dataset seed (the held-out images of training use other seeds).
        #[arg(long, default_value_t = 2026)]
        seed: u64,
    },
    /// Print the effective key bindings of the terminal app.
    Keys {
        /// A keymap file overriding entries of the built-in one.
        #[arg(long)]
        keymap: Option<PathBuf>,
    },
    /// Write deterministic random weights of a spec's published widths (safetensors).
    RandomWeights {
        /// Built-in model name or spec file.
        #[arg(long, default_value = "alexnet")]
        model: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Options of the terminal app.
#[derive(Args, Debug, Clone)]
pub struct TuiArgs {
    /// Images to study: files, folders (searched recursively), Caffe Datum LMDBs, or list
    /// files (`path [label]` per line).
    pub paths: Vec<PathBuf>,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// How images are drawn: ask the terminal, force one protocol, or text only.
    #[arg(long, value_enum, default_value_t)]
    pub protocol: crate::tui::Protocol,
    /// How long (milliseconds) the terminal may take to say what graphics it has; raise it
    /// over very slow links. A terminal that does not answer gets half-blocks.
    #[arg(long, value_name = "MS", default_value_t = 3000)]
    pub query_timeout: u64,
    /// A keymap file overriding entries of the built-in one (default: the XDG config
    /// folder's treevis/keymap.toml).
    #[arg(long)]
    pub keymap: Option<PathBuf>,
    /// Save the exploration to this file on every change, and restore it on start.
    #[arg(long)]
    pub session: Option<PathBuf>,
    /// A feature cache (`treevis cache build`): `f` shows a neuron's top dataset patches,
    /// and overview tiles show where the activation ranks over the dataset (`p97`).
    #[arg(long)]
    pub cache: Option<PathBuf>,
}

pub use crate::args::ModelArgs;

/// Model and method options shared by every command.
#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    #[command(flatten)]
    pub net: ModelArgs,
    /// `cpu`, or `cuda:N` in a build with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// ReLU backward rule.
    #[arg(long, value_enum, default_value_t)]
    pub method: Rule,
    /// Rescaling of filtered gradients along a path.
    #[arg(long, value_enum, default_value_t)]
    pub mult: MultMode,
}

/// The image to study.
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    /// Image file (PNG, JPEG, ...) or an LMDB record (`DB_FOLDER/KEY`), preprocessed as the
    /// model's spec says.
    pub image: Option<PathBuf>,
    /// An already preprocessed float32 [3, H, W] `.npy` instead of an image.
    #[arg(long, conflicts_with = "image")]
    pub input_npy: Option<PathBuf>,
    /// Write the preprocessed input as float32 [3, H, W] `.npy`.
    #[arg(long)]
    pub dump_input: Option<PathBuf>,
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

/// A model with one image's forward state.
pub struct Loaded {
    pub model: Model,
    pub input: Tensor,
    pub state: ForwardState,
    pub opts: Options,
}

impl Loaded {
    pub fn new(engine: &EngineArgs, input: &InputArgs) -> Result<Loaded> {
        let device = parse_device(&engine.device)?;
        let mut model = engine.net.load(&device)?;
        let x = match (&input.image, &input.input_npy) {
            (Some(img), None) => {
                let rgb = data::load_image(img)?;
                data::preprocess(&model, &rgb)?
            }
            (None, Some(npy)) => data::load_input_npy(npy)?,
            (None, None) => bail!("no input: give an IMAGE file or --input-npy FILE"),
            (Some(_), Some(_)) => bail!("give an IMAGE file or --input-npy FILE, not both"),
        };
        let (h, w) = (x.dims()[1], x.dims()[2]);
        if [h, w] != model.spec().input.size {
            model.net = model.net.resized(h, w)?;
            model.mean_image = None;
            tracing::warn!(
                "the input is {h}x{w}, not the spec's {}x{}: the net is run at that size where it can be",
                model.spec().input.size[0],
                model.spec().input.size[1]
            );
        }
        if let Some(p) = &input.dump_input {
            let v = crate::model::net::host_vec(&x)?;
            data::npy::write_f32(p, x.dims(), &v)?;
        }
        let state = model.net.forward(&x.unsqueeze(0)?)?;
        Ok(Loaded {
            model,
            input: x,
            state,
            opts: Options {
                rule: engine.method,
                mult: engine.mult,
            },
        })
    }
}

/// An overview row as text: `conv5:12 (2.941)  conv5:3 (1.200) ...`.
fn units_line(r: &recon::BlobUnits, decimals: usize) -> String {
    r.units
        .iter()
        .map(|u| {
            let rank = u.percentile_label();
            format!(
                "{}:{} ({:.*}{rank})",
                r.blob, u.channel, decimals, u.activation
            )
        })
        .collect::<Vec<_>>()
        .join("  ")
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn save_png(img: &image::RgbImage, path: &FsPath) -> Result<()> {
    img.save(path)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn create_dir(dir: &FsPath) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create folder {}", dir.display()))
}

/// Whether `treevis` with these arguments opens the terminal app.
pub fn opens_tui(cli: &Cli) -> bool {
    use std::io::IsTerminal;
    cli.command.is_none() && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

pub fn run(cli: Cli) -> Result<()> {
    let tui_mode = opens_tui(&cli);
    let Some(command) = cli.command else {
        return if tui_mode {
            run_tui(cli.tui)
        } else if cli.tui.paths.is_empty() {
            run_default()
        } else {
            bail!("the terminal app needs a terminal; for scripts use the headless commands (treevis --help)")
        };
    };
    match command {
        Command::Labels {
            engine,
            input,
            json,
        } => {
            let l = Loaded::new(&engine, &input)?;
            let labels = recon::labels(&l.model, &l.state, 0, 5)?;
            if json {
                return print_json(&labels);
            }
            for (i, lab) in labels.iter().enumerate() {
                crate::outln!(
                    "{}. {:6.2}%  {} ({})",
                    i + 1,
                    lab.prob * 100.0,
                    lab.name,
                    lab.index
                )?;
            }
        }
        Command::Overview {
            engine,
            input,
            top,
            json,
            out,
            display,
            cache,
        } => {
            let l = Loaded::new(&engine, &input)?;
            let mut rows = recon::overview(&l.model, &l.state, 0, top)?;
            if let Some(dir) = &cache {
                let c = crate::featcache::FeatureCache::open_for(dir, &l.model)?;
                crate::featcache::rank_overview(&c, &mut rows);
            }
            if let Some(dir) = &out {
                create_dir(dir)?;
                save_png(
                    &display::render_input(&l.model, &l.input)?,
                    &dir.join("input.png"),
                )?;
                let paths = recon::overview_paths(&rows);
                for r in recon::reconstruct(&l.model, &l.state, 0, &l.opts, &paths)? {
                    save_png(
                        &display::render(&l.model, &r.grad, display)?,
                        &dir.join(format!("{}.png", r.path.file_stem())),
                    )?;
                }
            }
            if json {
                return print_json(&rows);
            }
            for r in &rows {
                crate::outln!("{:>8}  {}", r.blob, units_line(r, 3))?;
            }
            if let Some(dir) = &out {
                crate::outln!(
                    "wrote {} tiles to {}",
                    rows.iter().map(|r| r.units.len()).sum::<usize>(),
                    dir.display()
                )?;
            }
        }
        Command::Render {
            engine,
            input,
            path,
            display: mode,
            out,
            raw,
        } => {
            let l = Loaded::new(&engine, &input)?;
            let r =
                recon::reconstruct(&l.model, &l.state, 0, &l.opts, std::slice::from_ref(&path))?
                    .remove(0);
            if let Some(note) = &r.note {
                eprintln!("treevis: note: {note}");
            }
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{}.png", path.file_stem())));
            save_png(&display::render(&l.model, &r.grad, mode)?, &out)?;
            if let Some(raw) = raw {
                data::npy::write_f32(&raw, r.grad.dims(), &crate::model::net::host_vec(&r.grad)?)?;
            }
            crate::outln!("{}", out.display())?;
        }
        Command::Children {
            engine,
            input,
            path,
            k,
            json,
        } => {
            let l = Loaded::new(&engine, &input)?;
            let kids = recon::children(
                &l.model,
                &l.state,
                0,
                &l.opts,
                std::slice::from_ref(&path),
                k,
            )?
            .remove(0);
            if json {
                return print_json(&kids);
            }
            for c in &kids {
                crate::outln!("{:12.6}  {}", c.weight, c.path)?;
            }
        }
        Command::Tree {
            engine,
            input,
            root,
            depth,
            k,
            display: mode,
            out,
        } => {
            let l = Loaded::new(&engine, &input)?;
            create_dir(&out)?;
            let tree = recon::tree::build(
                &l.model,
                &l.state,
                0,
                &l.opts,
                &root,
                depth,
                &recon::Ranking::abs(k),
            )?;
            save_png(
                &display::render_input(&l.model, &l.input)?,
                &out.join("input.png"),
            )?;
            let mut count = 0;
            let json = tree.to_json(&mut |node| {
                let file = format!("{}.png", node.path.file_stem());
                count += 1;
                save_png(
                    &display::render(&l.model, &node.grad, mode)?,
                    &out.join(&file),
                )?;
                Ok(file)
            })?;
            let f = out.join("tree.json");
            std::fs::write(&f, serde_json::to_string_pretty(&json)?)
                .with_context(|| format!("cannot write {}", f.display()))?;
            crate::outln!("wrote {} ({count} nodes)", f.display())?;
        }
        Command::Forward { engine, input, out } => {
            let l = Loaded::new(&engine, &input)?;
            create_dir(&out)?;
            data::npy::write_f32(
                &out.join("data.npy"),
                l.input.dims(),
                &crate::model::net::host_vec(&l.input)?,
            )?;
            for b in &l.model.net.blobs {
                let t = l.state.output(b.layer, &b.name)?.get(0)?;
                let name = format!("{}.npy", b.name.replace(['/', '\\'], "_"));
                data::npy::write_f32(
                    &out.join(&name),
                    t.dims(),
                    &crate::model::net::host_vec(&t)?,
                )?;
            }
            crate::outln!(
                "wrote {} blobs to {}",
                l.model.net.blobs.len() + 1,
                out.display()
            )?;
        }
        Command::Bench(args) => crate::bench::run(&args)?,
        Command::Cache(args) => crate::cachecli::run(args)?,
        Command::Models(args) => crate::modelscli::run(args)?,
        Command::TrainDemo {
            seed,
            steps,
            batch,
            lr,
            eval,
            model,
            out,
        } => {
            train_demo(seed, steps, batch, lr, eval, &model, &out)?;
        }
        Command::DemoGallery { out, n, seed } => {
            let files = write_demo_gallery(&out, n, seed)?;
            crate::outln!("wrote {} images to {}", files.len(), out.display())?;
        }
        Command::Keys { keymap } => {
            let path = keymap.or_else(crate::tui::keymap::user_keymap_path);
            crate::out!(
                "{}",
                crate::tui::keymap::Keymap::load(path.as_deref())?.describe()
            )?;
        }
        Command::RandomWeights { model, seed, out } => {
            let spec = crate::model::LoadedSpec::resolve(&model)?;
            let map = crate::model::weights::random_weights(&spec.spec, seed)?;
            crate::model::weights::write_safetensors(&map, &out)?;
            crate::outln!("wrote {} tensors to {}", map.len(), out.display())?;
        }
    }
    Ok(())
}

/// Seed of the demo gallery `treevis` opens on.
pub const DEMO_GALLERY_SEED: u64 = 2026;

/// The demo gallery in the cache folder, generated on first use.
pub fn demo_gallery() -> Result<Vec<PathBuf>> {
    let dir = crate::fetch::cache_dir().join("demo-gallery");
    let done = dir.join(".complete");
    if done.exists() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return Ok(files);
        }
    }
    let files = write_demo_gallery(
        &dir,
        2 * data::synth::CLASSES.len() as u64,
        DEMO_GALLERY_SEED,
    )?;
    std::fs::write(&done, b"").with_context(|| format!("cannot write {}", done.display()))?;
    Ok(files)
}

/// `treevis` with no arguments: the demo network on a demo image (headless until the
/// terminal UI lands): labels, the most active neurons, and a conv5 neuron's children.
fn run_default() -> Result<()> {
    let gallery = demo_gallery()?;
    let image = gallery
        .iter()
        .find(|p| p.to_string_lossy().ends_with("_star.png"))
        .unwrap_or(&gallery[0])
        .clone();
    let engine = EngineArgs {
        net: ModelArgs::demo(),
        device: "cpu".into(),
        method: Rule::Guided,
        mult: MultMode::Auto,
    };
    let input = InputArgs {
        image: Some(image.clone()),
        input_npy: None,
        dump_input: None,
    };
    let l = Loaded::new(&engine, &input)?;
    crate::outln!(
        "treevis {}: the demo network ({}) on {}",
        env!("CARGO_PKG_VERSION"),
        l.model.weights_origin,
        image.display()
    )?;
    crate::outln!("top labels:")?;
    for lab in recon::labels(&l.model, &l.state, 0, 5)? {
        crate::outln!("  {:6.2}%  {}", lab.prob * 100.0, lab.name)?;
    }
    let rows = recon::overview(&l.model, &l.state, 0, 3)?;
    crate::outln!("most active neurons:")?;
    for r in &rows {
        crate::outln!("  {:>6}  {}", r.blob, units_line(r, 2))?;
    }
    let conv5 = rows.iter().find(|r| r.blob == "conv5").unwrap_or(&rows[0]);
    let path = Path::root(&conv5.blob, conv5.units[0].channel);
    let out = crate::fetch::cache_dir().join("default");
    create_dir(&out)?;
    save_png(
        &display::render(
            &l.model,
            &recon::reconstruct(&l.model, &l.state, 0, &l.opts, std::slice::from_ref(&path))?[0]
                .grad,
            Display::Norm,
        )?,
        &out.join(format!("{}.png", path.file_stem())),
    )?;
    crate::outln!(
        "children of {path} (guided backprop), reconstructions in {}:",
        out.display()
    )?;
    for (c, r) in recon::expand(&l.model, &l.state, 0, &l.opts, &path, 5)? {
        save_png(
            &display::render(&l.model, &r.grad, Display::Norm)?,
            &out.join(format!("{}.png", c.path.file_stem())),
        )?;
        crate::outln!("  {:10.5}  {}", c.weight, c.path)?;
    }
    crate::outln!("\nThe gallery is in {}; try `treevis tree IMAGE --model demo --root {path} --out DIR`, or `treevis --help`.", gallery[0].parent().unwrap_or(&gallery[0]).display())?;
    Ok(())
}

/// Writes `n` demo images as `NNNN_class.png`; returns their paths.
pub fn write_demo_gallery(dir: &FsPath, n: u64, seed: u64) -> Result<Vec<PathBuf>> {
    create_dir(dir)?;
    (0..n)
        .map(|i| {
            let (img, class) = data::synth::generate(seed, i);
            let p = dir.join(format!("{i:04}_{}.png", data::synth::CLASSES[class]));
            save_png(&img, &p)?;
            Ok(p)
        })
        .collect()
}

fn train_demo(
    seed: u64,
    steps: usize,
    batch: usize,
    lr: f64,
    eval: u64,
    model: &str,
    out: &FsPath,
) -> Result<()> {
    use crate::train;
    let spec = crate::model::LoadedSpec::resolve(model)?.spec;
    let opts = train::TrainOptions {
        seed,
        steps,
        batch,
        lr,
        weight_decay: 5e-4,
    };
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

/// Image files under `paths` (folders recursively and sorted, LMDBs, list files).
pub fn collect_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    Ok(data::source::collect(paths)?)
}

fn run_tui(args: TuiArgs) -> Result<()> {
    let images = if args.paths.is_empty() {
        demo_gallery()?
    } else {
        collect_images(&args.paths)?
    };
    let device = parse_device(&args.engine.device)?;
    let model = args.engine.net.load(&device)?;
    let keymap_path = args
        .keymap
        .clone()
        .or_else(crate::tui::keymap::user_keymap_path);
    let keymap = crate::tui::keymap::Keymap::load(keymap_path.as_deref())?;
    let info = format!("{} | {}", model.spec().name, args.engine.device);
    crate::tui::run(
        model,
        crate::tui::TuiOptions {
            images,
            protocol: args.protocol,
            query_timeout: std::time::Duration::from_millis(args.query_timeout),
            keymap,
            info,
            session: args.session,
            feature_cache: args.cache,
        },
    )
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
