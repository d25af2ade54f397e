//! The parents overlay: the units of the blob above whose reconstructions reach the
//! selected tree node's neuron most (blob:channel, weight, share), for drilling up.
//! Choosing one re-roots the explored tree there ([`Effect::Reroot`]); the top blob has no
//! parents, and the engine's message says so in place.

use std::path::PathBuf;

use ratatui::layout::Rect;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::{JobKey, Output};
use crate::recon::Path;
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images, SPINNER};

/// Parents listed.
pub const PARENTS: usize = 8;

pub struct Parents {
    image: PathBuf,
    /// The node whose parents these are.
    path: Path,
    /// The highlighted parent.
    pub sel: usize,
}

impl Parents {
    pub fn new(image: PathBuf, path: Path) -> Parents {
        Parents {
            image,
            path,
            sel: 0,
        }
    }

    fn key(&self, s: &Shared) -> JobKey {
        JobKey::Parents {
            image: self.image.clone(),
            path: self.path.clone(),
            opts: s.opts,
            k: PARENTS,
        }
    }

    fn len(&self, s: &Shared) -> usize {
        match s.results.get(&self.key(s)) {
            Some(Output::Parents(p)) => p.len(),
            _ => 0,
        }
    }
}

impl View for Parents {
    fn layer(&self) -> Layer {
        Layer::Parents
    }

    fn modal(&self) -> bool {
        true
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        vec![self.key(ctx.shared)]
    }

    fn handle(&mut self, a: Action, s: &mut Shared) -> Effect {
        match a {
            Action::Back | Action::Parents => Effect::Close,
            Action::Up => {
                self.sel = self.sel.saturating_sub(1);
                Effect::Done
            }
            Action::Down => {
                self.sel = (self.sel + 1).min(self.len(s).saturating_sub(1));
                Effect::Done
            }
            Action::Open | Action::Expand => match s.results.get(&self.key(s)) {
                Some(Output::Parents(p)) => match p.get(self.sel) {
                    Some(p) => Effect::Reroot(p.path.clone()),
                    None => Effect::Done,
                },
                _ => Effect::Done,
            },
            _ => Effect::Pass,
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, _images: &mut Images) {
        let s = ctx.shared;
        let last = self.path.last();
        let lines: Vec<Line> = match s.results.get(&self.key(s)) {
            Some(Output::Parents(ps)) if ps.is_empty() => {
                vec![Line::from("no unit above reaches this neuron")]
            }
            Some(Output::Parents(ps)) => ps
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let text = format!(
                        "{} {:<16} weight {:>8}  share {:5.1}%",
                        if i == self.sel { '>' } else { ' ' },
                        format!("{}:{}", p.blob, p.channel),
                        super::tree::num(p.weight),
                        p.share * 100.0
                    );
                    Line::from(Span::styled(text, ui::selected_style(i == self.sel)))
                })
                .collect(),
            Some(Output::Failed(m)) => vec![Line::from(Span::styled(
                m.clone(),
                Style::default().fg(Color::Red),
            ))],
            _ => vec![Line::from(format!(
                "{} computing the parents",
                SPINNER[s.tick % 4]
            ))],
        };
        let r = ui::centered(area, 66, (lines.len() as u16 + 2).max(5));
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(lines).wrap(Wrap { trim: false }).block(
                Block::default().borders(Borders::ALL).title(format!(
                    " parents of {}:{}: {} re-roots the tree there, {} closes ",
                    last.blob,
                    last.channel,
                    ctx.hint(Action::Open),
                    ctx.hint(Action::Back),
                )),
            ),
            r,
        );
    }
}
