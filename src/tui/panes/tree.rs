//! The tree pane: the explored tree of one neuron of the selected image (an outline one
//! expands into each node's strongest children), the selected node's reconstruction and
//! its children's, and exports of a node or of the whole tree.

use std::path::PathBuf;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::features::Features;
use super::{Ctx, Effect, View};
use crate::engine::{Event, Export, JobKey, Output};
use crate::recon::{Child, Path};
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images, SPINNER};

/// Number of children an expansion shows.
pub const CHILDREN: usize = 5;

/// A node of the explored tree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TreeNode {
    pub path: Path,
    pub weight: Option<f32>,
    pub parent: Option<usize>,
    pub children: Vec<usize>,
    /// Children asked for (spinner until they arrive).
    pub expanding: bool,
    pub removed: bool,
}

/// The explored tree of one image (as the session file holds it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
    pub sel: usize,
    pub show_input: bool,
}

impl Tree {
    pub fn new(root: Path) -> Tree {
        Tree {
            nodes: vec![TreeNode {
                path: root,
                weight: None,
                parent: None,
                children: vec![],
                expanding: false,
                removed: false,
            }],
            sel: 0,
            show_input: false,
        }
    }

    /// Checks that the nodes form one tree under node 0: every index in range, each
    /// child's parent its parent, every node reached once from the root (no cycle), the
    /// root not removed and the selection a node.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.nodes.len();
        let root = self.nodes.first().ok_or("has no root")?;
        if root.parent.is_some() || root.removed {
            return Err("has a root with a parent, or a removed root".into());
        }
        if self.sel >= n {
            return Err(format!(
                "selection {} is not one of its {n} nodes",
                self.sel
            ));
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0usize];
        while let Some(i) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                return Err(format!("reaches node {i} twice (a cycle)"));
            }
            for &c in &self.nodes[i].children {
                let child = self
                    .nodes
                    .get(c)
                    .ok_or_else(|| format!("node {i} has child {c}, out of range"))?;
                if child.parent != Some(i) {
                    return Err(format!(
                        "node {c} is a child of {i} but names another parent"
                    ));
                }
                stack.push(c);
            }
        }
        match seen.iter().position(|s| !s) {
            Some(i) => Err(format!(
                "node {i} is not under the root (its parent does not list it)"
            )),
            None => Ok(()),
        }
    }

    /// Visible nodes in outline order with their depth.
    pub fn outline(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        fn walk(t: &Tree, i: usize, d: usize, out: &mut Vec<(usize, usize)>) {
            if t.nodes[i].removed {
                return;
            }
            out.push((i, d));
            for &c in &t.nodes[i].children {
                walk(t, c, d + 1, out);
            }
        }
        walk(self, 0, 0, &mut out);
        out
    }

    /// The children of an expanding node arrived: they replace its old ones.
    fn add_children(&mut self, path: &Path, kids: &[Child]) {
        let Some(i) = self
            .nodes
            .iter()
            .position(|n| &n.path == path && !n.removed)
        else {
            return;
        };
        if !self.nodes[i].expanding {
            return;
        }
        self.nodes[i].expanding = false;
        let old = std::mem::take(&mut self.nodes[i].children);
        for c in old {
            self.remove_subtree(c);
        }
        for k in kids {
            self.nodes.push(TreeNode {
                path: k.path.clone(),
                weight: Some(k.weight),
                parent: Some(i),
                children: vec![],
                expanding: false,
                removed: false,
            });
            let id = self.nodes.len() - 1;
            self.nodes[i].children.push(id);
        }
    }

    fn remove_subtree(&mut self, i: usize) {
        self.nodes[i].removed = true;
        if let Some(p) = self.nodes[i].parent {
            self.nodes[p].children.retain(|&c| c != i);
        }
        let kids = self.nodes[i].children.clone();
        for c in kids {
            self.remove_subtree(c);
        }
    }

    /// The explored tree from node `i` as JSON, in the shape of `treevis tree`'s
    /// `tree.json`.
    fn json(&self, i: usize) -> serde_json::Value {
        let n = &self.nodes[i];
        let last = n.path.last();
        serde_json::json!({
            "path": n.path.to_string(),
            "blob": last.blob,
            "channel": last.channel,
            "weight": n.weight,
            "image": format!("{}.png", n.path.file_stem()),
            "raw": format!("{}.npy", n.path.file_stem()),
            "children": n.children.iter().filter(|&&c| !self.nodes[c].removed).map(|&c| self.json(c)).collect::<Vec<_>>(),
        })
    }
}

