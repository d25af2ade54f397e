//! Sessions (`--session FILE`): the exploration (image, pane, method, the explored tree and
//! its selection) saved on every change and restored on start, so a dropped SSH connection
//! loses nothing. Written atomically (temporary file, then rename).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::app::{App, Pane, Tree};
use crate::recon::display::Display;
use crate::recon::Options;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub image: Option<PathBuf>,
    pub pane: Pane,
    pub opts: Options,
    pub display: Display,
    pub ov_top: usize,
    pub ov_row: usize,
    pub ov_col: usize,
    pub tree: Option<Tree>,
}

impl Session {
    pub fn capture(app: &App) -> Session {
        Session {
            image: app.current_image(),
            pane: app.pane,
            opts: app.opts,
            display: app.display,
            ov_top: app.ov_top,
            ov_row: app.ov_row,
            ov_col: app.ov_col,
            tree: app.tree.clone(),
        }
    }

    /// Puts the session into `app`; an image that is no longer in the gallery leaves the
    /// app in the gallery.
    pub fn restore(self, app: &mut App) {
        app.opts = self.opts;
        app.display = self.display;
        app.ov_top = self.ov_top.clamp(1, 12);
        let Some(image) = self.image else { return };
        let Some(i) = app.visible_images().iter().position(|p| **p == image) else {
            return;
        };
        app.sel = i;
        app.ov_row = self.ov_row;
        app.ov_col = self.ov_col.min(app.ov_top - 1);
        app.tree = self
            .tree
            .filter(|t| t.sel < t.nodes.len() && !t.nodes.is_empty());
        app.pane = match self.pane {
            Pane::Tree if app.tree.is_none() => Pane::Overview,
            p => p,
        };
    }

    pub fn load(path: &Path) -> anyhow::Result<Option<Session>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Ok(Some(serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("session {}: {e}", path.display())
                })?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("session {}: {e}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::Action;

    #[test]
    fn round_trip_through_a_file() {
        let imgs: Vec<PathBuf> = ["a.png", "b.png", "c.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let mut app = App::new(imgs.clone(), String::new());
        app.apply(Action::Right);
        app.apply(Action::Open);
        app.apply(Action::CycleMethod);
        app.tree = Some(Tree {
            nodes: vec![],
            sel: 0,
            show_input: true,
        });
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        Session::capture(&app).save(&f).unwrap();
        let mut fresh = App::new(imgs, String::new());
        Session::load(&f).unwrap().unwrap().restore(&mut fresh);
        assert_eq!(fresh.current_image(), Some(PathBuf::from("b.png")));
        assert_eq!(fresh.pane, Pane::Overview);
        assert_eq!(fresh.opts, app.opts);
        assert!(fresh.tree.is_none(), "an empty tree is dropped");
        assert!(Session::load(&dir.path().join("none.json"))
            .unwrap()
            .is_none());
        std::fs::write(&f, "{").unwrap();
        assert!(Session::load(&f).is_err());
    }
}
