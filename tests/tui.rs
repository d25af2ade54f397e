//! The terminal app's panes on ratatui's `TestBackend` (text mode, so snapshots hold words
//! and numbers, not pixels), driven by the engine's scheduler on the demo network.

use std::path::PathBuf;

use candle_core::Device;
use ratatui::backend::TestBackend;
use ratatui::Terminal;
use treevis::engine::{Output, Scheduler};
use treevis::model::WeightsSource;
use treevis::tui::app::{App, Pane};
use treevis::tui::keymap::{Action, Keymap, Layer};
use treevis::tui::ui;

struct Rig {
    app: App,
    sched: Scheduler,
    term: Terminal<TestBackend>,
    images: ui::Images,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn new(w: u16, h: u16) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> =
            treevis::cli::write_demo_gallery(dir.path(), 22, treevis::cli::DEMO_GALLERY_SEED)
                .unwrap();
        let model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
        Rig {
            app: App::new(files, "demo | cpu | text".into()),
            sched: Scheduler::new(model, 64 << 20),
            term: Terminal::new(TestBackend::new(w, h)).unwrap(),
            images: ui::Images::new(None),
            _dir: dir,
        }
    }

    /// Draws, then answers everything the screen wants, until the screen is complete.
    fn settle(&mut self) {
        for _ in 0..20 {
            self.draw();
            let wants = self.app.wants();
            let mut out = self.sched.want(wants);
            while self.sched.has_work() {
                out.extend(self.sched.step());
            }
            if out.is_empty() {
                break;
            }
            for (key, output) in out {
                self.app
                    .on_event(treevis::engine::Event::Done { key, output });
            }
        }
        self.draw();
    }

    fn draw(&mut self) {
        let (app, images) = (&mut self.app, &mut self.images);
        self.term.draw(|f| ui::draw(f, app, images)).unwrap();
    }

    fn press(&mut self, a: Action) {
        self.app.apply(a);
        self.settle();
    }

    fn screen(&self) -> String {
        self.term.backend().to_string()
    }
}

#[test]
fn gallery_overview_and_tree_panes() {
    let mut r = Rig::new(100, 32);
    r.settle();
    insta::assert_snapshot!("gallery", r.screen());
    assert!(r.screen().contains("0000_stripes.png") && r.screen().contains("stripes 100%"));

    // to the star, open its overview
    for _ in 0..9 {
        r.press(Action::Right);
    }
    r.press(Action::Open);
    assert_eq!(r.app.pane, Pane::Overview);
    insta::assert_snapshot!("overview", r.screen());
    assert!(r.screen().contains("star"), "labels shown");

    // conv5's top neuron: a tree, then expand it
    for _ in 0..3 {
        r.press(Action::Down);
    }
    r.press(Action::Open);
    assert_eq!(r.app.pane, Pane::Tree);
    r.press(Action::Expand);
    let t = r.app.tree().unwrap();
    assert_eq!(t.nodes[0].children.len(), 5, "five children");
    insta::assert_snapshot!("tree", r.screen());

    // into the first child, expand it too, remove it, back up
    r.press(Action::Expand);
    r.press(Action::Expand);
    assert_eq!(r.app.tree().unwrap().outline().len(), 1 + 5 + 5);
    r.press(Action::Remove);
    assert_eq!(r.app.tree().unwrap().outline().len(), 1 + 4);
    r.press(Action::Help);
    assert!(r.screen().contains("expand: compute the node's children"));
    r.press(Action::Help);

    // export the explored tree: every node's PNG and raw gradient, and tree.json
    r.press(Action::ExportTree);
    let mut e = r.app.export.take().expect("an export request");
    assert_eq!(e.paths.len(), 5);
    assert!(e.dir.ends_with("treevis-export/0009_star"));
    let out = r._dir.path().join("export");
    e.dir = out.clone();
    let msg = r.sched.export(&e).unwrap();
    assert!(msg.contains("5 node(s)"), "{msg}");
    let tree: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tree.json")).unwrap()).unwrap();
    assert_eq!(tree["children"].as_array().unwrap().len(), 4);
    let first = tree["children"][0]["raw"].as_str().unwrap();
    assert_eq!(
        treevis::data::npy::read_f32(&out.join(first))
            .unwrap()
            .shape,
        vec![3, 64, 64]
    );
}

