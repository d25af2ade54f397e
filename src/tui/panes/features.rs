//! The feature-grid overlay: the top dataset patches of the neuron under the pane's cursor
//! and their reconstructions, from the feature cache (`--cache`). It follows the cursor:
//! the pane's keys still move it beneath.

use ratatui::layout::Rect;
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::JobKey;
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images};

pub struct Features;

impl Features {
    /// The grid's job: the selected neuron's, while there is one.
    fn key(ctx: &Ctx) -> Option<JobKey> {
        let (blob, channel) = ctx.neuron.clone()?;
        Some(JobKey::Features { blob, channel })
    }
}

impl View for Features {
    fn layer(&self) -> Layer {
        Layer::Features
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        Features::key(ctx).into_iter().collect()
    }

    fn handle(&mut self, a: Action, _shared: &mut Shared) -> Effect {
        match a {
            Action::Features | Action::Back => Effect::Close,
            _ => Effect::Pass,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let Some(key) = Features::key(ctx) else {
            return;
        };
        let JobKey::Features { blob, channel } = &key else {
            return;
        };
        let inner = ui::overlay(
            f,
            area,
            format!(
                " {blob}:{channel}: top dataset patches | their reconstructions ({} or {} closes) ",
                ctx.hint(Action::Features),
                ctx.hint(Action::Back),
            ),
        );
        ui::tile(f, images, ctx.shared, inner, &key);
    }
}
