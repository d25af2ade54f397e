//! The tree pane: the explored tree of one neuron of the selected image (an outline one
//! expands into each node's children), the selected node's reconstruction and its
//! children's, and exports of a node or of the whole tree (with its `index.html`).
//!
//! Children are ranked by the tree's [`Sign`] (strongest, excitatory or inhibitory; the
//! bottom title says which) and shown as signed shares (`+12.3%` excites the parent,
//! `−4.5%` inhibits it); with ablation on, each child's drop too, marked where its rank by
//! drop differs from its rank by weight. Changing the sign or switching ablation on asks
//! the *selected* node's children again (other expanded nodes keep theirs: their children
//! were ranked as they were when expanded); children that come back are kept with their
//! explored subtrees. The selected node's detail lines say its signed weight, the terms of
//! each consumer edge it reaches its parent through (a residual block's skip and branch),
//! and where ablation disagrees with the weights.
//!
//! The parents overlay re-roots the tree at a parent of the selected node ([`Tree::rerooted`]);
//! the compare and sanity overlays show the selected node under every rule, and under
//! randomized weights.

use std::path::PathBuf;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

use super::compare::Compare;
use super::features::Features;
use super::parents::Parents;
use super::sanity::SanityView;
use super::{Ctx, Effect, View};
use crate::engine::{Event, Export, ExportNode, JobKey, Output};
use crate::recon::{Child, Path, Ranking, Sign};
use crate::tui::app::Shared;
use crate::tui::keymap::{Action, Layer};
use crate::tui::ui::{self, Images, SPINNER};

/// Number of children an expansion shows.
pub const CHILDREN: usize = 5;

/// A node of the explored tree.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TreeNode {
    pub path: Path,
    /// `|s_j|` as a child of its parent; `None` at the root and for a node a re-rooting
    /// put under a new root (until that root's children arrive with it among them).
    pub weight: Option<f32>,
    /// What the ranking said of it as a child (signed weight, share, edge terms, drop).
    #[serde(default)]
    pub child: Option<Child>,
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
    /// Which children an expansion lists.
    #[serde(default)]
    pub sign: Sign,
    /// Expansions compute each child's ablation drop too.
    #[serde(default)]
    pub ablate: bool,
}

impl Tree {
    pub fn new(root: Path) -> Tree {
        Tree {
            nodes: vec![TreeNode {
                path: root,
                weight: None,
                child: None,
                parent: None,
                children: vec![],
                expanding: false,
                removed: false,
            }],
            sel: 0,
            show_input: false,
            sign: Sign::Abs,
            ablate: false,
        }
    }

    /// The children ranking of an expansion.
    pub fn ranking(&self) -> Ranking {
        Ranking {
            k: CHILDREN,
            sign: self.sign,
            via: true,
        }
    }

    /// The tree re-rooted at `parent` (a root path, a parent of the selected node): the
    /// selected node's subtree is kept under it, every path re-prefixed (`u:p/` and then
    /// the selected node's last node and what lies below it); other branches are dropped.
    /// The kept nodes keep what their ranking said of them. The new root is expanded, so
    /// the selected node gets its weight when the root's children arrive (it stays, with
    /// none, if it is not among them); it stays selected.
    pub fn rerooted(&self, parent: &Path) -> Tree {
        let cut = self.nodes[self.sel].path.len() - 1;
        let mut nodes = vec![TreeNode {
            path: parent.clone(),
            weight: None,
            child: None,
            parent: None,
            children: vec![],
            expanding: true,
            removed: false,
        }];
        fn copy(t: &Tree, i: usize, up: usize, prefix: &Path, cut: usize, out: &mut Vec<TreeNode>) {
            let n = &t.nodes[i];
            let mut p = prefix.0.clone();
            p.extend(n.path.0[cut..].iter().cloned());
            let path = Path(p);
            let id = out.len();
            // the re-rooted node is nobody's ranked child yet
            let child = (id != 1).then(|| n.child.clone()).flatten().map(|c| Child {
                path: path.clone(),
                ..c
            });
            out.push(TreeNode {
                path,
                weight: if id == 1 { None } else { n.weight },
                child,
                parent: Some(up),
                children: vec![],
                expanding: n.expanding,
                removed: false,
            });
            out[up].children.push(id);
            for &c in &n.children {
                if !t.nodes[c].removed {
                    copy(t, c, id, prefix, cut, out);
                }
            }
        }
        copy(self, self.sel, 0, parent, cut, &mut nodes);
        Tree {
            nodes,
            sel: 1,
            show_input: self.show_input,
            sign: self.sign,
            ablate: self.ablate,
        }
    }

