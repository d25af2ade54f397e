//! The overview pane: the selected image with its labels, and per blob a row of its most
//! active neurons' reconstructions; a neuron opens a tree.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::features::Features;
use super::{Ctx, Effect, View};
use crate::engine::{JobKey, Output};
use crate::recon::{BlobUnits, Path};
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images};

/// The most neurons a row shows.
const MAX_TOP: usize = 12;
/// A row's height: the tiles and their captions.
const ROW_H: u16 = 7;

pub struct Overview {
    /// Neurons per blob.
    pub top: usize,
    /// The cursor: a blob's row and a neuron in it.
    pub row: usize,
    pub col: usize,
}

impl Default for Overview {
    fn default() -> Overview {
        Overview {
            top: 5,
            row: 0,
            col: 0,
        }
    }
}

/// The jobs of the overview of one image.
struct Keys<'a> {
    input: JobKey,
    labels: JobKey,
    overview: JobKey,
    /// Once the overview is in: its rows, and per row its neurons' reconstructions.
    rows: Option<(&'a [BlobUnits], Vec<Vec<JobKey>>)>,
}

impl Overview {
    /// A fresh image: the cursor on the first neuron of the first row.
    pub fn reset_cursor(&mut self) {
        self.row = 0;
        self.col = 0;
    }

    fn overview<'a>(&self, s: &'a Shared) -> Option<&'a [BlobUnits]> {
        let image = s.current_image()?;
        match s.results.get(&JobKey::Overview {
            image,
            top: self.top,
        }) {
            Some(Output::Overview(o)) => Some(o),
            _ => None,
        }
    }

    fn keys<'a>(&self, s: &'a Shared) -> Option<Keys<'a>> {
        let image = s.current_image()?;
        let rows = self.overview(s).map(|o| {
            let keys = o
                .iter()
                .map(|r| {
                    r.units
                        .iter()
                        .map(|u| s.recon_key(&image, &Path::root(&r.blob, u.channel)))
                        .collect()
                })
                .collect();
            (o, keys)
        });
        Some(Keys {
            input: JobKey::Input {
                image: image.clone(),
            },
            labels: JobKey::Labels {
                image: image.clone(),
            },
            overview: JobKey::Overview {
                image,
                top: self.top,
            },
            rows,
        })
    }
}

impl View for Overview {
    fn layer(&self) -> Layer {
        Layer::Overview
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        let Some(k) = self.keys(ctx.shared) else {
            return vec![];
        };
        let mut w = vec![k.input, k.labels, k.overview];
        if let Some((_, rows)) = k.rows {
            // the selected row first, then the others
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.sort_by_key(|&r| (r as isize - self.row as isize).abs());
            for r in order {
                w.extend(rows[r].iter().cloned());
            }
        }
        w
    }

    fn handle(&mut self, a: Action, s: &mut Shared) -> Effect {
        let rows = self.overview(s).map(|o| o.len()).unwrap_or(0);
        match a {
            Action::Left => self.col = self.col.saturating_sub(1),
            Action::Right => self.col = (self.col + 1).min(self.top.saturating_sub(1)),
            Action::Up => self.row = self.row.saturating_sub(1),
            Action::Down => self.row = (self.row + 1).min(rows.saturating_sub(1)),
            Action::More => self.top = (self.top + 1).min(MAX_TOP),
            Action::Fewer => {
                self.top = self.top.saturating_sub(1).max(1);
                self.col = self.col.min(self.top - 1);
            }
            Action::Open => {
                return self.neuron(s).map_or(Effect::Done, |(blob, ch)| {
                    Effect::OpenTree(Path::root(&blob, ch))
                })
            }
            Action::Features => return Effect::Open(Box::new(Features)),
            _ => return Effect::Pass,
        }
        Effect::Done
    }

    fn neuron(&self, s: &Shared) -> Option<(String, usize)> {
        let row = self.overview(s)?.get(self.row)?;
        let u = row.units.get(self.col)?;
        Some((row.blob.clone(), u.channel))
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let s = ctx.shared;
        let (Some(image), Some(keys)) = (s.current_image(), self.keys(s)) else {
            return;
        };
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let [left, right] =
            Layout::horizontal([Constraint::Length(24), Constraint::Min(10)]).areas(area);
        let lb = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {name} "));
        let linner = lb.inner(left);
        f.render_widget(lb, left);
        let [img_area, lab_area] =
            Layout::vertical([Constraint::Length(11), Constraint::Min(1)]).areas(linner);
        ui::tile(f, images, s, img_area, &keys.input);
        f.render_widget(Paragraph::new(ui::labels_lines(s, &keys.labels)), lab_area);

        let rb = Block::default().borders(Borders::ALL).title(format!(
            " overview: top {} per blob ({}/{}), {} opens a tree ",
            self.top,
            ctx.hint(Action::More),
            ctx.hint(Action::Fewer),
            ctx.hint(Action::Open),
        ));
        let rinner = rb.inner(right);
        f.render_widget(rb, right);
        let Some((rows, tiles)) = keys.rows else {
            ui::tile(f, images, s, rinner, &keys.overview);
            return;
        };
        let visible = (rinner.height / ROW_H).max(1) as usize;
        let first = self.row.saturating_sub(visible - 1);
        // the blob names' column: as wide as the longest (`layer4.2`, `features.17`), capped
        let label_w = rows
            .iter()
            .map(|r| r.blob.chars().count())
            .max()
            .unwrap_or(7)
            .clamp(7, 20) as u16;
        let tile_w = ((rinner.width.saturating_sub(label_w + 1)) / self.top as u16).clamp(6, 16);
        for (ri, (row, keys)) in rows
            .iter()
            .zip(&tiles)
            .enumerate()
            .skip(first)
            .take(visible)
        {
            let y = rinner.y + (ri - first) as u16 * ROW_H;
            let sel_row = ri == self.row;
            f.render_widget(
                Paragraph::new(row.blob.clone()).style(if sel_row {
                    Style::default().fg(Color::Yellow)
                } else {
                    Style::default()
                }),
                Rect::new(rinner.x, y, label_w, 1),
            );
            for (ci, (u, key)) in row.units.iter().zip(keys).enumerate() {
                let x = rinner.x + label_w + 1 + ci as u16 * tile_w;
                if x + tile_w > rinner.x + rinner.width {
                    break;
                }
                let selected = sel_row && ci == self.col;
                // with a feature cache: the percentile of this activation over the dataset
                let rank = u.percentile_label();
                let cap = format!(
                    "{}{}:{} {:.2}{rank}",
                    if selected { ">" } else { "" },
                    row.blob,
                    u.channel,
                    u.activation
                );
                f.render_widget(
                    Paragraph::new(cap).style(ui::selected_style(selected)),
                    Rect::new(x, y + ROW_H - 1, tile_w, 1),
                );
                ui::tile(f, images, s, Rect::new(x, y, tile_w - 1, ROW_H - 1), key);
            }
        }
    }
}
