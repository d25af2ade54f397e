//! The TUI's state and its update: panes, selections, the explored tree, and the results
//! the engine sent. No terminal I/O here: `apply` takes actions, `on_event` takes engine
//! messages, `wants` says which jobs the screen needs.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::engine::{Event, JobKey, Output, Status};
use crate::recon::display::Display;
use crate::recon::{Child, MultMode, Options, Path, Rule};

use super::keymap::Action;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pane {
    Gallery,
    Overview,
    Tree,
}

impl Pane {
    pub fn name(self) -> &'static str {
        match self {
            Pane::Gallery => "gallery",
            Pane::Overview => "overview",
            Pane::Tree => "tree",
        }
    }
}

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

/// The explored tree of one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tree {
    pub nodes: Vec<TreeNode>,
    pub sel: usize,
    pub show_input: bool,
}

impl Tree {
    fn new(root: Path) -> Tree {
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
}

/// Number of children an expansion shows.
pub const CHILDREN: usize = 5;

pub struct App {
    pub images: Vec<PathBuf>,
    pub filter: String,
    pub filtering: bool,
    /// Index into `visible_images()`.
    pub sel: usize,
    pub pane: Pane,
    pub opts: Options,
    pub display: Display,
    pub ov_top: usize,
    pub ov_row: usize,
    pub ov_col: usize,
    pub tree: Option<Tree>,
    pub results: HashMap<JobKey, Output>,
    pub status: Status,
    pub help: bool,
    /// The selected neuron's feature-cache grid is shown.
    pub features: bool,
    pub quit: bool,
    /// Set by drawing: the gallery's columns and the visible rows' range of images.
    pub gallery_cols: usize,
    pub gallery_visible: std::ops::Range<usize>,
    /// Spinner phase, advanced on every tick.
    pub tick: usize,
    pub info: String,
    /// The last message for the user (an export's result).
    pub message: Option<String>,
    /// An export asked for by a key, taken by the event loop.
    pub export: Option<crate::engine::Export>,
}

impl App {
    pub fn new(images: Vec<PathBuf>, info: String) -> App {
        App {
            images,
            filter: String::new(),
            filtering: false,
            sel: 0,
            pane: Pane::Gallery,
            opts: Options::default(),
            display: Display::Norm,
            ov_top: 5,
            ov_row: 0,
            ov_col: 0,
            tree: None,
            results: HashMap::new(),
            status: Status::default(),
            help: false,
            features: false,
            quit: false,
            gallery_cols: 4,
            gallery_visible: 0..0,
            tick: 0,
            info,
            message: None,
            export: None,
        }
    }

    pub fn visible_images(&self) -> Vec<&PathBuf> {
        let f = self.filter.to_lowercase();
        self.images
            .iter()
            .filter(|p| {
                f.is_empty()
                    || p.file_name()
                        .is_some_and(|n| n.to_string_lossy().to_lowercase().contains(&f))
            })
            .collect()
    }

    pub fn current_image(&self) -> Option<PathBuf> {
        self.visible_images().get(self.sel).map(|p| (*p).clone())
    }

    pub fn overview(&self) -> Option<&Vec<crate::recon::BlobUnits>> {
        let image = self.current_image()?;
        match self.results.get(&JobKey::Overview {
            image,
            top: self.ov_top,
        }) {
            Some(Output::Overview(o)) => Some(o),
            _ => None,
        }
    }

    pub fn recon_key(&self, image: &std::path::Path, path: &Path) -> JobKey {
        JobKey::Recon {
            image: image.to_path_buf(),
            path: path.clone(),
            opts: self.opts,
            display: self.display,
        }
    }

    fn children_key(&self, image: &std::path::Path, path: &Path) -> JobKey {
        JobKey::Children {
            image: image.to_path_buf(),
            path: path.clone(),
            opts: self.opts,
            rank: crate::recon::Ranking::abs(CHILDREN),
            ablate: false,
        }
    }

    /// Typed characters while filtering the gallery.
    pub fn filter_input(&mut self, key: crossterm::event::KeyCode) -> bool {
        use crossterm::event::KeyCode;
        if !self.filtering {
            return false;
        }
        match key {
            KeyCode::Enter => self.filtering = false,
            KeyCode::Esc => {
                self.filtering = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) => self.filter.push(c),
            _ => {}
        }
        self.sel = 0;
        true
    }

