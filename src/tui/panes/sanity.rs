//! The sanity-check overlay: the selected tree node's reconstruction as the network's
//! weights are randomized layer by layer from the top, computed in the background (its
//! progress from the engine's `Event::Progress`), then the captioned strip, a table of the
//! similarities to the trained reconstruction (Spearman rank correlation, SSIM) and a
//! one-line reading. Closing the overlay drops the job from the wants, which cancels it.

use std::path::PathBuf;
use std::sync::Arc;

use image::RgbImage;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::{Event, JobKey, Output};
use crate::recon::sanity::Sanity;
use crate::recon::Path;
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images, SPINNER};

pub struct SanityView {
    image: PathBuf,
    path: Path,
    /// The last progress report of its job: `(key, done, total)`.
    progress: Option<(JobKey, usize, usize)>,
    /// The strip of the result on screen, kept so that the terminal image is made once.
    strip: Option<(JobKey, Arc<RgbImage>)>,
}

/// What the numbers say: whether the last steps (all or nearly all weights random) still
/// look like the trained reconstruction (a step without a correlation, a zero picture,
/// does not).
pub fn reading(s: &Sanity) -> Option<&'static str> {
    let n = s.steps.len();
    if n == 0 {
        return None;
    }
    let tail = &s.steps[n.saturating_sub(2)..];
    Some(if tail.iter().all(|st| st.spearman > 0.5) {
        "similarity stays high: this picture shows the image more than the network"
    } else {
        "the picture changes when the weights are randomized: it depends on what the network learned"
    })
}

impl SanityView {
    pub fn new(image: PathBuf, path: Path) -> SanityView {
        SanityView {
            image,
            path,
            progress: None,
            strip: None,
        }
    }

    fn key(&self, s: &Shared) -> JobKey {
        JobKey::Sanity {
            image: self.image.clone(),
            path: self.path.clone(),
            opts: s.opts,
            display: s.display,
            seed: 0,
        }
    }
}

impl View for SanityView {
    fn layer(&self) -> Layer {
        Layer::Sanity
    }

    fn modal(&self) -> bool {
        true
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        vec![self.key(ctx.shared)]
    }

    fn handle(&mut self, a: Action, _s: &mut Shared) -> Effect {
        match a {
            Action::Back | Action::Sanity => Effect::Close,
            _ => Effect::Pass,
        }
    }

    fn on_event(&mut self, e: &Event, s: &Shared) {
        if let Event::Progress { key, done, total } = e {
            if *key == self.key(s) {
                self.progress = Some((key.clone(), *done, *total));
            }
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let s = ctx.shared;
        let key = self.key(s);
        let inner = ui::overlay(
            f,
            area,
            format!(
                " sanity check of {}: weights randomized from the top ({} closes and stops it) ",
                self.path,
                ctx.hint(Action::Back),
            ),
        );
        let result = match s.results.get(&key) {
            Some(Output::Sanity(res)) => res.clone(),
            Some(Output::Failed(m)) => {
                f.render_widget(
                    Paragraph::new(format!("the sanity check failed: {m}"))
                        .style(Style::default().fg(Color::Red))
                        .wrap(Wrap { trim: true }),
                    inner,
                );
                return;
            }
            _ => {
                let text = match &self.progress {
                    Some((k, done, total)) if *k == key => format!(
                        "{} step {done}/{total}: randomizing the weights, layer by layer",
                        SPINNER[s.tick % 4]
                    ),
                    _ => format!("{} starting the sanity check", SPINNER[s.tick % 4]),
                };
                f.render_widget(Paragraph::new(text), inner);
                return;
            }
        };
        let (sanity, strip) = (&result.0, &result.1);
        let mut lines = vec![Line::from(format!(
            "{:<22} {:>6} {:>9} {:>6}",
            "randomized down to", "layers", "spearman", "ssim"
        ))];
        // the engine's notes (a zero reconstruction, say) below the table, each once
        let mut notes: Vec<&str> = Vec::new();
        for st in &sanity.steps {
            let num = |v: f32| {
                if v.is_nan() {
                    "n/a".to_string()
                } else {
                    format!("{v:.3}")
                }
            };
            let mut row = format!(
                "{:<22} {:>6} {:>9} {:>6}",
                st.down_to,
                st.layers,
                num(st.spearman),
                num(st.ssim)
            );
            if let Some(n) = &st.note {
                let i = notes
                    .iter()
                    .position(|x| *x == n.as_str())
                    .unwrap_or_else(|| {
                        notes.push(n);
                        notes.len() - 1
                    });
                row.push_str(&format!("  ({})", i + 1));
            }
            lines.push(Line::from(row));
        }
        if let Some(text) = reading(sanity) {
            lines.push(Line::from(Span::styled(
                text,
                Style::default().fg(Color::Yellow),
            )));
        }
        for (i, n) in notes.iter().enumerate() {
            lines.push(Line::from(Span::styled(
                format!("({}) {n}", i + 1),
                Style::default().fg(Color::DarkGray),
            )));
        }
        // (a line more for each line that may wrap: the reading, the notes)
        let [img, table] = Layout::vertical([
            Constraint::Min(3),
            Constraint::Length((lines.len() + 1 + notes.len()) as u16),
        ])
        .areas(inner);
        f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), table);
        if self.strip.as_ref().is_none_or(|(k, _)| *k != key) {
            self.strip = Some((key.clone(), Arc::new(strip.clone())));
        }
        if let Some((k, img_arc)) = &self.strip {
            images.draw(f, img, k, img_arc);
        }
    }
}