#[derive(Default)]
pub struct TreePane {
    /// `None` until the overview opens a tree.
    pub tree: Option<Tree>,
}

/// The jobs of the tree pane on one image.
struct Keys {
    /// The selected node's reconstruction.
    selected: JobKey,
    /// Its children's, in order.
    children: Vec<JobKey>,
    /// The children of every node being expanded.
    expanding: Vec<JobKey>,
    /// The input image and its labels, when shown.
    input: Option<(JobKey, JobKey)>,
}

impl TreePane {
    /// Children depend on the method: expanded nodes are asked again.
    pub fn reset_expansions(&mut self) {
        if let Some(t) = &mut self.tree {
            for n in &mut t.nodes {
                if !n.children.is_empty() {
                    n.expanding = true;
                }
            }
        }
    }

    fn keys(&self, s: &Shared) -> Option<Keys> {
        let (image, t) = (s.current_image()?, self.tree.as_ref()?);
        let sel = t.nodes.get(t.sel)?;
        Some(Keys {
            selected: s.recon_key(&image, &sel.path),
            children: sel
                .children
                .iter()
                .map(|&c| s.recon_key(&image, &t.nodes[c].path))
                .collect(),
            expanding: t
                .nodes
                .iter()
                .filter(|n| n.expanding && !n.removed)
                .map(|n| JobKey::Children {
                    image: image.clone(),
                    path: n.path.clone(),
                    opts: s.opts,
                    rank: crate::recon::Ranking::abs(CHILDREN),
                    ablate: false,
                })
                .collect(),
            input: t.show_input.then(|| {
                (
                    JobKey::Input {
                        image: image.clone(),
                    },
                    JobKey::Labels {
                        image: image.clone(),
                    },
                )
            }),
        })
    }

    /// An export of the selected node, or of every node shown.
    fn export(&self, a: Action, s: &mut Shared) -> Effect {
        let (Some(image), Some(t)) = (s.current_image(), self.tree.as_ref()) else {
            return Effect::Done;
        };
        let paths: Vec<Path> = if a == Action::ExportNode {
            vec![t.nodes[t.sel].path.clone()]
        } else {
            t.outline()
                .iter()
                .map(|(i, _)| t.nodes[*i].path.clone())
                .collect()
        };
        let tree_json = (a == Action::ExportTree).then(|| t.json(0).to_string());
        let stem = image
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        s.message = Some("exporting...".into());
        Effect::Export(Export {
            image,
            paths,
            opts: s.opts,
            display: s.display,
            dir: PathBuf::from("treevis-export").join(stem),
            tree_json,
            tree: None,
        })
    }
}

impl View for TreePane {
    fn layer(&self) -> Layer {
        Layer::Tree
    }

    fn wants(&self, ctx: &Ctx) -> Vec<JobKey> {
        let Some(k) = self.keys(ctx.shared) else {
            return vec![];
        };
        let mut w = vec![k.selected];
        w.extend(k.expanding);
        w.extend(k.children);
        if let Some((input, labels)) = k.input {
            w.push(input);
            w.push(labels);
        }
        w
    }

