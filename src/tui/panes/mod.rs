//! The views of the TUI as components: each pane (gallery, overview, tree) and each overlay
//! (help, the feature grid, a tree node's parents, the rules compared, the sanity check) is
//! a [`View`] that says which engine jobs it wants, how it takes
//! an action and how it draws, with its own state and its own keymap [`Layer`]. The root
//! ([`App`](super::app::App)) keeps what they share and routes actions and engine messages.
//!
//! A view builds its job keys in one function that both `wants` and `draw` call, so that
//! what the screen asks the engine for and what it draws cannot drift apart.
//!
//! To add an overlay (or a sub-view of a pane): a type implementing [`View`] with a
//! [`Layer`] of its own (a table name in the keymap file), opened by a pane's `handle`
//! returning [`Effect::Open`]; it closes itself with [`Effect::Close`], and `modal` says
//! whether the pane's keys still reach the pane while it is open.

pub mod compare;
pub mod features;
pub mod gallery;
pub mod help;
pub mod overview;
pub mod parents;
pub mod sanity;
pub mod tree;

use crossterm::event::KeyCode;
use ratatui::layout::Rect;
use ratatui::Frame;

use super::app::Shared;
use super::keymap::{Action, Keymap, Layer};
use super::ui::Images;
use crate::engine::{Event, Export, JobKey};
use crate::recon::Path;

/// What a view reads of the rest of the app while it draws or says what it wants.
pub struct Ctx<'a> {
    pub shared: &'a Shared,
    pub keymap: &'a Keymap,
    /// The keymap layers in effect for this view, itself first.
    pub layers: &'a [Layer],
    /// The neuron under the pane's cursor (overlays follow it).
    pub neuron: Option<(String, usize)>,
}

impl Ctx<'_> {
    /// The key to name for `action` in a title or a hint (see [`Keymap::hint`]).
    pub fn hint(&self, action: Action) -> String {
        self.keymap.hint_in(self.layers, action)
    }
}

/// What a view answers to an action.
pub enum Effect {
    /// Not this view's: the layer below gets the action.
    Pass,
    /// Taken.
    Done,
    /// Taken, and this overlay closes.
    Close,
    /// This overlay closes and the layer below gets the action too.
    CloseAndPass,
    /// An overlay opens above the screen.
    Open(Box<dyn View>),
    /// The selected image's overview, its cursor at the top.
    OpenImage,
    /// A tree rooted at a neuron of the selected image.
    OpenTree(Path),
    /// An export for the engine (boxed: it carries the explored tree).
    Export(Box<Export>),
    /// The explored tree re-rooted at this parent of its selected node (a root path);
    /// the parents overlay closes.
    Reroot(Path),
}

/// A pane or an overlay.
pub trait View {
    /// Its table of the keymap.
    fn layer(&self) -> Layer;

    /// An overlay whose keys do not reach the views below it (only `global` ones still
    /// do); the feature grid and help are not: the pane's keys move its cursor beneath.
    fn modal(&self) -> bool {
        false
    }

    /// The jobs it needs now, most important first.
    fn wants(&self, ctx: &Ctx) -> Vec<JobKey>;

    /// Takes an action (or passes it on); `shared` is the app's common state.
    fn handle(&mut self, a: Action, shared: &mut Shared) -> Effect;

    /// Draws into `area` (the screen above the status bar).
    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images);

    /// A key taken as text before the keymap sees it (typing a filter).
    fn input(&mut self, _key: KeyCode, _shared: &mut Shared) -> bool {
        false
    }

    /// An engine message, before the app stores it.
    fn on_event(&mut self, _e: &Event, _shared: &Shared) {}

    /// The neuron under its cursor, if it has one.
    fn neuron(&self, _shared: &Shared) -> Option<(String, usize)> {
        None
    }
}