    pub fn apply(&mut self, a: Action) {
        match a {
            Action::Quit => self.quit = true,
            Action::Help => self.help = !self.help,
            Action::Back if self.features => self.features = false,
            Action::Features => self.features = !self.features,
            Action::Back => {
                self.help = false;
                self.pane = match self.pane {
                    Pane::Tree => Pane::Overview,
                    _ => Pane::Gallery,
                }
            }
            Action::CycleMethod => {
                let i = Rule::ALL
                    .iter()
                    .position(|r| *r == self.opts.rule)
                    .unwrap_or(0);
                self.opts.rule = Rule::ALL[(i + 1) % Rule::ALL.len()];
                self.reset_expansions();
            }
            Action::CycleMult => {
                self.opts.mult = match self.opts.mult {
                    MultMode::Auto => MultMode::Manual,
                    MultMode::Manual => MultMode::Auto,
                };
                self.reset_expansions();
            }
            Action::CycleDisplay => {
                self.display = match self.display {
                    Display::Norm => Display::Mean,
                    Display::Mean => Display::Norm,
                }
            }
            _ => match self.pane {
                Pane::Gallery => self.apply_gallery(a),
                Pane::Overview => self.apply_overview(a),
                Pane::Tree => self.apply_tree(a),
            },
        }
    }

    /// Children depend on the method: expanded nodes are asked again.
    fn reset_expansions(&mut self) {
        if let Some(t) = &mut self.tree {
            for n in &mut t.nodes {
                if !n.children.is_empty() {
                    n.expanding = true;
                }
            }
        }
    }

    fn apply_gallery(&mut self, a: Action) {
        let n = self.visible_images().len();
        if n == 0 {
            if a == Action::Filter {
                self.filtering = true;
            }
            return;
        }
        let cols = self.gallery_cols.max(1);
        let page = self.gallery_visible.len().max(cols);
        let s = self.sel as isize;
        let target = match a {
            Action::Left => s - 1,
            Action::Right => s + 1,
            Action::Up => s - cols as isize,
            Action::Down => s + cols as isize,
            Action::PageUp => s - page as isize,
            Action::PageDown => s + page as isize,
            Action::First => 0,
            Action::Last => n as isize - 1,
            Action::Filter => {
                self.filtering = true;
                s
            }
            Action::Open => {
                self.pane = Pane::Overview;
                self.ov_row = 0;
                self.ov_col = 0;
                s
            }
            _ => s,
        };
        self.sel = target.clamp(0, n as isize - 1) as usize;
    }

    fn apply_overview(&mut self, a: Action) {
        let rows = self.overview().map(|o| o.len()).unwrap_or(0);
        match a {
            Action::Left => self.ov_col = self.ov_col.saturating_sub(1),
            Action::Right => self.ov_col = (self.ov_col + 1).min(self.ov_top.saturating_sub(1)),
            Action::Up => self.ov_row = self.ov_row.saturating_sub(1),
            Action::Down => self.ov_row = (self.ov_row + 1).min(rows.saturating_sub(1)),
            Action::More => self.ov_top = (self.ov_top + 1).min(12),
            Action::Fewer => {
                self.ov_top = self.ov_top.saturating_sub(1).max(1);
                self.ov_col = self.ov_col.min(self.ov_top - 1);
            }
            Action::Open => {
                let Some(o) = self.overview() else { return };
                let Some(row) = o.get(self.ov_row) else {
                    return;
                };
                let Some(u) = row.units.get(self.ov_col) else {
                    return;
                };
                let root = Path::root(&row.blob, u.channel);
                self.tree = Some(Tree::new(root));
                self.pane = Pane::Tree;
            }
            _ => {}
        }
    }

