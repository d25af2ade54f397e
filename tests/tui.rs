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
        Rig::with_model(w, h, "demo")
    }

    fn with_model(w: u16, h: u16, name: &str) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> =
            treevis::cli::write_demo_gallery(dir.path(), 22, treevis::cli::DEMO_GALLERY_SEED)
                .unwrap();
        let model = treevis::catalog::load(name, &WeightsSource::Default, &Device::Cpu).unwrap();
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

/// The star's overview, `downs` blobs down, a tree there, expanded.
fn star_tree(r: &mut Rig, downs: usize) {
    r.settle();
    for _ in 0..9 {
        r.press(Action::Right);
    }
    r.press(Action::Open);
    for _ in 0..downs {
        r.press(Action::Down);
    }
    r.press(Action::Open);
    assert_eq!(r.app.pane, Pane::Tree);
    r.press(Action::Expand);
}

fn node_names(r: &Rig) -> Vec<String> {
    let t = r.app.tree().unwrap();
    t.outline()
        .iter()
        .map(|(i, _)| t.nodes[*i].path.to_string())
        .collect()
}

#[test]
fn parents_list_and_re_rooting_keep_the_subtree() {
    let mut r = Rig::new(100, 32);
    star_tree(&mut r, 3);
    // into the first child (conv4), expand it: a subtree to keep
    r.press(Action::Expand);
    r.press(Action::Expand);
    let before = node_names(&r);
    assert_eq!(before.len(), 1 + 5 + 5);
    let sel_path = r.app.tree().unwrap().nodes[r.app.tree().unwrap().sel]
        .path
        .clone();
    assert_eq!(sel_path.len(), 2);
    r.press(Action::Parents);
    assert!(r.app.has_overlay(Layer::Parents));
    insta::assert_snapshot!("parents", r.screen());
    let screen = r.screen();
    assert!(
        screen.contains(&format!("parents of {}", sel_path.last().blob))
            && screen.contains("share")
            && screen.contains("> conv5:"),
        "{screen}"
    );
    // the second parent: the tree is rooted there, the conv4 node under it
    r.press(Action::Down);
    let parent = match r.app.shared.results.values().find_map(|o| match o {
        Output::Parents(p) => Some(p.clone()),
        _ => None,
    }) {
        Some(p) => p[1].path.clone(),
        None => panic!("no parents"),
    };
    r.press(Action::Open);
    assert!(!r.app.has_overlay(Layer::Parents));
    let t = r.app.tree().unwrap();
    t.validate().unwrap();
    assert_eq!(t.nodes[0].path, parent);
    let moved = format!(
        "{parent}/{}:{}",
        sel_path.last().blob,
        sel_path.last().channel
    );
    assert_eq!(t.nodes[t.sel].path.to_string(), moved);
    let names = node_names(&r);
    // the kept subtree, re-prefixed, and the new root's other children
    for (i, n) in before.iter().enumerate().skip(2).take(5) {
        let tail = n.rsplit('/').next().unwrap();
        assert!(names.contains(&format!("{moved}/{tail}")), "{i}: {names:?}");
    }
    assert!(!r.app.tree().unwrap().nodes[0].expanding);
    insta::assert_snapshot!("rerooted", r.screen());
}

#[test]
fn the_top_blob_has_no_parents_and_the_app_goes_on() {
    let mut r = Rig::new(100, 32);
    // fc8, the overview's first row
    star_tree(&mut r, 0);
    r.press(Action::Parents);
    let screen = r.screen();
    assert!(screen.contains("is the top of the tree"), "{screen}");
    // choosing nothing changes nothing; Esc closes, the tree is still there
    r.press(Action::Open);
    assert!(r.app.has_overlay(Layer::Parents));
    r.press(Action::Back);
    assert!(!r.app.has_overlay(Layer::Parents));
    assert_eq!(r.app.pane, Pane::Tree);
    r.press(Action::Down);
    assert_eq!(r.app.tree().unwrap().outline().len(), 6);
}

