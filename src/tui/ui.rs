//! Drawing the panes: gallery grid, overview rows, tree outline with the selected node's
//! reconstruction and its children, the status bar and the help overlay.

use std::collections::HashMap;
use std::sync::Arc;

use image::RgbImage;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::StatefulProtocol;
use ratatui_image::{Resize, ResizeEncodeRender, StatefulImage};

use super::app::{App, Pane};
use super::keymap::Keymap;
use crate::engine::{JobKey, Output};

/// Smallest terminal treevis draws in.
pub const MIN_SIZE: (u16, u16) = (60, 18);

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

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
fn tile(f: &mut Frame, images: &mut Images, app: &App, area: Rect, key: &JobKey) {
    match app.results.get(key) {
        Some(Output::Image(img)) => images.draw(f, area, key, img),
        Some(Output::Failed(msg)) => f.render_widget(
            Paragraph::new(msg.as_str())
                .style(Style::default().fg(Color::Red))
                .wrap(Wrap { trim: true }),
            area,
        ),
        _ => f.render_widget(
            Paragraph::new(format!("{} computing", SPINNER[app.tick % 4]))
                .style(Style::default().fg(Color::DarkGray)),
            area,
        ),
    }
}

pub fn draw(f: &mut Frame, app: &mut App, images: &mut Images, keymap: &Keymap) {
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
    match app.pane {
        Pane::Gallery => gallery(f, app, images, main),
        Pane::Overview => overview(f, app, images, main),
        Pane::Tree => tree(f, app, images, main),
    }
    status_bar(f, app, bar);
    if let Some(key) = app.features_key() {
        features(f, app, images, main, &key);
    }
    if app.help {
        help(f, app, keymap, main);
    }
}

/// A `w`x`h` box (at most `area`) in the middle of `area`, for a popup.
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

/// The selected neuron's top dataset patches (left) and their reconstructions (right).
fn features(f: &mut Frame, app: &App, images: &mut Images, area: Rect, key: &JobKey) {
    let JobKey::Features { blob, channel, .. } = key else {
        return;
    };
    let r = centered(
        area,
        (area.width * 9 / 10).max(40),
        (area.height * 9 / 10).max(10),
    );
    f.render_widget(Clear, r);
    let block = Block::default().borders(Borders::ALL).title(format!(
        " {blob}:{channel}: top dataset patches | their reconstructions (f or Esc closes) "
    ));
    let inner = block.inner(r);
    f.render_widget(block, r);
    tile(f, images, app, inner, key);
}

fn status_bar(f: &mut Frame, app: &App, area: Rect) {
    let s = &app.status;
    let text = format!(
        " {} | {} | {} {} {} | jobs {} running, {} waiting | last {:.0} ms | ? help",
        app.pane.name(),
        app.info,
        app.opts.rule.name(),
        match app.opts.mult {
            crate::recon::MultMode::Auto => "auto",
            crate::recon::MultMode::Manual => "manual",
        },
        match app.display {
            crate::recon::display::Display::Norm => "norm",
            crate::recon::display::Display::Mean => "mean",
        },
        s.running,
        s.pending,
        s.last_ms
    );
    // the message first: a narrow terminal cuts the line's end
    let text = match &app.message {
        Some(m) => format!(" {m} |{text}"),
        None => text,
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().bg(Color::Blue).fg(Color::White)),
        area,
    );
}

fn selected_style(selected: bool) -> Style {
    if selected {
        Style::default()
            .fg(Color::Yellow)
            .add_modifier(Modifier::BOLD)
    } else {
        Style::default()
    }
}

fn top_label(app: &App, image: &std::path::Path) -> String {
    match app.results.get(&JobKey::Labels {
        image: image.to_path_buf(),
    }) {
        Some(Output::Labels(l)) => l
            .first()
            .map(|l| format!("{} {:.0}%", l.name, l.prob * 100.0))
            .unwrap_or_default(),
        Some(Output::Failed(_)) => "error".into(),
        _ => format!("{}", SPINNER[app.tick % 4]),
    }
}