    fn apply_tree(&mut self, a: Action) {
        let Some(t) = &mut self.tree else { return };
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
                        remove_subtree(t, c);
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
                    remove_subtree(t, sel);
                    t.sel = p;
                }
            }
            Action::ToggleInput => t.show_input = !t.show_input,
            Action::ExportNode | Action::ExportTree => {
                let Some(image) = self.current_image() else {
                    return;
                };
                let Some(t) = self.tree.as_ref() else {
                    return;
                };
                let paths: Vec<Path> = if a == Action::ExportNode {
                    vec![t.nodes[t.sel].path.clone()]
                } else {
                    t.outline()
                        .iter()
                        .map(|(i, _)| t.nodes[*i].path.clone())
                        .collect()
                };
                let tree_json = (a == Action::ExportTree).then(|| tree_json(t, 0).to_string());
                let stem = image
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                self.export = Some(crate::engine::Export {
                    image,
                    paths,
                    opts: self.opts,
                    display: self.display,
                    dir: PathBuf::from("treevis-export").join(stem),
                    tree_json,
                    tree: None,
                });
                self.message = Some("exporting...".into());
            }
            _ => {}
        }
    }

    /// Stores an engine message; children of an expanding node become nodes.
    pub fn on_event(&mut self, e: Event) {
        match e {
            Event::Status(s) => self.status = s,
            Event::Exported(r) => self.message = Some(r.unwrap_or_else(|e| e)),
            Event::Progress { .. } => {}
            Event::Done { key, output } => {
                if let (JobKey::Children { path, opts, .. }, Output::Children(kids)) =
                    (&key, &output)
                {
                    if *opts == self.opts {
                        self.add_children(path, kids);
                    }
                }
                self.results.insert(key, output);
                // keep the UI-side copy bounded: drop other images' results past a size
                if self.results.len() > 2000 {
                    let keep = self.current_image();
                    self.results.retain(|k, _| {
                        k.image().is_none_or(|i| Some(i) == keep.as_ref())
                            || matches!(k, JobKey::Thumb { .. } | JobKey::Labels { .. })
                    });
                }
            }
        }
    }

    fn add_children(&mut self, path: &Path, kids: &[Child]) {
        let Some(t) = &mut self.tree else { return };
        let Some(i) = t.nodes.iter().position(|n| &n.path == path && !n.removed) else {
            return;
        };
        if !t.nodes[i].expanding {
            return;
        }
        t.nodes[i].expanding = false;
        let old = std::mem::take(&mut t.nodes[i].children);
        for c in old {
            remove_subtree(t, c);
        }
        for k in kids {
            t.nodes.push(TreeNode {
                path: k.path.clone(),
                weight: Some(k.weight),
                parent: Some(i),
                children: vec![],
                expanding: false,
                removed: false,
            });
            let id = t.nodes.len() - 1;
            t.nodes[i].children.push(id);
        }
    }

    /// The jobs the screen needs now, most important first.
    /// The neuron under the cursor: the selected overview tile, or the selected tree node's
    /// last neuron.
    pub fn selected_neuron(&self) -> Option<(String, usize)> {
        match self.pane {
            Pane::Gallery => None,
            Pane::Overview => {
                let row = self.overview()?.get(self.ov_row)?;
                let u = row.units.get(self.ov_col)?;
                Some((row.blob.clone(), u.channel))
            }
            Pane::Tree => {
                let t = self.tree.as_ref()?;
                let n = t.nodes.get(t.sel)?.path.last();
                Some((n.blob.clone(), n.channel))
            }
        }
    }

    /// The feature grid's job, while it is shown.
    pub fn features_key(&self) -> Option<JobKey> {
        if !self.features {
            return None;
        }
        let (blob, channel) = self.selected_neuron()?;
        Some(JobKey::Features { blob, channel })
    }

    pub fn wants(&self) -> Vec<JobKey> {
        let mut w: Vec<JobKey> = self.features_key().into_iter().collect();
        match self.pane {
            Pane::Gallery => {
                let imgs = self.visible_images();
                let vis = self.gallery_visible.start.min(imgs.len())
                    ..self.gallery_visible.end.min(imgs.len());
                for p in &imgs[vis.clone()] {
                    w.push(JobKey::Thumb {
                        image: (*p).clone(),
                    });
                }
                for p in &imgs[vis] {
                    w.push(JobKey::Labels {
                        image: (*p).clone(),
                    });
                }
            }
            Pane::Overview => {
                let Some(image) = self.current_image() else {
                    return w;
                };
                w.push(JobKey::Input {
                    image: image.clone(),
                });
                w.push(JobKey::Labels {
                    image: image.clone(),
                });
                w.push(JobKey::Overview {
                    image: image.clone(),
                    top: self.ov_top,
                });
                if let Some(o) = self.overview() {
                    // the selected row first, then the others
                    let mut rows: Vec<usize> = (0..o.len()).collect();
                    rows.sort_by_key(|&r| (r as isize - self.ov_row as isize).abs());
                    for r in rows {
                        for u in &o[r].units {
                            w.push(self.recon_key(&image, &Path::root(&o[r].blob, u.channel)));
                        }
                    }
                }
            }
            Pane::Tree => {
                let (Some(image), Some(t)) = (self.current_image(), &self.tree) else {
                    return w;
                };
                let sel = &t.nodes[t.sel];
                w.push(self.recon_key(&image, &sel.path));
                for n in t.nodes.iter().filter(|n| n.expanding && !n.removed) {
                    w.push(self.children_key(&image, &n.path));
                }
                for &c in &sel.children {
                    w.push(self.recon_key(&image, &t.nodes[c].path));
                }
                if t.show_input {
                    w.push(JobKey::Input {
                        image: image.clone(),
                    });
                    w.push(JobKey::Labels {
                        image: image.clone(),
                    });
                }
            }
        }
        w
    }
}

/// The explored tree as JSON, in the shape of `treevis tree`'s `tree.json`.
fn tree_json(t: &Tree, i: usize) -> serde_json::Value {
    let n = &t.nodes[i];
    let last = n.path.last();
    serde_json::json!({
        "path": n.path.to_string(),
        "blob": last.blob,
        "channel": last.channel,
        "weight": n.weight,
        "image": format!("{}.png", n.path.file_stem()),
        "raw": format!("{}.npy", n.path.file_stem()),
        "children": n.children.iter().filter(|&&c| !t.nodes[c].removed).map(|&c| tree_json(t, c)).collect::<Vec<_>>(),
    })
}

fn remove_subtree(t: &mut Tree, i: usize) {
    t.nodes[i].removed = true;
    if let Some(p) = t.nodes[i].parent {
        t.nodes[p].children.retain(|&c| c != i);
    }
    let kids = t.nodes[i].children.clone();
    for c in kids {
        remove_subtree(t, c);
    }
}
