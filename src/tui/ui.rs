//! Drawing: the frame (the views, see [`panes`](super::panes), and the status bar), the
//! pieces the views draw with (a job's tile, labels, popups), and terminal images
//! ([`Images`]: one encoded protocol per result).

use std::collections::HashMap;
use std::sync::Arc;

use image::RgbImage;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{Resize, ResizeEncodeRender, StatefulImage};

use super::app::{App, Shared};
use super::keymap::Action;
use crate::engine::{JobKey, Output};

/// Smallest terminal treevis draws in.
pub const MIN_SIZE: (u16, u16) = (60, 18);

pub const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// How tiles are resized: the whole image, scaled to fit its cells.
const RESIZE: Resize = Resize::Scale(Some(image::imageops::FilterType::Nearest));

/// A resize + encode for the image worker: the protocol travels to the worker and back.
pub struct EncodeJob {
    key: JobKey,
    generation: u64,
    proto: StatefulProtocol,
    size: ratatui::layout::Size,
}

/// The worker's answer to an [`EncodeJob`]; give it to [`Images::encoded`].
pub struct Encoded {
    key: JobKey,
    generation: u64,
    proto: StatefulProtocol,
}

struct Entry {
    /// Which result this protocol shows (the address of its image).
    id: usize,
    /// Bumped whenever the entry is replaced, so late answers are dropped.
    generation: u64,
    /// `None` while the worker has it.
    proto: Option<StatefulProtocol>,
}

/// Terminal images: one protocol per result, resized and encoded once per area (on the
/// image worker thread when there is one, so a large sixel never stalls a frame); an
/// unchanged image is never sent again. `None` picker: text only.
pub struct Images {
    pub picker: Option<Picker>,
    entries: HashMap<JobKey, Entry>,
    worker: Option<std::sync::mpsc::Sender<EncodeJob>>,
    generation: u64,
}

impl Images {
    /// Images encoded on the UI thread (deterministic; for tests).
    pub fn new(picker: Option<Picker>) -> Images {
        Images {
            picker,
            entries: HashMap::new(),
            worker: None,
            generation: 0,
        }
    }

    /// Images encoded on a worker thread; `done` receives each finished encoding (and
    /// should wake the event loop, which hands it to [`Images::encoded`]).
    pub fn threaded(picker: Option<Picker>, done: impl Fn(Encoded) + Send + 'static) -> Images {
        let (tx, rx) = std::sync::mpsc::channel::<EncodeJob>();
        let started = std::thread::Builder::new()
            .name("treevis-images".into())
            .spawn(move || {
                for mut job in rx {
                    job.proto.resize_encode(&RESIZE, job.size);
                    done(Encoded {
                        key: job.key,
                        generation: job.generation,
                        proto: job.proto,
                    });
                }
            });
        if let Err(e) = started {
            // encoded on the UI thread then, slower but the same pictures
            tracing::error!("cannot start the image thread: {e}");
            return Images::new(picker);
        }
        Images {
            worker: Some(tx),
            ..Images::new(picker)
        }
    }

    /// Takes back a protocol from the worker (dropped when the entry moved on meanwhile).
    pub fn encoded(&mut self, e: Encoded) {
        if let Some(entry) = self.entries.get_mut(&e.key) {
            if entry.generation == e.generation {
                entry.proto = Some(e.proto);
            }
        }
    }

    /// Encodings in flight on the worker.
    pub fn pending(&self) -> usize {
        self.entries.values().filter(|e| e.proto.is_none()).count()
    }

    /// Forgets images that are no longer drawn (so terminals drop them too).
    pub fn retain(&mut self, keep: &[JobKey]) {
        self.entries.retain(|k, _| keep.contains(k));
    }

    pub fn draw(&mut self, f: &mut Frame, area: Rect, key: &JobKey, img: &Arc<RgbImage>) {
        if area.width == 0 || area.height == 0 {
            return;
        }
        let Some(picker) = &self.picker else {
            let (w, h) = img.dimensions();
            f.render_widget(
                Paragraph::new(format!("[{w}x{h}]")).style(Style::default().fg(Color::DarkGray)),
                area,
            );
            return;
        };
        // one protocol per result, made again only when the result itself changed
        let id = Arc::as_ptr(img) as usize;
        if self.entries.get(key).is_none_or(|e| e.id != id) {
            self.generation += 1;
            let proto = picker.new_resize_protocol(image::DynamicImage::ImageRgb8((**img).clone()));
            self.entries.insert(
                key.clone(),
                Entry {
                    id,
                    generation: self.generation,
                    proto: Some(proto),
                },
            );
        }
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let needs = entry
            .proto
            .as_ref()
            .and_then(|p| p.needs_resize(&RESIZE, area.into()));
        if let Some(size) = needs {
            // where each image goes, for tests that look at a real terminal's pixels
            tracing::debug!(
                tile = %key.describe(),
                x = area.x,
                y = area.y,
                cols = size.width,
                rows = size.height,
                "image placed"
            );
        }
        if let (Some(worker), Some(size)) = (&self.worker, needs) {
            if let Some(proto) = entry.proto.take() {
                let job = EncodeJob {
                    key: key.clone(),
                    generation: entry.generation,
                    proto,
                    size,
                };
                if let Err(back) = worker.send(job) {
                    entry.proto = Some(back.0.proto);
                }
            }
        }
        match &mut entry.proto {
            Some(proto) => {
                f.render_stateful_widget(StatefulImage::default().resize(RESIZE), area, proto);
                if picker.tmux_detected() && picker.protocol_type() == ProtocolType::Sixel {
                    if let Some(cell) = f.buffer_mut().cell_mut((area.x, area.y)) {
                        if let Some(fixed) = tmux_sixel_terminated(cell.symbol()) {
                            cell.set_symbol(&fixed);
                        }
                    }
                }
            }
            None => f.render_widget(
                Paragraph::new("…").style(Style::default().fg(Color::DarkGray)),
                area,
            ),
        }
    }
}