#[test]
fn signed_children_shares_and_ablation() {
    let mut r = Rig::new(100, 32);
    // the plain gradient: children both excite and inhibit
    r.press(Action::CycleMethod);
    r.press(Action::CycleMethod);
    assert_eq!(r.app.shared.opts.rule.name(), "gradient");
    star_tree(&mut r, 3);
    r.press(Action::CycleSign);
    let t = r.app.tree().unwrap();
    assert_eq!(t.sign, treevis::recon::Sign::Pos);
    assert!(!t.nodes[0].children.is_empty());
    for &c in &t.nodes[0].children {
        assert!(t.nodes[c].child.as_ref().unwrap().value > 0.0);
    }
    let screen = r.screen();
    assert!(
        screen.contains("s: excitatory children (pos)") && screen.contains('+'),
        "{screen}"
    );
    insta::assert_snapshot!("tree_pos", screen);
    r.press(Action::CycleSign);
    let t = r.app.tree().unwrap();
    assert!(!t.nodes[0].children.is_empty());
    for &c in &t.nodes[0].children {
        assert!(t.nodes[c].child.as_ref().unwrap().value < 0.0);
    }
    let screen = r.screen();
    assert!(
        screen.contains("inhibitory children (neg)") && screen.contains('−'),
        "{screen}"
    );
    insta::assert_snapshot!("tree_neg", screen);
    // the shares are coloured: green excites, red inhibits
    let buf = r.term.backend().buffer().clone();
    assert!(buf
        .content()
        .iter()
        .any(|c| c.symbol() == "−" && c.fg == ratatui::style::Color::Red));

    // back to the strongest, ablation on: drops beside the shares
    r.press(Action::CycleSign);
    r.press(Action::ToggleAblation);
    let t = r.app.tree().unwrap();
    assert!(t.ablate);
    for &c in &t.nodes[0].children {
        assert!(t.nodes[c].child.as_ref().unwrap().drop.is_some());
    }
    let screen = r.screen();
    assert!(
        screen.contains("ablation on") && screen.contains(" drop ") && screen.contains("ablation "),
        "{screen}"
    );
    insta::assert_snapshot!("tree_ablation", screen);
    // a child's detail: its signed weight and drop
    r.press(Action::Expand);
    assert!(r.screen().contains(" zeroed"), "{}", r.screen());
}

#[test]
fn residual_children_say_through_which_edge() {
    let mut r = Rig::with_model(110, 32, "demo-resnet");
    // layer3, the overview's second row; its first child, in layer2
    star_tree(&mut r, 1);
    r.press(Action::Expand);
    let t = r.app.tree().unwrap();
    let c = t.nodes[t.sel].child.as_ref().unwrap();
    assert_eq!(c.via.len(), 2, "{c:?}");
    let screen = r.screen();
    assert!(
        screen.contains("via layer3.") && screen.contains("layer3.downsample"),
        "{screen}"
    );
    insta::assert_snapshot!("tree_via", screen);
}

#[test]
fn compare_the_rules_on_a_node() {
    let mut r = Rig::new(100, 32);
    star_tree(&mut r, 3);
    r.press(Action::Compare);
    assert!(r.app.has_overlay(Layer::Compare));
    let screen = r.screen();
    for c in [
        "gradient auto",
        "gradient manual",
        "deconv auto",
        "deconv manual",
        "guided auto (now)",
        "guided manual",
        "guided-neg auto",
        "guided-neg manual",
    ] {
        assert!(screen.contains(c), "{c}: {screen}");
    }
    // the eight tiles (and the node's own, peeking out beside the overlay)
    assert!(screen.matches("[64x64]").count() >= 8, "{screen}");
    insta::assert_snapshot!("compare", screen);
    r.press(Action::Back);
    assert!(!r.app.has_overlay(Layer::Compare) && r.app.pane == Pane::Tree);
}