#[test]
fn a_small_terminal_says_what_it_needs_and_bad_images_show_errors() {
    let mut r = Rig::new(40, 10);
    r.settle();
    assert!(
        r.screen().contains("at least") && r.screen().contains("60x18 (this one is 40x10)"),
        "{}",
        r.screen()
    );

    let mut r = Rig::new(100, 32);
    let bad = r._dir.path().join("0005_broken.png");
    std::fs::write(&bad, b"not an image").unwrap();
    r.app.shared.images.insert(5, bad);
    r.settle();
    assert!(r
        .app
        .shared
        .results
        .values()
        .any(|o| matches!(o, Output::Failed(m) if m.contains("0005_broken.png"))));
    assert!(r.screen().contains("error"), "{}", r.screen());
    // the app goes on: the next image opens
    r.press(Action::Last);
    r.press(Action::Open);
    assert_eq!(r.app.pane, Pane::Overview);
}

#[test]
fn filtering_the_gallery_by_name() {
    let mut r = Rig::new(100, 32);
    r.settle();
    r.press(Action::Filter);
    for c in "star".chars() {
        r.app.input(crossterm::event::KeyCode::Char(c));
    }
    r.app.input(crossterm::event::KeyCode::Enter);
    r.settle();
    assert_eq!(r.app.shared.visible_images().len(), 2);
    assert!(
        r.screen().contains("/star")
            && r.screen().contains("0009_star.png")
            && !r.screen().contains("0000_stripes")
    );
}

#[test]
fn halfblocks_draw_the_thumbnails_in_colour() {
    let mut r = Rig::new(100, 32);
    r.images = ui::Images::new(Some(ratatui_image::picker::Picker::halfblocks()));
    r.settle();
    let buf = r.term.backend().buffer().clone();
    let coloured = buf
        .content()
        .iter()
        .filter(|c| {
            (c.symbol() == "▀" || c.symbol() == "▄")
                && matches!(c.fg, ratatui::style::Color::Rgb(..))
        })
        .count();
    // 10 thumbnails (5 columns, 2 rows) of 17x8 cells: most cells carry colour
    assert_eq!(
        (r.app.panes.gallery.cols, r.app.panes.gallery.visible.len()),
        (5, 10)
    );
    assert!(
        coloured > 10 * 60,
        "only {coloured} coloured half-block cells"
    );
}

#[test]
fn images_are_encoded_off_the_ui_thread_and_late_answers_are_dropped() {
    let mut r = Rig::new(100, 32);
    let (tx, rx) = std::sync::mpsc::channel();
    r.images = ui::Images::threaded(
        Some(ratatui_image::picker::Picker::halfblocks()),
        move |e| {
            let _ = tx.send((std::thread::current().id(), e));
        },
    );
    let coloured = |r: &Rig| {
        r.term
            .backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| matches!(c.fg, ratatui::style::Color::Rgb(..)))
            .count()
    };
    // results in, but no encoding has come back: tiles wait, the frame draws no image
    r.settle();
    assert_eq!(r.images.pending(), 10);
    assert_eq!(coloured(&r), 0);
    assert!(r.screen().contains('…'));
    for _ in 0..10 {
        let (thread, e) = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        assert_ne!(thread, std::thread::current().id());
        r.images.encoded(e);
    }
    assert_eq!(r.images.pending(), 0);
    r.draw();
    assert!(coloured(&r) > 10 * 60, "{}", coloured(&r));
    // a tile that leaves the screen while its encoding is in flight: the answer is dropped
    r.app.apply(Action::Open);
    r.settle();
    let keep = r.app.wants();
    r.images.retain(&keep);
    let in_flight = r.images.pending();
    assert!(in_flight > 0);
    r.images.retain(&[]);
    for _ in 0..in_flight {
        let (_, e) = rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
        r.images.encoded(e);
    }
    assert_eq!(r.images.pending(), 0);
}

