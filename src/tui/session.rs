//! Sessions (`--session FILE`): the exploration (image, pane, method, the explored tree and
//! its selection) saved on every change and restored on start, so a dropped SSH connection
//! loses nothing. Written atomically (a temporary file of its own, then rename). A session
//! file is validated as a whole when read: one that does not parse or whose tree is not a
//! tree (a cycle, an index out of range, a removed root) is set aside beside it
//! (`FILE.bad`), reported, and the app starts fresh.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::app::{App, Pane};
use super::panes::tree::Tree;
#[cfg(test)]
use super::panes::tree::TreeNode;
use crate::recon::display::Display;
use crate::recon::Options;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Any file name, also one that is not UTF-8 (see [`os_path`]).
    #[serde(with = "os_path")]
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
        let ov = &app.panes.overview;
        Session {
            image: app.shared.current_image(),
            pane: app.pane,
            opts: app.shared.opts,
            display: app.shared.display,
            ov_top: ov.top,
            ov_row: ov.row,
            ov_col: ov.col,
            tree: app.panes.tree.tree.clone(),
        }
    }

    /// Puts the session into `app`; an image that is no longer in the gallery leaves the
    /// app in the gallery.
    pub fn restore(self, app: &mut App) {
        app.shared.opts = self.opts;
        app.shared.display = self.display;
        let ov = &mut app.panes.overview;
        ov.top = self.ov_top.clamp(1, 12);
        let Some(image) = self.image else { return };
        let Some(i) = app
            .shared
            .visible_images()
            .iter()
            .position(|p| **p == image)
        else {
            return;
        };
        app.shared.sel = i;
        ov.row = self.ov_row;
        ov.col = self.ov_col.min(ov.top - 1);
        let tree = self
            .tree
            .filter(|t| t.sel < t.nodes.len() && !t.nodes.is_empty());
        app.pane = match self.pane {
            Pane::Tree if tree.is_none() => Pane::Overview,
            p => p,
        };
        app.panes.tree.tree = tree;
    }

    /// Reads a session: `Ok(None)` when there is none yet. A file that cannot be read is
    /// an error; one that is invalid is an error too (see [`Session::load_or_set_aside`]).
    pub fn load(path: &Path) -> anyhow::Result<Option<Session>> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow::anyhow!("session {}: {e}", path.display())),
        };
        Session::parse(&text)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("session {}: {e}", path.display()))
    }

    /// A session from a file's bytes, validated as a whole.
    pub fn parse(text: &[u8]) -> Result<Session, String> {
        let mut s: Session = serde_json::from_slice(text).map_err(|e| e.to_string())?;
        // a tree never expanded is no tree
        s.tree = s.tree.filter(|t| !t.nodes.is_empty());
        if let Some(t) = &s.tree {
            t.validate().map_err(|e| format!("the tree {e}"))?;
        }
        Ok(s)
    }

    /// [`Session::load`], but an invalid file is moved aside to `FILE.bad` and reported
    /// in the second value, so the app starts fresh and nothing is lost.
    pub fn load_or_set_aside(path: &Path) -> anyhow::Result<(Option<Session>, Option<String>)> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((None, None)),
            Err(e) => return Err(anyhow::anyhow!("session {}: {e}", path.display())),
        };
        match Session::parse(&text) {
            Ok(s) => Ok((Some(s), None)),
            Err(e) => {
                let e = anyhow::anyhow!("session {}: {e}", path.display());
                let mut aside = path.as_os_str().to_owned();
                aside.push(".bad");
                let aside = PathBuf::from(aside);
                std::fs::rename(path, &aside)
                    .map_err(|re| anyhow::anyhow!("{e:#}; and it cannot be set aside: {re}"))?;
                Ok((
                    None,
                    Some(format!(
                        "{e:#}: set aside as {}; starting fresh",
                        aside.display()
                    )),
                ))
            }
        }
    }

    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        // a temporary name of this process's own: never another file that happens to be
        // called like the session with another extension
        let name = path
            .file_name()
            .ok_or_else(|| anyhow::anyhow!("session {}: not a file name", path.display()))?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.tmp", std::process::id()));
        let tmp = path.with_file_name(tmp_name);
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                anyhow::anyhow!("session {}: {e}", path.display())
            })
    }
}

