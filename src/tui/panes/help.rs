//! The help overlay: the keys in effect below it, generated from the keymap.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::JobKey;
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images};

pub struct Help;

impl View for Help {
    fn layer(&self) -> Layer {
        Layer::Help
    }

    fn wants(&self, _ctx: &Ctx) -> Vec<JobKey> {
        vec![]
    }

    fn handle(&mut self, a: Action, _shared: &mut Shared) -> Effect {
        match a {
            Action::Help => Effect::Close,
            // back closes the help and goes back a pane too, as it always did
            Action::Back => Effect::CloseAndPass,
            _ => Effect::Pass,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, _images: &mut Images) {
        let lines: Vec<Line> = ctx
            .keymap
            .help_in(ctx.layers)
            .into_iter()
            .map(|(k, d)| Line::from(format!("{k:<22} {d}")))
            .collect();
        // named after the pane below, the bottom of the layers
        let pane = ctx.layers.last().copied().unwrap_or(Layer::Global);
        let r = ui::centered(area, 72, lines.len() as u16 + 2);
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines).block(
                Block::default()
                    .borders(Borders::ALL)
                    .title(format!(" keys: {pane} ")),
            ),
            r,
        );
    }
}
