//! The TUI's root: the state every pane shares ([`Shared`]: images, selection, options,
//! the engine's results), the panes themselves ([`panes`](super::panes)) and the overlays
//! above them, and the routing between them. No terminal I/O here: `apply` takes actions,
//! `on_event` takes engine messages, `wants` says which jobs the screen needs, `draw` puts
//! the views on a frame.

use std::collections::HashMap;
use std::path::PathBuf;

use ratatui::layout::Rect;
use ratatui::Frame;

use crate::engine::{Event, Export, JobKey, Output, Status};
use crate::recon::display::Display;
use crate::recon::{MultMode, Options, Path, Rule};

use super::keymap::{Action, Key, Keymap, Layer};
use super::panes::features::Features;
use super::panes::gallery::Gallery;
use super::panes::help::Help;
use super::panes::overview::Overview;
use super::panes::tree::{Tree, TreePane};
use super::panes::{Ctx, Effect, View};
use super::ui::Images;

/// The panes, one on screen at a time (the session file names them in lowercase).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pane {
    Gallery,
    Overview,
    Tree,
}

impl Pane {
    /// The pane's keymap table.
    pub fn layer(self) -> Layer {
        match self {
            Pane::Gallery => Layer::Gallery,
            Pane::Overview => Layer::Overview,
            Pane::Tree => Layer::Tree,
        }
    }

    pub fn name(self) -> &'static str {
        self.layer().name()
    }
}

/// What every view reads (and a pane's `handle` may change): the images, the selected one,
/// the options, and the results the engine sent.
pub struct Shared {
    pub images: Vec<PathBuf>,
    /// The gallery's name filter (the selection is an index into the images it keeps).
    pub filter: String,
    /// Index into `visible_images()`.
    pub sel: usize,
    pub opts: Options,
    pub display: Display,
    pub results: HashMap<JobKey, Output>,
    pub status: Status,
    /// Spinner phase, advanced on every tick.
    pub tick: usize,
    pub info: String,
    /// The last message for the user (an export's result).
    pub message: Option<String>,
}

impl Shared {
    pub fn visible_images(&self) -> Vec<&PathBuf> {
        let f = self.filter.to_lowercase();
        self.images
            .iter()
            .filter(|p| {
                f.is_empty()
                    || p.file_name()
                        .is_some_and(|n| n.to_string_lossy().to_lowercase().contains(&f))
            })
            .collect()
    }

    pub fn current_image(&self) -> Option<PathBuf> {
        self.visible_images().get(self.sel).map(|p| (*p).clone())
    }

    /// The reconstruction of `path` on `image` with the current options.
    pub fn recon_key(&self, image: &std::path::Path, path: &Path) -> JobKey {
        JobKey::Recon {
            image: image.to_path_buf(),
            path: path.clone(),
            opts: self.opts,
            display: self.display,
        }
    }

    /// Keeps an engine result; past a size, other images' results are dropped so that the
    /// UI-side copy stays bounded.
    fn store(&mut self, key: JobKey, output: Output) {
        self.results.insert(key, output);
        if self.results.len() > 2000 {
            let keep = self.current_image();
            self.results.retain(|k, _| {
                k.image().is_none_or(|i| Some(i) == keep.as_ref())
                    || matches!(k, JobKey::Thumb { .. } | JobKey::Labels { .. })
            });
        }
    }
}

/// The three panes, each owning its own state (the tree pane its explored tree).
pub struct Panes {
    pub gallery: Gallery,
    pub overview: Overview,
    pub tree: TreePane,
}

impl Panes {
    pub fn get(&self, p: Pane) -> &dyn View {
        match p {
            Pane::Gallery => &self.gallery,
            Pane::Overview => &self.overview,
            Pane::Tree => &self.tree,
        }
    }

    pub fn get_mut(&mut self, p: Pane) -> &mut dyn View {
        match p {
            Pane::Gallery => &mut self.gallery,
            Pane::Overview => &mut self.overview,
            Pane::Tree => &mut self.tree,
        }
    }

    fn all_mut(&mut self) -> [&mut dyn View; 3] {
        [&mut self.gallery, &mut self.overview, &mut self.tree]
    }
}