/// ratatui-image 11.1 wraps a sixel for tmux's passthrough (`ESC P tmux; … ESC \`, every
/// inner ESC doubled) but leaves the sixel's own terminator `ESC \` single, so tmux ends
/// the passthrough there and the terminal never gets a complete image (ratatui-image issue
/// #192): inside tmux, no sixel showed at all. This doubles that ESC; `None` when `data` is
/// not such a sequence or is already right.
pub fn tmux_sixel_terminated(data: &str) -> Option<String> {
    const TAIL: &str = "\x1b\\\x1b\\";
    if !data.starts_with("\x1bPtmux;")
        || !data.ends_with(TAIL)
        || data.ends_with("\x1b\x1b\\\x1b\\")
    {
        return None;
    }
    let cut = data.len() - TAIL.len();
    Some(format!("{}\x1b{}", &data[..cut], &data[cut..]))
}

/// Draws a job's image, its error, or a spinner while it computes.
pub fn tile(f: &mut Frame, images: &mut Images, s: &Shared, area: Rect, key: &JobKey) {
    match s.results.get(key) {
        Some(Output::Image(img)) => images.draw(f, area, key, img),
        Some(Output::Failed(msg)) => f.render_widget(
            Paragraph::new(msg.as_str())
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: true }),
            area,
        ),
        _ => f.render_widget(
            Paragraph::new(format!("{} computing", SPINNER[s.tick % 4]))
                .style(Style::default().fg(Color::DarkGray)),
            area,
        ),
    }
}

pub fn draw(f: &mut Frame, app: &mut App, images: &mut Images) {
    let area = f.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "treevis needs a terminal of at least {}x{} (this one is {}x{})",
            MIN_SIZE.0, MIN_SIZE.1, area.width, area.height
        );
        f.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [main, bar] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(area);
    app.draw(f, main, images);
    status_bar(f, app, bar);
}

/// A `w`x`h` box (at most `area`) in the middle of `area`, for a popup.
/// A large overlay (nine tenths of `area`) drawn over what is below: cleared, framed,
/// titled; returns the inside of its frame.
pub fn overlay(f: &mut Frame, area: Rect, title: String) -> Rect {
    let r = centered(
        area,
        (area.width * 9 / 10).max(40),
        (area.height * 9 / 10).max(10),
    );
    f.render_widget(ratatui::widgets::Clear, r);
    let block = ratatui::widgets::Block::default()
        .borders(ratatui::widgets::Borders::ALL)
        .title(title);
    let inner = block.inner(r);
    f.render_widget(block, r);
    inner
}

pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

fn status_bar(f: &mut Frame, app: &App, area: Rect) {
    let sh = &app.shared;
    let s = &sh.status;
    let text = format!(
        " {} | {} | {} {} {} | jobs {} running, {} waiting | last {:.0} ms | {} help",
        app.pane.name(),
        sh.info,
        sh.opts.rule.name(),
        sh.opts.mult.name(),
        sh.display.name(),
        s.running,
        s.pending,
        s.last_ms,
        app.keymap.hint_in(&app.layers(), Action::Help),
    );
    // the message first: a narrow terminal cuts the line's end
    let text = match &sh.message {
        Some(m) => format!(" {m} |{text}"),
        None => text,
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().bg(Color::Blue).fg(Color::White)),
        area,
    );
}

pub fn selected_style(selected: bool) -> Style {
    if selected {
        Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    }
}

/// An image's top label (`star 100%`) from its labels' job.
pub fn top_label(s: &Shared, labels: &JobKey) -> String {
    match s.results.get(labels) {
        Some(Output::Labels(l)) => l
            .first()
            .map(|l| format!("{} {:.0}%", l.name, l.prob * 100.0))
            .unwrap_or_default(),
        Some(Output::Failed(_)) => "error".into(),
        _ => format!("{}", SPINNER[s.tick % 4]),
    }
}

/// An image's labels, one a line, from their job.
pub fn labels_lines(s: &Shared, labels: &JobKey) -> Vec<Line<'static>> {
    match s.results.get(labels) {
        Some(Output::Labels(l)) => l
            .iter()
            .map(|l| Line::from(format!("{:5.1}% {}", l.prob * 100.0, l.name)))
            .collect(),
        Some(Output::Failed(m)) => vec![Line::from(Span::styled(
            m.clone(),
            Style::default().fg(Color::Red),
        ))],
        _ => vec![Line::from(format!("{} labels", SPINNER[s.tick % 4]))],
    }
}