    fn handle(&mut self, a: Action, s: &mut Shared) -> Effect {
        match a {
            Action::ExportNode | Action::ExportTree => return self.export(a, s),
            Action::Features => return Effect::Open(Box::new(Features)),
            Action::Up
            | Action::Down
            | Action::Expand
            | Action::Collapse
            | Action::Parent
            | Action::Remove
            | Action::ToggleInput => {}
            _ => return Effect::Pass,
        }
        let Some(t) = &mut self.tree else {
            return Effect::Done;
        };
        let outline = t.outline();
        let pos = outline.iter().position(|(i, _)| *i == t.sel).unwrap_or(0);
        match a {
            Action::Up => t.sel = outline[pos.saturating_sub(1)].0,
            Action::Down => t.sel = outline[(pos + 1).min(outline.len() - 1)].0,
            Action::Expand => {
                let sel = t.sel;
                if t.nodes[sel].children.is_empty() {
                    t.nodes[sel].expanding = true;
                } else if let Some(&c) =
                    t.nodes[sel].children.iter().find(|&&c| !t.nodes[c].removed)
                {
                    t.sel = c;
                }
            }
            Action::Collapse => {
                let sel = t.sel;
                if t.nodes[sel].children.iter().any(|&c| !t.nodes[c].removed) {
                    let kids = std::mem::take(&mut t.nodes[sel].children);
                    for c in kids {
                        t.remove_subtree(c);
                    }
                    t.nodes[sel].expanding = false;
                } else if let Some(p) = t.nodes[sel].parent {
                    t.sel = p;
                }
            }
            Action::Parent => {
                if let Some(p) = t.nodes[t.sel].parent {
                    t.sel = p;
                }
            }
            Action::Remove => {
                let sel = t.sel;
                if let Some(p) = t.nodes[sel].parent {
                    t.remove_subtree(sel);
                    t.sel = p;
                }
            }
            Action::ToggleInput => t.show_input = !t.show_input,
            _ => {}
        }
        Effect::Done
    }

    fn on_event(&mut self, e: &Event, s: &Shared) {
        if let (
            Some(t),
            Event::Done {
                key: JobKey::Children { path, opts, .. },
                output: Output::Children(kids),
            },
        ) = (&mut self.tree, e)
        {
            // children asked for with other options are not this tree's any more
            if *opts == s.opts {
                t.add_children(path, kids);
            }
        }
    }

    fn neuron(&self, _s: &Shared) -> Option<(String, usize)> {
        let t = self.tree.as_ref()?;
        let n = t.nodes.get(t.sel)?.path.last();
        Some((n.blob.clone(), n.channel))
    }

    fn draw(&mut self, f: &mut Frame, area: Rect, ctx: &Ctx, images: &mut Images) {
        let s = ctx.shared;
        let (Some(t), Some(keys)) = (self.tree.as_ref(), self.keys(s)) else {
            return;
        };
        let [left, right] =
            Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)])
                .areas(area);
        let lb = Block::default().borders(Borders::ALL).title(format!(
            " tree: {} expands, {} collapses, {} removes ",
            ctx.hint(Action::Expand),
            ctx.hint(Action::Collapse),
            ctx.hint(Action::Remove),
        ));
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
                    format!(" {}", SPINNER[s.tick % 4])
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
        if let Some((input, labels)) = &keys.input {
            let [a, b] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
                    .areas(big);
            let [img, labs] =
                Layout::vertical([Constraint::Min(3), Constraint::Length(5)]).areas(a);
            ui::tile(f, images, s, img, input);
            f.render_widget(Paragraph::new(ui::labels_lines(s, labels)), labs);
            ui::tile(f, images, s, b, &keys.selected);
        } else {
            ui::tile(f, images, s, big, &keys.selected);
        }
        if !sel.children.is_empty() {
            let n = sel.children.len() as u16;
            let w = (strip.width / n).max(4);
            for (k, (&c, key)) in sel.children.iter().zip(&keys.children).enumerate() {
                let x = strip.x + k as u16 * w;
                if x + w > strip.x + strip.width {
                    break;
                }
                let last = t.nodes[c].path.last();
                f.render_widget(
                    Paragraph::new(format!("{}:{}", last.blob, last.channel)),
                    Rect::new(x, strip.y + strip.height - 1, w, 1),
                );
                ui::tile(
                    f,
                    images,
                    s,
                    Rect::new(x, strip.y, w - 1, strip.height - 1),
                    key,
                );
            }
        }
    }
}