/// File names in JSON: a UTF-8 name as a string, any other as `{"bytes": [..]}` (Unix), so
/// that every image's session is saved and read back exactly.
mod os_path {
    use std::path::PathBuf;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes { bytes: Vec<u8> },
    }

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        p.as_ref()
            .map(|p| match p.to_str() {
                Some(t) => Repr::Text(t.to_string()),
                None => Repr::Bytes { bytes: bytes_of(p) },
            })
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        Ok(Option::<Repr>::deserialize(d)?.map(|r| match r {
            Repr::Text(t) => PathBuf::from(t),
            Repr::Bytes { bytes } => from_bytes(bytes),
        }))
    }

    #[cfg(unix)]
    fn bytes_of(p: &std::path::Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        p.as_os_str().as_bytes().to_vec()
    }
    #[cfg(not(unix))]
    fn bytes_of(p: &std::path::Path) -> Vec<u8> {
        p.to_string_lossy().into_owned().into_bytes()
    }
    #[cfg(unix)]
    fn from_bytes(b: Vec<u8>) -> PathBuf {
        use std::os::unix::ffi::OsStringExt;
        PathBuf::from(std::ffi::OsString::from_vec(b))
    }
    #[cfg(not(unix))]
    fn from_bytes(b: Vec<u8>) -> PathBuf {
        PathBuf::from(String::from_utf8_lossy(&b).into_owned())
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
        app.panes.tree.tree = Some(Tree {
            nodes: vec![],
            sel: 0,
            show_input: true,
            sign: Default::default(),
            ablate: false,
        });
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        Session::capture(&app).save(&f).unwrap();
        let mut fresh = App::new(imgs, String::new());
        Session::load(&f).unwrap().unwrap().restore(&mut fresh);
        assert_eq!(fresh.shared.current_image(), Some(PathBuf::from("b.png")));
        assert_eq!(fresh.pane, Pane::Overview);
        assert_eq!(fresh.shared.opts, app.shared.opts);
        assert!(fresh.tree().is_none(), "an empty tree is dropped");
        assert!(Session::load(&dir.path().join("none.json"))
            .unwrap()
            .is_none());
        std::fs::write(&f, "{").unwrap();
        assert!(Session::load(&f).is_err());
    }

    #[test]
    fn an_invalid_session_is_set_aside_and_the_app_starts_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        let node = |parent: Option<usize>, children: Vec<usize>| TreeNode {
            path: "conv5:1".parse().unwrap(),
            weight: None,
            child: None,
            parent,
            children,
            expanding: false,
            removed: false,
        };
        let session = |nodes: Vec<TreeNode>, sel: usize| Session {
            image: Some(PathBuf::from("a.png")),
            pane: Pane::Tree,
            opts: Options::default(),
            display: Display::default(),
            ov_top: 5,
            ov_row: 0,
            ov_col: 0,
            tree: Some(Tree {
                nodes,
                sel,
                show_input: false,
                sign: Default::default(),
                ablate: false,
            }),
        };
        let bad = [
            (
                session(vec![node(None, vec![1]), node(Some(0), vec![1])], 0),
                "cycle",
            ),
            (session(vec![node(None, vec![7])], 0), "out of range"),
            (session(vec![node(None, vec![])], 3), "selection"),
            (
                session(
                    vec![
                        node(None, vec![1]),
                        node(Some(0), vec![]),
                        node(Some(1), vec![]),
                    ],
                    0,
                ),
                "parent",
            ),
        ];
        for (s, why) in bad {
            std::fs::write(&f, serde_json::to_string(&s).unwrap()).unwrap();
            let (got, report) = Session::load_or_set_aside(&f).unwrap();
            assert!(got.is_none(), "{why}");
            let report = report.unwrap();
            assert!(report.contains("set aside"), "{why}: {report}");
            assert!(
                dir.path().join("s.json.bad").is_file() && !f.exists(),
                "{why}"
            );
        }
        let mut removed_root = session(vec![node(None, vec![])], 0);
        if let Some(t) = &mut removed_root.tree {
            t.nodes[0].removed = true;
        }
        std::fs::write(&f, serde_json::to_string(&removed_root).unwrap()).unwrap();
        assert!(Session::load_or_set_aside(&f).unwrap().1.is_some());
        // a good one is read, and saving never touches a neighbour called like it
        let good = session(vec![node(None, vec![1]), node(Some(0), vec![])], 1);
        std::fs::write(dir.path().join("s.tmp"), "mine").unwrap();
        good.save(&f).unwrap();
        assert_eq!(Session::load_or_set_aside(&f).unwrap(), (Some(good), None));
        assert_eq!(
            std::fs::read_to_string(dir.path().join("s.tmp")).unwrap(),
            "mine"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_session_of_a_non_utf8_image_name_is_saved_exactly() {
        use std::os::unix::ffi::OsStringExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.json");
        let name = PathBuf::from(std::ffi::OsString::from_vec(b"caf\xe9.png".to_vec()));
        let imgs = vec![name.clone()];
        let app = App::new(imgs.clone(), String::new());
        Session::capture(&app).save(&f).unwrap();
        let back = Session::load(&f).unwrap().unwrap();
        assert_eq!(back.image, Some(name));
    }
}