/// The root: the shared state, the keymap, the panes and the overlays open above the pane.
pub struct App {
    pub shared: Shared,
    pub keymap: Keymap,
    pub panes: Panes,
    /// The pane on screen.
    pub pane: Pane,
    /// Views drawn above the pane, bottom first; each has a keymap layer of its own.
    overlays: Vec<Box<dyn View>>,
    pub quit: bool,
    /// An export asked for by a key, taken by the event loop.
    pub export: Option<Export>,
}

impl App {
    /// An app in the gallery with the built-in keymap.
    pub fn new(images: Vec<PathBuf>, info: String) -> App {
        App {
            shared: Shared {
                images,
                filter: String::new(),
                sel: 0,
                opts: Options::default(),
                display: Display::Norm,
                results: HashMap::new(),
                status: Status::default(),
                tick: 0,
                info,
                message: None,
            },
            keymap: Keymap::default_map(),
            panes: Panes {
                gallery: Gallery::default(),
                overview: Overview::default(),
                tree: TreePane::default(),
            },
            pane: Pane::Gallery,
            overlays: Vec::new(),
            quit: false,
            export: None,
        }
    }

    /// The explored tree, once the overview opened one.
    pub fn tree(&self) -> Option<&Tree> {
        self.panes.tree.tree.as_ref()
    }

    /// Whether an overlay of `layer` is open.
    pub fn has_overlay(&self, layer: Layer) -> bool {
        self.overlays.iter().any(|o| o.layer() == layer)
    }

    /// The keymap layers in effect, top first: the overlays down to the first modal one,
    /// else down to the pane.
    pub fn layers(&self) -> Vec<Layer> {
        let mut out = Vec::new();
        for o in self.overlays.iter().rev() {
            out.push(o.layer());
            if o.modal() {
                return out;
            }
        }
        out.push(self.pane.layer());
        out
    }

    /// The action of a key on this screen.
    pub fn action(&self, key: Key) -> Option<Action> {
        self.keymap.action_in(&self.layers(), key)
    }

    /// A key a view takes as text before the keymap sees it (the gallery's filter).
    pub fn input(&mut self, key: crossterm::event::KeyCode) -> bool {
        let shared = &mut self.shared;
        for o in self.overlays.iter_mut().rev() {
            if o.input(key, shared) {
                return true;
            }
            if o.modal() {
                return false;
            }
        }
        self.panes.get_mut(self.pane).input(key, shared)
    }

    /// An action goes to the overlays (top first), then to the pane, then to what every
    /// screen does; the first that takes it ends its way.
    pub fn apply(&mut self, a: Action) {
        if a == Action::Quit {
            self.quit = true;
            return;
        }
        let mut i = self.overlays.len();
        while i > 0 {
            i -= 1;
            match self.overlays[i].handle(a, &mut self.shared) {
                Effect::Pass if self.overlays[i].modal() => return self.global(a),
                Effect::Pass => {}
                Effect::Close => {
                    self.overlays.remove(i);
                    return;
                }
                Effect::CloseAndPass => {
                    self.overlays.remove(i);
                }
                e => return self.effect(e),
            }
        }
        match self.panes.get_mut(self.pane).handle(a, &mut self.shared) {
            Effect::Pass => self.global(a),
            e => self.effect(e),
        }
    }

    /// What a view asked for.
    fn effect(&mut self, e: Effect) {
        match e {
            Effect::Pass | Effect::Done | Effect::Close | Effect::CloseAndPass => {}
            Effect::Open(view) => self.overlays.push(view),
            Effect::OpenImage => {
                self.panes.overview.reset_cursor();
                self.pane = Pane::Overview;
            }
            Effect::OpenTree(root) => {
                // a new tree keeps the children ranking the last one had
                let mut t = Tree::new(root);
                if let Some(old) = &self.panes.tree.tree {
                    (t.sign, t.ablate) = (old.sign, old.ablate);
                }
                self.panes.tree.tree = Some(t);
                self.pane = Pane::Tree;
            }
            Effect::Export(e) => self.export = Some(*e),
            Effect::Reroot(parent) => {
                self.overlays.retain(|o| o.layer() != Layer::Parents);
                if let Some(t) = &mut self.panes.tree.tree {
                    *t = t.rerooted(&parent);
                }
            }
        }
    }

