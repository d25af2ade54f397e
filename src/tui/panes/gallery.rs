//! The gallery pane: the images as a grid of thumbnails with their top label, a name
//! filter, and the selection that the other panes show.

use std::ops::Range;

use crossterm::event::KeyCode;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::{Ctx, Effect, View};
use crate::engine::JobKey;
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images};

/// A grid cell's size in terminal cells.
const CELL: (u16, u16) = (18, 10);

pub struct Gallery {
    /// Typing a filter: keys are text until Enter or Esc.
    pub filtering: bool,
    /// Set by drawing: the grid's columns and the range of images on screen.
    pub cols: usize,
    pub visible: Range<usize>,
}

impl Default for Gallery {
    fn default() -> Gallery {
        Gallery {
            filtering: false,
            cols: 4,
            visible: 0..0,
        }
    }
}

/// An image's cell: its thumbnail and its labels.
fn cell_keys(image: &std::path::Path) -> (JobKey, JobKey) {
    let image = image.to_path_buf();
    (
        JobKey::Thumb {
            image: image.clone(),
        },
        JobKey::Labels { image },
    )
}

impl View for Gallery {
    fn layer(&self) -> Layer {
        Layer::Gallery
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        let imgs = ctx.shared.visible_images();
        let vis = self.visible.start.min(imgs.len())..self.visible.end.min(imgs.len());
        // every thumbnail first, then the labels under them
        let (thumbs, labels): (Vec<JobKey>, Vec<JobKey>) =
            imgs[vis].iter().map(|p| cell_keys(p)).unzip();
        thumbs.into_iter().chain(labels).collect()
    }

    fn input(&mut self, key: KeyCode, s: &mut Shared) -> bool {
        if !self.filtering {
            return false;
        }
        match key {
            KeyCode::Enter => self.filtering = false,
            KeyCode::Esc => {
                self.filtering = false;
                s.filter.clear();
            }
            KeyCode::Backspace => {
                s.filter.pop();
            }
            KeyCode::Char(c) => s.filter.push(c),
            _ => {}
        }
        s.sel = 0;
        true
    }

    fn handle(&mut self, a: Action, s: &mut Shared) -> Effect {
        let moves = matches!(
            a,
            Action::Left
                | Action::Right
                | Action::Up
                | Action::Down
                | Action::PageUp
                | Action::PageDown
                | Action::First
                | Action::Last
        );
        if !moves && !matches!(a, Action::Filter | Action::Open) {
            return Effect::Pass;
        }
        let n = s.visible_images().len();
        if a == Action::Filter {
            self.filtering = true;
        }
        if n == 0 {
            return Effect::Done;
        }
        let cols = self.cols.max(1);
        let page = self.visible.len().max(cols);
        let at = s.sel as isize;
        let target = match a {
            Action::Left => at - 1,
            Action::Right => at + 1,
            Action::Up => at - cols as isize,
            Action::Down => at + cols as isize,
            Action::PageUp => at - page as isize,
            Action::PageDown => at + page as isize,
            Action::First => 0,
            Action::Last => n as isize - 1,
            _ => at,
        };
        s.sel = target.clamp(0, n as isize - 1) as usize;
        if a == Action::Open {
            Effect::OpenImage
        } else {
            Effect::Done
        }
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let s = ctx.shared;
        let title = if self.filtering || !s.filter.is_empty() {
            format!(
                " gallery: /{}{} ",
                s.filter,
                if self.filtering { "_" } else { "" }
            )
        } else {
            format!(" gallery: {} images ", s.images.len())
        };
        let block = Block::default().borders(Borders::ALL).title(title);
        let inner = block.inner(area);
        f.render_widget(block, area);
        let (cw, ch) = CELL;
        let cols = (inner.width / cw).max(1) as usize;
        let rows = (inner.height / ch).max(1) as usize;
        let imgs = s.visible_images();
        if imgs.is_empty() {
            f.render_widget(Paragraph::new("no images match"), inner);
            self.visible = 0..0;
            return;
        }
        let sel_row = s.sel / cols;
        let first_row = sel_row.saturating_sub(rows - 1);
        let start = first_row * cols;
        let end = (start + rows * cols).min(imgs.len());
        self.cols = cols;
        self.visible = start..end;
        for (i, p) in imgs[start..end].iter().enumerate() {
            let (r, c) = (i / cols, i % cols);
            let cell = Rect::new(inner.x + c as u16 * cw, inner.y + r as u16 * ch, cw, ch);
            let selected = start + i == s.sel;
            let [img_area, name_area, label_area] = Layout::vertical([
                Constraint::Min(1),
                Constraint::Length(1),
                Constraint::Length(1),
            ])
            .areas(cell);
            let (thumb, labels) = cell_keys(p);
            ui::tile(
                f,
                images,
                s,
                Rect {
                    width: img_area.width.saturating_sub(1),
                    ..img_area
                },
                &thumb,
            );
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let marker = if selected { ">" } else { " " };
            f.render_widget(
                Paragraph::new(format!("{marker}{name}")).style(ui::selected_style(selected)),
                name_area,
            );
            f.render_widget(
                Paragraph::new(format!(" {}", ui::top_label(s, &labels)))
                    .style(Style::default().fg(Color::Cyan)),
                label_area,
            );
        }
    }
}