fn gallery(f: &mut Frame, app: &mut App, images: &mut Images, area: Rect) {
    let title = if app.filtering || !app.filter.is_empty() {
        format!(
            " gallery: /{}{} ",
            app.filter,
            if app.filtering { "_" } else { "" }
        )
    } else {
        format!(" gallery: {} images ", app.images.len())
    };
    let block = Block::default().borders(Borders::ALL).title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let (cw, ch) = (18u16, 10u16);
    let cols = (inner.width / cw).max(1) as usize;
    let rows = (inner.height / ch).max(1) as usize;
    let imgs: Vec<std::path::PathBuf> = app.visible_images().into_iter().cloned().collect();
    if imgs.is_empty() {
        f.render_widget(Paragraph::new("no images match"), inner);
        app.gallery_visible = 0..0;
        return;
    }
    let sel_row = app.sel / cols;
    let first_row = sel_row.saturating_sub(rows - 1);
    let start = first_row * cols;
    let end = (start + rows * cols).min(imgs.len());
    app.gallery_cols = cols;
    app.gallery_visible = start..end;
    for (i, p) in imgs[start..end].iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let cell = Rect::new(inner.x + c as u16 * cw, inner.y + r as u16 * ch, cw, ch);
        let selected = start + i == app.sel;
        let style = selected_style(selected);
        let [img_area, name_area, label_area] = Layout::vertical([
            Constraint::Min(1),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .areas(cell);
        tile(
            f,
            images,
            app,
            Rect {
                width: img_area.width.saturating_sub(1),
                ..img_area
            },
            &JobKey::Thumb { image: p.clone() },
        );
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let marker = if selected { ">" } else { " " };
        f.render_widget(
            Paragraph::new(format!("{marker}{name}")).style(style),
            name_area,
        );
        f.render_widget(
            Paragraph::new(format!(" {}", top_label(app, p)))
                .style(Style::default().fg(Color::Cyan)),
            label_area,
        );
    }
}

fn labels_lines(app: &App, image: &std::path::Path) -> Vec<Line<'static>> {
    match app.results.get(&JobKey::Labels {
        image: image.to_path_buf(),
    }) {
        Some(Output::Labels(l)) => l
            .iter()
            .map(|l| Line::from(format!("{:5.1}% {}", l.prob * 100.0, l.name)))
            .collect(),
        Some(Output::Failed(m)) => vec![Line::from(Span::styled(
            m.clone(),
            Style::default().fg(Color::Red),
        ))],
        _ => vec![Line::from(format!("{} labels", SPINNER[app.tick % 4]))],
    }
}