    /// The explored tree from node `i` for the export's `index.html`.
    pub fn export_node(&self, i: usize) -> ExportNode {
        let n = &self.nodes[i];
        ExportNode {
            path: n.path.clone(),
            child: n.child.clone(),
            children: n
                .children
                .iter()
                .filter(|&&c| !self.nodes[c].removed)
                .map(|&c| self.export_node(c))
                .collect(),
        }
    }

    /// Checks that the nodes form one tree under node 0: every index in range, each
    /// child's parent its parent, every node not removed reached once from the root (no
    /// cycle), the root not removed and the selection a node.
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
        // removed nodes stay in the list, out of every children list
        match seen
            .iter()
            .zip(&self.nodes)
            .position(|(s, n)| !s && !n.removed)
        {
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

    /// The children of an expanding node arrived: they replace its old ones, but an old
    /// child that comes back keeps its node (and explored subtree), and one that no
    /// ranking gave (the node a re-rooting put there, weight `None`) stays after them.
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
        let mut new = Vec::with_capacity(kids.len());
        for k in kids {
            if let Some(&c) = old.iter().find(|&&c| self.nodes[c].path == k.path) {
                self.nodes[c].weight = Some(k.weight);
                self.nodes[c].child = Some(k.clone());
                new.push(c);
                continue;
            }
            self.nodes.push(TreeNode {
                path: k.path.clone(),
                weight: Some(k.weight),
                child: Some(k.clone()),
                parent: Some(i),
                children: vec![],
                expanding: false,
                removed: false,
            });
            new.push(self.nodes.len() - 1);
        }
        let mut keep = Vec::new();
        for c in old {
            if new.contains(&c) {
                continue;
            }
            if self.nodes[c].weight.is_none() {
                keep.push(c);
            } else {
                self.remove_subtree(c);
            }
        }
        new.extend(keep);
        self.nodes[i].children = new;
    }

