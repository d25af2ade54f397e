//! An explored tree as one self-contained HTML page: the input image, its top labels and
//! the run's settings in a header, then every node (its reconstruction, path, weight and
//! share of its parent) as nested `<details open>` blocks.
//!
//! The page needs nothing else: images are inline `data:image/png;base64,...` URIs, the
//! CSS is inline, a Content-Security-Policy forbids any fetch, and it works from `file://`
//! without JavaScript (a tiny optional inline script only adds "expand all / collapse all"
//! buttons). The output is deterministic (no timestamps), so it can be compared in tests.
//!
//! The page itself takes plain data; [`tree`] builds it from a computed tree of the
//! engine, so the engine (the terminal app's export) and the CLI write the same page.

mod base64;
mod html;
pub mod tree;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The whole page: the run's settings, the input and its labels, and the tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The page's title and heading, e.g. `treevis: conv5:12 on cat.jpg`.
    pub title: String,
    /// The model's name and where its weights come from.
    pub model: String,
    /// The reconstruction method: `guided`, `deconv`, `gradient`, `guided-neg`.
    pub method: String,
    /// The multiplier mode: `auto` or `manual`.
    pub mult: String,
    /// The display mode: `norm` or `mean`.
    pub display: String,
    /// The input image's file name.
    pub image: String,
    /// PNG bytes of the input image (empty: a placeholder is shown).
    pub input_png: Vec<u8>,
    /// The top labels, best first: (class name, probability in 0..1).
    pub labels: Vec<(String, f32)>,
    /// The explored tree's root.
    pub root: PageNode,
}

/// One neuron of the tree.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageNode {
    /// Its path from the root, e.g. `conv5:12/conv4:3`.
    pub path: String,
    /// The blob (layer output) it belongs to.
    pub blob: String,
    /// Its channel in that blob.
    pub channel: usize,
    /// The signed contribution s_j to its parent (`None` at the root).
    pub weight: Option<f32>,
    /// |s_j| / sum_i |s_i| over its siblings, in 0..1 (`None` at the root).
    pub share: Option<f32>,
    /// PNG bytes of its reconstruction (empty: a placeholder is shown).
    pub png: Vec<u8>,
    /// A remark shown with the node, e.g. `all-zero: the filter removed every gradient`.
    pub note: Option<String>,
    /// Per-edge terms of the contribution (edge name, value); may be empty.
    pub via: Vec<(String, f32)>,
    /// Its most contributing children, in display order.
    pub children: Vec<PageNode>,
}

/// The page as one HTML document (UTF-8, deterministic: the same page gives the same
/// bytes).
pub fn render_html(page: &Page) -> String {
    html::render(page)
}

/// Writes [`render_html`]'s page to `dir/index.html`, creating `dir` (and its parents)
/// when missing, and returns the file's path. A folder that cannot be created or written
/// is an [`Error::Io`] naming the path.
pub fn write_html(page: &Page, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file = dir.join("index.html");
    std::fs::write(&file, render_html(page)).map_err(|e| Error::io(&file, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(path: &str) -> PageNode {
        let (blob, ch) = path
            .rsplit('/')
            .next()
            .and_then(|s| s.split_once(':'))
            .unwrap();
        PageNode {
            path: path.into(),
            blob: blob.into(),
            channel: ch.parse().unwrap(),
            weight: Some(0.5),
            share: Some(0.25),
            png: vec![1, 2, 3],
            ..PageNode::default()
        }
    }

    #[test]
    fn write_html_creates_the_folder_and_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let page = Page {
            title: "t".into(),
            root: leaf("conv5:1"),
            ..Page::default()
        };
        let file = write_html(&page, &dir).unwrap();
        assert_eq!(file, dir.join("index.html"));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), render_html(&page));
        // again: the file is replaced, the folder already exists
        write_html(&page, &dir).unwrap();
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "one file, nothing else"
        );
    }

    #[test]
    fn write_html_names_the_path_it_cannot_write() {
        let tmp = tempfile::tempdir().unwrap();
        // a file where the folder should be
        let blocker = tmp.path().join("blocker");
        std::fs::write(&blocker, b"x").unwrap();
        let page = Page::default();
        let err = write_html(&page, &blocker.join("out")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("blocker"), "{msg}");
        // the folder itself is a file
        let err = write_html(&page, &blocker).unwrap_err();
        assert!(err.to_string().contains("blocker"), "{err}");
    }

    #[test]
    fn a_three_level_tree_renders_every_node_once() {
        let mut a = leaf("conv5:12/conv4:3");
        a.children = vec![
            leaf("conv5:12/conv4:3/conv3:7"),
            leaf("conv5:12/conv4:3/conv3:8"),
        ];
        let mut b = leaf("conv5:12/conv4:9");
        b.children = vec![leaf("conv5:12/conv4:9/conv3:1")];
        let mut root = leaf("conv5:12");
        root.weight = None;
        root.share = None;
        root.children = vec![a, b];
        let page = Page {
            title: "treevis: conv5:12 on cat.jpg".into(),
            root,
            ..Page::default()
        };
        let html = render_html(&page);
        let paths = [
            "conv5:12",
            "conv5:12/conv4:3",
            "conv5:12/conv4:3/conv3:7",
            "conv5:12/conv4:3/conv3:8",
            "conv5:12/conv4:9",
            "conv5:12/conv4:9/conv3:1",
        ];
        assert_eq!(html.matches("<details").count(), paths.len());
        assert_eq!(html.matches("</details>").count(), paths.len());
        for p in paths {
            let attr = format!("data-path=\"{p}\"");
            assert_eq!(html.matches(&attr).count(), 1, "{p}");
        }
        // preorder: a node comes before its children, siblings in order
        let pos: Vec<usize> = paths
            .iter()
            .map(|p| html.find(&format!("data-path=\"{p}\"")).unwrap())
            .collect();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        // nesting: the first leaf's details closes before its sibling opens, and the
        // root's closes last
        let closes: Vec<usize> = html.match_indices("</details>").map(|(i, _)| i).collect();
        assert!(closes[0] > pos[2] && closes[0] < pos[3]);
        assert!(*closes.last().unwrap() > pos[5]);
        // deterministic
        assert_eq!(html, render_html(&page.clone()));
    }
}