    /// The actions no view took: help, back, the method and display modes.
    fn global(&mut self, a: Action) {
        match a {
            Action::Quit => self.quit = true,
            Action::Help => self.overlays.push(Box::new(Help)),
            // a pane may not know the action (a user can bind it anywhere)
            Action::Features => self.overlays.push(Box::new(Features)),
            Action::Back => {
                self.pane = match self.pane {
                    Pane::Tree => Pane::Overview,
                    _ => Pane::Gallery,
                }
            }
            Action::CycleMethod => {
                let s = &mut self.shared;
                let i = Rule::ALL
                    .iter()
                    .position(|r| *r == s.opts.rule)
                    .unwrap_or(0);
                s.opts.rule = Rule::ALL[(i + 1) % Rule::ALL.len()];
                self.panes.tree.reset_expansions();
            }
            Action::CycleMult => {
                let s = &mut self.shared;
                s.opts.mult = match s.opts.mult {
                    MultMode::Auto => MultMode::Manual,
                    MultMode::Manual => MultMode::Auto,
                };
                self.panes.tree.reset_expansions();
            }
            Action::CycleDisplay => {
                let s = &mut self.shared;
                s.display = match s.display {
                    Display::Norm => Display::Mean,
                    Display::Mean => Display::Norm,
                }
            }
            _ => {}
        }
    }

    /// Stores an engine message; the views see it first (children of an expanding node
    /// become nodes).
    pub fn on_event(&mut self, e: Event) {
        for v in self.panes.all_mut() {
            v.on_event(&e, &self.shared);
        }
        for o in &mut self.overlays {
            o.on_event(&e, &self.shared);
        }
        match e {
            Event::Status(s) => self.shared.status = s,
            Event::Exported(r) => self.shared.message = Some(r.unwrap_or_else(|e| e)),
            Event::Progress { .. } => {}
            Event::Done { key, output } => self.shared.store(key, output),
        }
    }

    /// The neuron under the cursor: the selected overview tile, or the selected tree node's
    /// last neuron.
    pub fn selected_neuron(&self) -> Option<(String, usize)> {
        self.panes.get(self.pane).neuron(&self.shared)
    }

    /// The jobs the screen needs now, most important first: the overlays' (top first),
    /// then the pane's.
    pub fn wants(&self) -> Vec<JobKey> {
        let layers = self.layers();
        let ctx = Ctx {
            shared: &self.shared,
            keymap: &self.keymap,
            layers: &layers,
            neuron: self.selected_neuron(),
        };
        let mut w: Vec<JobKey> = self
            .overlays
            .iter()
            .rev()
            .flat_map(|o| o.wants(&ctx))
            .collect();
        w.extend(self.panes.get(self.pane).wants(&ctx));
        w
    }