    /// The selected node's children asked for again (the ranking changed), if it has any.
    fn recompute_selected(&mut self) {
        let sel = self.sel;
        if self.nodes[sel]
            .children
            .iter()
            .any(|&c| !self.nodes[c].removed)
        {
            self.nodes[sel].expanding = true;
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
                    rank: t.ranking(),
                    ablate: t.ablate,
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

    /// The parents, compare or sanity overlay of the selected node.
    fn overlay(&self, a: Action, s: &Shared) -> Effect {
        let (Some(image), Some(t)) = (s.current_image(), self.tree.as_ref()) else {
            return Effect::Done;
        };
        let path = t.nodes[t.sel].path.clone();
        match a {
            Action::Parents => Effect::Open(Box::new(Parents::new(image, path))),
            Action::Compare => Effect::Open(Box::new(Compare::new(image, path))),
            _ => Effect::Open(Box::new(SanityView::new(image, path))),
        }
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
        let tree = (a == Action::ExportTree).then(|| t.export_node(0));
        let stem = image
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        s.message = Some("exporting...".into());
        Effect::Export(Box::new(Export {
            image,
            paths,
            opts: s.opts,
            display: s.display,
            dir: PathBuf::from("treevis-export").join(stem),
            tree_json,
            tree: tree.map(Box::new),
        }))
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
            Action::Parents | Action::Compare | Action::Sanity => return self.overlay(a, s),
            Action::CycleSign | Action::ToggleAblation => {}
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
            Action::CycleSign => {
                t.sign = match t.sign {
                    Sign::Abs => Sign::Pos,
                    Sign::Pos => Sign::Neg,
                    Sign::Neg => Sign::Abs,
                };
                t.recompute_selected();
            }
            Action::ToggleAblation => {
                t.ablate = !t.ablate;
                // drops are computed when asked; switched off, they are only hidden
                if t.ablate {
                    t.recompute_selected();
                }
            }
            _ => {}
        }
        Effect::Done
    }

    fn on_event(&mut self, e: &Event, s: &Shared) {
        if let (
            Some(t),
            Event::Done {
                key:
                    JobKey::Children {
                        path,
                        opts,
                        rank,
                        ablate,
                        ..
                    },
                output: Output::Children(kids),
            },
        ) = (&mut self.tree, e)
        {
            // children asked for with other options or another ranking are not this
            // tree's any more
            if *opts == s.opts && *rank == t.ranking() && *ablate == t.ablate {
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
        let lb = Block::default()
            .borders(Borders::ALL)
            .title(format!(
                " tree: {} expands, {} collapses, {} removes ",
                ctx.hint(Action::Expand),
                ctx.hint(Action::Collapse),
                ctx.hint(Action::Remove),
            ))
            .title_bottom(format!(
                " {}: {} children ({}) ",
                ctx.hint(Action::CycleSign),
                t.sign.describe(),
                t.sign.name(),
            ));
        let linner = lb.inner(left);
        f.render_widget(lb, left);
        let outline = t.outline();
        let lines: Vec<Line> = outline
            .iter()
            .map(|&(i, depth)| outline_line(t, i, depth, s.tick))
            .collect();
        let pos = outline.iter().position(|(i, _)| *i == t.sel).unwrap_or(0);
        let scroll = pos.saturating_sub(linner.height.saturating_sub(1) as usize) as u16;
        f.render_widget(Paragraph::new(lines).scroll((scroll, 0)), linner);

        let sel = &t.nodes[t.sel];
        let rb = Block::default()
            .borders(Borders::ALL)
            .title(format!(" {} ", sel.path))
            .title_bottom(format!(
                " {} parents | {} ablation {} | {} compare | {} sanity ",
                ctx.hint(Action::Parents),
                ctx.hint(Action::ToggleAblation),
                if t.ablate { "on" } else { "off" },
                ctx.hint(Action::Compare),
                ctx.hint(Action::Sanity),
            ));
        let rinner = rb.inner(right);
        f.render_widget(rb, right);
        let detail = detail_lines(t);
        let strip_h = if sel.children.is_empty() { 0 } else { 8 };
        let [big, det, strip] = Layout::vertical([
            Constraint::Min(4),
            Constraint::Length(detail.len() as u16),
            Constraint::Length(strip_h),
        ])
        .areas(rinner);
        f.render_widget(Paragraph::new(detail), det);
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

/// A number in a few characters: `0.123`, `12.3`, `22412`.
pub fn num(v: f32) -> String {
    let a = v.abs();
    let t = if a >= 1000.0 {
        format!("{a:.0}")
    } else if a >= 10.0 {
        format!("{a:.1}")
    } else {
        format!("{a:.3}")
    };
    if v < 0.0 {
        format!("−{t}")
    } else {
        t
    }
}

/// A signed number, the sign always written: `+0.017`, `−0.231`.
pub fn signed(v: f32) -> String {
    if v < 0.0 {
        num(v)
    } else {
        format!("+{}", num(v))
    }
}

/// A child's share of its blob's total with the sign of its weight: `+12.3%` (excites the
/// parent) or `−4.5%` (inhibits it).
pub fn signed_share(c: &Child) -> String {
    let sign = if c.value < 0.0 { '−' } else { '+' };
    format!("{sign}{:.1}%", c.share * 100.0)
}

/// Green for an excitatory child, red for an inhibitory one.
fn sign_style(c: &Child) -> Style {
    if c.value > 0.0 {
        Style::default().fg(Color::Green)
    } else if c.value < 0.0 {
        Style::default().fg(Color::Red)
    } else {
        Style::default()
    }
}

/// Node `c`'s rank by ablation drop among its siblings (1 first), where it differs from
/// its rank by weight (its place in the list).
fn drop_rank(t: &Tree, c: usize) -> Option<usize> {
    let p = t.nodes[c].parent?;
    let sibs: Vec<(usize, f32)> = t.nodes[p]
        .children
        .iter()
        .filter_map(|&i| Some((i, t.nodes[i].child.as_ref()?.drop?)))
        .collect();
    let by_weight = sibs.iter().position(|(i, _)| *i == c)?;
    let mut by_drop = sibs.clone();
    by_drop.sort_by(|a, b| b.1.total_cmp(&a.1));
    let r = by_drop.iter().position(|(i, _)| *i == c)?;
    (r != by_weight).then_some(r + 1)
}

/// One line of the outline: mark, name, signed share (and drop), spinner.
fn outline_line(t: &Tree, i: usize, depth: usize, tick: usize) -> Line<'static> {
    let n = &t.nodes[i];
    let last = n.path.last();
    let mark = if n.children.is_empty() { "·" } else { "▾" };
    let selected = i == t.sel;
    let base = if selected {
        Style::default().fg(Color::Black).bg(Color::Yellow)
    } else {
        Style::default()
    };
    let mut spans = vec![Span::styled(
        format!(
            "{}{} {}:{}",
            "  ".repeat(depth),
            mark,
            last.blob,
            last.channel
        ),
        base,
    )];
    match &n.child {
        Some(c) => {
            let style = if selected { base } else { sign_style(c) };
            spans.push(Span::styled(format!(" {}", signed_share(c)), style));
            if let (true, Some(d)) = (t.ablate, c.drop) {
                let rank = drop_rank(t, i)
                    .map(|r| format!(" (#{r})"))
                    .unwrap_or_default();
                spans.push(Span::styled(format!(" drop {}{rank}", num(d)), base));
            }
        }
        // a tree from an older session: the raw weight
        None => {
            if let Some(w) = n.weight {
                spans.push(Span::styled(format!(" {}", num(w)), base));
            }
        }
    }
    if n.expanding {
        spans.push(Span::styled(format!(" {}", SPINNER[tick % 4]), base));
    }
    Line::from(spans)
}

/// The selected node's detail: its signed weight as a child, the terms of each edge it
/// reaches its parent through, and where ablation disagrees with the weights' order.
fn detail_lines(t: &Tree) -> Vec<Line<'static>> {
    let n = &t.nodes[t.sel];
    let mut out = Vec::new();
    match (&n.child, n.parent) {
        (Some(c), Some(p)) => {
            let parent = t.nodes[p].path.last();
            let mut text = format!(
                "s {} on {}:{} ({} of {})",
                signed(c.value),
                parent.blob,
                parent.channel,
                signed_share(c),
                c.blob
            );
            if let (true, Some(d)) = (t.ablate, c.drop) {
                text.push_str(&format!(", drop {} zeroed", num(d)));
            }
            out.push(Line::from(Span::styled(text, sign_style(c))));
            if !c.via.is_empty() {
                let terms: Vec<String> = c
                    .via
                    .iter()
                    .map(|e| {
                        let skip = if e.skip { " (skip)" } else { "" };
                        format!("{}{skip} {}", e.edge, signed(e.value))
                    })
                    .collect();
                out.push(Line::from(format!("via {}", terms.join(", "))));
            }
        }
        (None, Some(_)) => out.push(Line::from("weight not known yet (re-rooted here)")),
        _ => {}
    }
    if t.ablate {
        let kids: Vec<(usize, f32)> = n
            .children
            .iter()
            .filter_map(|&i| Some((i, t.nodes[i].child.as_ref()?.drop?)))
            .collect();
        if !kids.is_empty() {
            let mut by_drop: Vec<usize> = (0..kids.len()).collect();
            by_drop.sort_by(|&a, &b| kids[b].1.total_cmp(&kids[a].1));
            let line = match by_drop.iter().enumerate().find(|(r, w)| *r != **w) {
                None => "ablation agrees with the weights' order".to_string(),
                Some((r, &w)) => {
                    let name = |k: usize| {
                        let l = t.nodes[kids[k].0].path.last();
                        format!("{}:{}", l.blob, l.channel)
                    };
                    format!(
                        "ablation ranks #{} {} above #{} {} ((#n): rank by drop)",
                        w + 1,
                        name(w),
                        r + 1,
                        name(r)
                    )
                }
            };
            out.push(Line::from(line));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child(path: &str, value: f32, drop: Option<f32>) -> Child {
        let path: Path = path.parse().unwrap();
        let last = path.last().clone();
        Child {
            blob: last.blob,
            channel: last.channel,
            weight: value.abs(),
            path,
            value,
            share: value.abs() / 10.0,
            via: vec![],
            drop,
        }
    }

    /// conv5:1 -> conv4:2 (-> conv3:7, conv3:8), conv4:3; conv4:2 selected.
    fn tree() -> Tree {
        let mut t = Tree::new("conv5:1".parse().unwrap());
        t.nodes[0].expanding = true;
        t.add_children(
            &"conv5:1".parse().unwrap(),
            &[
                child("conv5:1/conv4:2", 2.0, None),
                child("conv5:1/conv4:3", -1.0, None),
            ],
        );
        t.nodes[1].expanding = true;
        t.add_children(
            &"conv5:1/conv4:2".parse().unwrap(),
            &[
                child("conv5:1/conv4:2/conv3:7", 1.0, None),
                child("conv5:1/conv4:2/conv3:8", 0.5, None),
            ],
        );
        t.sel = 1;
        t
    }

    #[test]
    fn re_rooting_keeps_the_selected_subtree_under_the_parent() {
        let t = tree().rerooted(&"conv5:9".parse().unwrap());
        t.validate().unwrap();
        let names: Vec<String> = t
            .outline()
            .iter()
            .map(|(i, _)| t.nodes[*i].path.to_string())
            .collect();
        assert_eq!(
            names,
            [
                "conv5:9",
                "conv5:9/conv4:2",
                "conv5:9/conv4:2/conv3:7",
                "conv5:9/conv4:2/conv3:8"
            ]
        );
        assert_eq!(t.sel, 1);
        assert!(
            t.nodes[0].expanding,
            "the new root's children are asked for"
        );
        assert_eq!(
            (t.nodes[1].weight, t.nodes[1].child.is_none()),
            (None, true)
        );
        let kept = t.nodes[2].child.as_ref().unwrap();
        assert_eq!(kept.path.to_string(), "conv5:9/conv4:2/conv3:7");

        // the root's children arrive: the node gets its weight and keeps its subtree; a
        // node not among them stays (weightless)
        let mut a = t.clone();
        a.add_children(
            &"conv5:9".parse().unwrap(),
            &[
                child("conv5:9/conv4:5", 3.0, None),
                child("conv5:9/conv4:2", -0.5, None),
            ],
        );
        a.validate().unwrap();
        assert_eq!(a.nodes[0].children, [4, 1]);
        assert_eq!(a.nodes[1].weight, Some(0.5));
        assert_eq!(a.outline().len(), 5);
        let mut b = t.clone();
        b.add_children(
            &"conv5:9".parse().unwrap(),
            &[child("conv5:9/conv4:5", 3.0, None)],
        );
        assert_eq!(b.nodes[0].children, [4, 1]);
        assert_eq!(b.nodes[1].weight, None);
    }

    #[test]
    fn children_again_keep_the_subtrees_of_those_that_come_back() {
        let mut t = tree();
        t.sel = 0;
        t.sign = Sign::Neg;
        t.recompute_selected();
        assert!(t.nodes[0].expanding);
        t.add_children(
            &"conv5:1".parse().unwrap(),
            &[
                child("conv5:1/conv4:2", -2.0, None),
                child("conv5:1/conv4:9", -1.0, None),
            ],
        );
        t.validate().unwrap();
        assert!(t.nodes[2].removed, "conv4:3 is not among them");
        assert_eq!(t.nodes[1].children.len(), 2, "conv4:2's subtree stays");
        assert_eq!(t.nodes[1].child.as_ref().unwrap().value, -2.0);
    }

    #[test]
    fn shares_carry_the_sign_and_ablation_says_where_it_disagrees() {
        assert_eq!(signed_share(&child("a:1", 2.0, None)), "+20.0%");
        assert_eq!(signed_share(&child("a:1", -0.45, None)), "−4.5%");
        assert_eq!(
            (num(22412.053), num(-0.0123), signed(0.5)),
            ("22412".into(), "−0.012".into(), "+0.500".into())
        );
        let mut t = Tree::new("conv5:1".parse().unwrap());
        t.ablate = true;
        t.nodes[0].expanding = true;
        t.add_children(
            &"conv5:1".parse().unwrap(),
            &[
                child("conv5:1/conv4:2", 3.0, Some(0.9)),
                child("conv5:1/conv4:3", 2.0, Some(0.1)),
                child("conv5:1/conv4:4", 1.0, Some(0.5)),
            ],
        );
        let text = |l: &Line| {
            l.spans
                .iter()
                .map(|s| s.content.to_string())
                .collect::<String>()
        };
        let d: Vec<String> = detail_lines(&t).iter().map(text).collect();
        assert_eq!(
            d,
            ["ablation ranks #3 conv4:4 above #2 conv4:3 ((#n): rank by drop)"]
        );
        assert_eq!(drop_rank(&t, 1), None);
        assert_eq!(drop_rank(&t, 3), Some(2));
        assert!(text(&outline_line(&t, 3, 1, 0)).contains("+10.0% drop 0.500 (#2)"));
        t.ablate = false;
        assert!(detail_lines(&t).is_empty());
        assert_eq!(text(&outline_line(&t, 3, 1, 0)), "  · conv4:4 +10.0%");
    }

    #[test]
    fn a_tree_from_an_older_session_loads() {
        let t: Tree = serde_json::from_str(
            r#"{"nodes":[{"path":"conv5:1","weight":null,"parent":null,"children":[1],"expanding":false,"removed":false},
                {"path":"conv5:1/conv4:2","weight":2.5,"parent":0,"children":[],"expanding":false,"removed":false}],
                "sel":1,"show_input":false}"#,
        )
        .unwrap();
        t.validate().unwrap();
        assert_eq!(
            (t.sign, t.ablate, t.nodes[1].child.is_none()),
            (Sign::Abs, false, true)
        );
        let text: String = outline_line(&t, 1, 1, 0)
            .spans
            .iter()
            .map(|s| s.content.to_string())
            .collect();
        assert_eq!(text, "  · conv4:2 2.500");
    }
}