#[test]
fn sanity_check_progress_result_and_failure() {
    let mut r = Rig::new(100, 32);
    star_tree(&mut r, 3);
    r.app.apply(Action::Sanity);
    assert!(r.app.has_overlay(Layer::Sanity));
    let key = r.app.wants()[0].clone();
    assert!(matches!(key, treevis::engine::JobKey::Sanity { .. }));
    r.draw();
    assert!(r.screen().contains("starting the sanity check"));
    r.app.on_event(treevis::engine::Event::Progress {
        key: key.clone(),
        done: 3,
        total: 8,
    });
    r.draw();
    assert!(r.screen().contains("step 3/8"), "{}", r.screen());
    insta::assert_snapshot!("sanity_progress", r.screen());
    // the engine's own progress reports reach the overlay too
    r.sched.want(r.app.wants());
    let mut reports = Vec::new();
    let mut out = Vec::new();
    while r.sched.has_work() {
        out.extend(r.sched.step_with(&mut |k, d, t| {
            reports.push((k.clone(), d, t));
            true
        }));
    }
    assert!(reports.len() >= 2, "{reports:?}");
    for (k, d, t) in reports {
        r.app.on_event(treevis::engine::Event::Progress {
            key: k,
            done: d,
            total: t,
        });
    }
    for (key, output) in out {
        r.app.on_event(treevis::engine::Event::Done { key, output });
    }
    r.settle();
    let screen = r.screen();
    assert!(
        screen.contains("spearman") && screen.contains("randomized down to"),
        "{screen}"
    );
    assert!(
        screen.contains("similarity stays high") || screen.contains("the picture changes"),
        "{screen}"
    );
    insta::assert_snapshot!("sanity_done", screen);
    // closing it drops the job from what the screen wants
    r.press(Action::Back);
    assert!(!r.app.wants().contains(&key));

    // a sanity check that fails says why in place
    r.app.shared.opts.mult = treevis::recon::MultMode::Manual;
    r.app.apply(Action::Sanity);
    let key = r.app.wants()[0].clone();
    r.app.on_event(treevis::engine::Event::Done {
        key,
        output: Output::Failed(
            "no layer with weights up to `conv5`: there is nothing to randomize".into(),
        ),
    });
    r.draw();
    assert!(
        r.screen()
            .contains("the sanity check failed: no layer with weights"),
        "{}",
        r.screen()
    );
    r.press(Action::Back);
    assert_eq!(r.app.pane, Pane::Tree);
}

#[test]
fn the_tree_exports_with_its_html_page_and_a_bad_folder_is_a_message() {
    let mut r = Rig::new(100, 32);
    star_tree(&mut r, 3);
    r.press(Action::ExportTree);
    let mut e = r.app.export.take().expect("an export request");
    let tree = e.tree.as_ref().expect("the explored tree");
    assert_eq!(tree.children.len(), 5);
    assert!(tree.children.iter().all(|c| c.child.is_some()));
    let out = r._dir.path().join("export");
    e.dir = out.clone();
    let msg = r.sched.export(&e).unwrap();
    assert!(msg.contains("and index.html"), "{msg}");
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(page.contains("<details") && page.contains("data:image/png;base64,"));
    let shown = msg.replace(&out.display().to_string(), "DIR");
    r.app.on_event(treevis::engine::Event::Exported(Ok(shown)));
    r.draw();
    assert!(r.screen().contains("wrote 6 node(s) and index.html to DIR"));
    insta::assert_snapshot!("export_message", r.screen());

    // a folder that cannot be made: the message, and the app goes on
    let file = r._dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    e.dir = file.join("export");
    let err = r.sched.export(&e).unwrap_err();
    r.app.on_event(treevis::engine::Event::Exported(Err(format!(
        "export failed: {err:#}"
    ))));
    r.press(Action::Down);
    let screen = r.screen();
    assert!(screen.contains("export failed: cannot create"), "{screen}");
    assert_eq!(
        r.app.tree().unwrap().sel,
        r.app.tree().unwrap().nodes[0].children[0]
    );
}