fn overview(f: &mut Frame, app: &mut App, images: &mut Images, area: Rect) {
    let Some(image) = app.current_image() else {
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
    tile(
        f,
        images,
        app,
        img_area,
        &JobKey::Input {
            image: image.clone(),
        },
    );
    f.render_widget(Paragraph::new(labels_lines(app, &image)), lab_area);

    let rb = Block::default().borders(Borders::ALL).title(format!(
        " overview: top {} per blob (+/-), Enter opens a tree ",
        app.ov_top
    ));
    let rinner = rb.inner(right);
    f.render_widget(rb, right);
    let Some(rows) = app.overview().cloned() else {
        tile(
            f,
            images,
            app,
            rinner,
            &JobKey::Overview {
                image: image.clone(),
                top: app.ov_top,
            },
        );
        return;
    };
    let row_h = 7u16;
    let visible = (rinner.height / row_h).max(1) as usize;
    let first = app.ov_row.saturating_sub(visible - 1);
    // the blob names' column: as wide as the longest (`layer4.2`, `features.17`), capped
    let label_w = rows
        .iter()
        .map(|r| r.blob.chars().count())
        .max()
        .unwrap_or(7)
        .clamp(7, 20) as u16;
    let tile_w = ((rinner.width.saturating_sub(label_w + 1)) / app.ov_top as u16).clamp(6, 16);
    for (ri, row) in rows.iter().enumerate().skip(first).take(visible) {
        let y = rinner.y + (ri - first) as u16 * row_h;
        let sel_row = ri == app.ov_row;
        f.render_widget(
            Paragraph::new(row.blob.clone()).style(if sel_row {
                Style::default().fg(Color::Yellow)
            } else {
                Style::default()
            }),
            Rect::new(rinner.x, y, label_w, 1),
        );
        for (ci, u) in row.units.iter().enumerate() {
            let x = rinner.x + label_w + 1 + ci as u16 * tile_w;
            if x + tile_w > rinner.x + rinner.width {
                break;
            }
            let selected = sel_row && ci == app.ov_col;
            // with a feature cache: the percentile of this activation over the dataset
            let rank = u.percentile_label();
            let cap = format!(
                "{}{}:{} {:.2}{rank}",
                if selected { ">" } else { "" },
                row.blob,
                u.channel,
                u.activation
            );
            let style = selected_style(selected);
            f.render_widget(
                Paragraph::new(cap).style(style),
                Rect::new(x, y + row_h - 1, tile_w, 1),
            );
            let key = app.recon_key(&image, &crate::recon::Path::root(&row.blob, u.channel));
            tile(f, images, app, Rect::new(x, y, tile_w - 1, row_h - 1), &key);
        }
    }
}

fn tree(f: &mut Frame, app: &mut App, images: &mut Images, area: Rect) {
    let (Some(image), Some(t)) = (app.current_image(), app.tree.clone()) else {
        return;
    };
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(area);
    let lb = Block::default()
        .borders(Borders::ALL)
        .title(" tree: Enter expands, h collapses, x removes ");
    let linner = lb.inner(left);
    f.render_widget(lb, left);
    let outline = t.outline();
    let lines: Vec<Line> = outline
        .iter()
        .map(|&(i, depth)| {
            let n = &t.nodes[i];
            let last = n.path.last();
            let w = n.weight.map(|w| format!(" {w:.3}")).unwrap_or_default();
            let spin = if n.expanding {
                format!(" {}", SPINNER[app.tick % 4])
            } else {
                String::new()
            };
            let mark = if n.children.is_empty() { "·" } else { "▾" };
            let text = format!(
                "{}{} {}:{}{}{}",
                "  ".repeat(depth),
                mark,
                last.blob,
                last.channel,
                w,
                spin
            );
            let style = if i == t.sel {
                Style::default().fg(Color::Black).bg(Color::Yellow)
            } else {
                Style::default()
            };
            Line::from(Span::styled(text, style))
        })
        .collect();
    let pos = outline.iter().position(|(i, _)| *i == t.sel).unwrap_or(0);
    let scroll = pos.saturating_sub(linner.height.saturating_sub(1) as usize) as u16;
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), linner);

    let sel = &t.nodes[t.sel];
    let rb = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", sel.path));
    let rinner = rb.inner(right);
    f.render_widget(rb, right);
    let strip_h = if sel.children.is_empty() { 0 } else { 8 };
    let [big, strip] =
        Layout::vertical([Constraint::Min(4), Constraint::Length(strip_h)]).areas(rinner);
    if t.show_input {
        let [a, b] =
            Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(big);
        let [img, labs] = Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).areas(a);
        tile(
            f,
            images,
            app,
            img,
            &JobKey::Input {
                image: image.clone(),
            },
        );
        f.render_widget(Paragraph::new(labels_lines(app, &image)), labs);
        tile(f, images, app, b, &app.recon_key(&image, &sel.path));
    } else {
        tile(f, images, app, big, &app.recon_key(&image, &sel.path));
    }
    if !sel.children.is_empty() {
        let n = sel.children.len() as u16;
        let w = (strip.width / n).max(4);
        for (k, &c) in sel.children.iter().enumerate() {
            let x = strip.x + k as u16 * w;
            if x + w > strip.x + strip.width {
                break;
            }
            let node = &t.nodes[c];
            let last = node.path.last();
            f.render_widget(
                Paragraph::new(format!("{}:{}", last.blob, last.channel)),
                Rect::new(x, strip.y + strip.height - 1, w, 1),
            );
            tile(
                f,
                images,
                app,
                Rect::new(x, strip.y, w - 1, strip.height - 1),
                &app.recon_key(&image, &node.path),
            );
        }
    }
}

fn help(f: &mut Frame, app: &App, keymap: &Keymap, area: Rect) {
    let lines: Vec<Line> = keymap
        .help(app.pane.name())
        .into_iter()
        .map(|(k, d)| Line::from(format!("{k:<22} {d}")))
        .collect();
    let r = centered(area, 72, lines.len() as u16 + 2);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!(" keys: {} ", app.pane.name())),
        ),
        r,
    );
}