    /// Draws the pane into `area`, then the overlays above it.
    pub fn draw(&mut self, f: &mut Frame, area: Rect, images: &mut Images) {
        let neuron = self.selected_neuron();
        // bottom first: each view resolves its hints through the layers from itself down
        let mut layers = vec![self.pane.layer()];
        let pane = self.panes.get_mut(self.pane);
        pane.draw(
            f,
            area,
            &Ctx {
                shared: &self.shared,
                keymap: &self.keymap,
                layers: &layers,
                neuron: neuron.clone(),
            },
            images,
        );
        for o in &mut self.overlays {
            if o.modal() {
                layers.clear();
            }
            layers.insert(0, o.layer());
            o.draw(
                f,
                area,
                &Ctx {
                    shared: &self.shared,
                    keymap: &self.keymap,
                    layers: &layers,
                    neuron: neuron.clone(),
                },
                images,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::panes::tree::TreeNode;

    fn app_in_tree() -> App {
        let mut app = App::new(vec![PathBuf::from("a.png")], String::new());
        let node = |parent, children| TreeNode {
            path: "conv5:1".parse().unwrap(),
            weight: None,
            child: None,
            parent,
            children,
            expanding: false,
            removed: false,
        };
        app.panes.tree.tree = Some(Tree {
            nodes: vec![node(None, vec![1]), node(Some(0), vec![])],
            sel: 0,
            show_input: false,
            sign: Default::default(),
            ablate: false,
        });
        app.pane = Pane::Tree;
        app
    }

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn overlays_take_their_keys_first_and_pass_the_rest() {
        let mut app = app_in_tree();
        // the feature grid follows the cursor: the pane's keys go through it
        app.apply(Action::Features);
        assert!(app.has_overlay(Layer::Features));
        assert_eq!(app.layers(), [Layer::Features, Layer::Tree]);
        assert_eq!(app.action(key("j")), Some(Action::Down));
        app.apply(Action::Down);
        assert_eq!(app.tree().unwrap().sel, 1);
        // back closes the grid only
        app.apply(Action::Back);
        assert!(!app.has_overlay(Layer::Features));
        assert_eq!(app.pane, Pane::Tree);
        // help: `?` closes it; back closes it and goes back a pane, as before
        app.apply(Action::Help);
        app.apply(Action::Help);
        assert!(!app.has_overlay(Layer::Help));
        app.apply(Action::Help);
        app.apply(Action::Back);
        assert!(!app.has_overlay(Layer::Help));
        assert_eq!(app.pane, Pane::Overview);
    }

    /// An overlay that keeps the pane's keys from the pane.
    struct Modal;

    impl View for Modal {
        fn layer(&self) -> Layer {
            Layer::Help
        }
        fn modal(&self) -> bool {
            true
        }
        fn wants(&self, _ctx: &Ctx) -> Vec<JobKey> {
            vec![]
        }
        fn handle(&mut self, a: Action, _shared: &mut Shared) -> Effect {
            match a {
                Action::Back => Effect::Close,
                _ => Effect::Pass,
            }
        }
        fn draw(&mut self, _f: &mut Frame, _area: Rect, _ctx: &Ctx, _images: &mut Images) {}
    }

    #[test]
    fn a_modal_overlay_keeps_the_panes_keys_from_the_pane() {
        let mut app = app_in_tree();
        app.effect(Effect::Open(Box::new(Modal)));
        assert_eq!(app.layers(), [Layer::Help]);
        assert_eq!(
            app.action(key("j")),
            None,
            "the tree's keys are not in effect"
        );
        assert_eq!(
            app.action(key("m")),
            Some(Action::CycleMethod),
            "global ones are"
        );
        app.apply(Action::Down);
        assert_eq!(app.tree().unwrap().sel, 0);
        app.apply(Action::CycleMethod);
        assert_ne!(app.shared.opts, Options::default());
        app.apply(Action::Back);
        assert_eq!((app.layers(), app.pane), (vec![Layer::Tree], Pane::Tree));
    }

    #[test]
    fn the_parents_list_is_modal_and_choosing_one_re_roots_the_tree() {
        let mut app = app_in_tree();
        app.apply(Action::Down);
        app.apply(Action::Parents);
        assert_eq!(app.layers(), [Layer::Parents]);
        assert_eq!(
            app.action(key("x")),
            None,
            "the tree's keys are not in effect"
        );
        assert_eq!(app.action(key("Enter")), Some(Action::Open));
        // nothing loaded: Enter does nothing; the effect itself re-roots and closes it
        app.apply(Action::Open);
        assert!(app.has_overlay(Layer::Parents));
        app.effect(Effect::Reroot("conv6:4".parse().unwrap()));
        assert!(!app.has_overlay(Layer::Parents));
        let t = app.tree().unwrap();
        assert_eq!(t.nodes[0].path.to_string(), "conv6:4");
        assert_eq!(t.nodes[t.sel].path.to_string(), "conv6:4/conv5:1");
        // the compare and sanity overlays: modal, Esc closes them
        for (a, l) in [
            (Action::Compare, Layer::Compare),
            (Action::Sanity, Layer::Sanity),
        ] {
            app.apply(a);
            assert_eq!(app.layers(), [l]);
            assert!(!app.wants().is_empty());
            app.apply(Action::Back);
            assert_eq!((app.layers(), app.pane), (vec![Layer::Tree], Pane::Tree));
        }
    }
}