#[test]
fn feature_cache_ranks_tiles_and_shows_a_neurons_patches() {
    let mut r = Rig::new(120, 36);
    // a cache over the gallery itself, for conv5 and conv4
    let cache = r._dir.path().join("featcache");
    let model = treevis::catalog::load("demo", &WeightsSource::Default, &Device::Cpu).unwrap();
    treevis::featcache::build(
        std::slice::from_ref(&model),
        &treevis::featcache::BuildOptions {
            images: r.app.shared.images.clone(),
            layers: vec!["conv5".into(), "conv4".into()],
            top_k: 4,
            opts: r.app.shared.opts,
            batch: 8,
            out: cache.clone(),
            shard: (0, 1),
            checkpoint: 64,
            quiet: true,
        },
    )
    .unwrap();
    r.sched = Scheduler::new(model, 64 << 20).with_feature_cache(cache);
    r.settle();
    r.press(Action::Open);
    // conv5's tiles carry their rank over the dataset; fc8 (not cached) does not
    let screen = r.screen();
    let conv5_line = screen.lines().find(|l| l.contains("conv5:")).unwrap();
    assert!(conv5_line.contains(" p"), "{screen}");
    let fc8_line = screen.lines().find(|l| l.contains("fc8:")).unwrap();
    assert!(!fc8_line.contains(" p"), "{screen}");
    // f on fc8 (not in the cache) says so in place; on conv5, the grid
    r.press(Action::Features);
    assert!(r.screen().contains("no blob `fc8`"), "{}", r.screen());
    r.press(Action::Back);
    assert!(!r.app.has_overlay(Layer::Features) && r.app.pane == Pane::Overview);
    for _ in 0..3 {
        r.press(Action::Down);
    }
    r.press(Action::Features);
    let (blob, ch) = r.app.selected_neuron().unwrap();
    assert_eq!(blob, "conv5");
    let screen = r.screen();
    assert!(
        screen.contains(&format!("conv5:{ch}: top dataset patches")),
        "{screen}"
    );
    // the grid itself: 4 entries are a 2x2 grid of 64 px cells, twice
    assert!(screen.contains("[272x130]"), "{screen}");
    // and it follows the selection into the tree
    r.press(Action::Features);
    r.press(Action::Open);
    r.press(Action::Features);
    assert!(r
        .screen()
        .contains(&format!("conv5:{ch}: top dataset patches")));
}

#[test]
fn titles_and_hints_follow_a_rebinding() {
    let mut r = Rig::new(100, 32);
    let file = r._dir.path().join("keymap.toml");
    std::fs::write(
        &file,
        r#"
[global]
keys = [{ on = ["H"], run = "help", desc = "help" }]
[overview]
keys = [
  { on = ["t"], run = "open", desc = "open a tree" },
  { on = ["]"], run = "more", desc = "more" },
]
[tree]
keys = [
  { on = ["Enter"], run = "toggle_input", desc = "input" },
  { on = ["d"], run = "remove", desc = "remove" },
]
"#,
    )
    .unwrap();
    r.app.keymap = Keymap::load(Some(&file)).unwrap();
    r.settle();
    assert!(r.screen().contains("| H help"), "{}", r.screen());
    r.press(Action::Open);
    assert!(
        r.screen()
            .contains(" overview: top 5 per blob (]/-), t opens a tree "),
        "{}",
        r.screen()
    );
    for _ in 0..3 {
        r.press(Action::Down);
    }
    // the key itself, through the keymap: `t` opens the tree
    let t = treevis::tui::keymap::Key::parse("t").unwrap();
    r.press(r.app.action(t).unwrap());
    assert_eq!(r.app.pane, Pane::Tree);
    // Enter no longer expands: the first key left of that binding is named
    assert!(
        r.screen().contains(" tree: l expands, h collapses, d rem"),
        "{}",
        r.screen()
    );
    let enter = treevis::tui::keymap::Key::parse("Enter").unwrap();
    assert_eq!(r.app.action(enter), Some(Action::ToggleInput));
    // the overlays' hints too: the feature grid's closing keys
    r.press(Action::Features);
    assert!(r.app.has_overlay(Layer::Features));
    assert!(r.screen().contains("(f or Esc closes)"), "{}", r.screen());
    r.press(Action::Back);
    assert!(!r.app.has_overlay(Layer::Features));
}
