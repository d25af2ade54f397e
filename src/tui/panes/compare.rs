//! The compare overlay: the selected tree node's reconstruction under every rule and both
//! multiplier modes side by side (8 tiles, captioned `guided auto`, ...); the engine
//! batches the jobs of one options set.

use std::path::PathBuf;

use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::JobKey;
use crate::recon::{Options, Path};
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images};

pub struct Compare {
    image: PathBuf,
    path: Path,
}

impl Compare {
    pub fn new(image: PathBuf, path: Path) -> Compare {
        Compare { image, path }
    }

    /// Every options set with its reconstruction's job, rule by rule.
    fn keys(&self, s: &Shared) -> Vec<(Options, JobKey)> {
        crate::recon::all_options()
            .into_iter()
            .map(|opts| {
                (
                    opts,
                    JobKey::Recon {
                        image: self.image.clone(),
                        path: self.path.clone(),
                        opts,
                        display: s.display,
                    },
                )
            })
            .collect()
    }
}

impl View for Compare {
    fn layer(&self) -> Layer {
        Layer::Compare
    }

    fn modal(&self) -> bool {
        true
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        // the options in use first: that tile is likely cached already
        let mut keys = self.keys(ctx.shared);
        keys.sort_by_key(|(o, _)| *o != ctx.shared.opts);
        keys.into_iter().map(|(_, k)| k).collect()
    }

    fn handle(&mut self, a: Action, _s: &mut Shared) -> Effect {
        match a {
            Action::Back | Action::Compare => Effect::Close,
            _ => Effect::Pass,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let s = ctx.shared;
        let inner = ui::overlay(
            f,
            area,
            format!(
                " {}: every rule and multiplier mode ({} closes) ",
                self.path,
                ctx.hint(Action::Back),
            ),
        );
        let keys = self.keys(s);
        // rules across, the two modes down
        let cols = (keys.len() as u16).div_ceil(2).max(1);
        let (w, h) = (inner.width / cols, inner.height / 2);
        if w < 4 || h < 3 {
            return;
        }
        for (i, (opts, key)) in keys.iter().enumerate() {
            let (c, row) = (i as u16 / 2, i as u16 % 2);
            let (x, y) = (inner.x + c * w, inner.y + row * h);
            let now = *opts == s.opts;
            let text = if now {
                format!("{} (now)", opts.caption())
            } else {
                opts.caption()
            };
            f.render_widget(
                Paragraph::new(text).style(ui::selected_style(now).add_modifier(if now {
                    Modifier::BOLD
                } else {
                    Modifier::empty()
                })),
                Rect::new(x, y + h - 1, w.saturating_sub(1), 1),
            );
            ui::tile(f, images, s, Rect::new(x, y, w - 1, h - 1), key);
        }
    }
}
