//! Key bindings: `keymaps/default.toml` (built in), overridden entry by entry by a user
//! file; one table per pane plus `global`. Help and `treevis keys` are generated from it.

use std::collections::BTreeMap;
use std::path::Path;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT: &str = include_str!("../../keymaps/default.toml");

/// Everything a key can do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Quit,
    Help,
    Back,
    CycleMethod,
    CycleMult,
    CycleDisplay,
    Left,
    Right,
    Up,
    Down,
    PageUp,
    PageDown,
    First,
    Last,
    Filter,
    Open,
    More,
    Fewer,
    Expand,
    Collapse,
    Parent,
    Remove,
    ToggleInput,
    ExportNode,
    ExportTree,
    Features,
}

/// The panes (tables of the keymap).
pub const PANES: [&str; 4] = ["global", "gallery", "overview", "tree"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    on: Vec<String>,
    run: Action,
    #[serde(default)]
    desc: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTable {
    #[serde(default)]
    keys: Vec<RawBinding>,
}

/// A key with modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn parse(s: &str) -> std::result::Result<Key, String> {
        let (mut ctrl, mut alt, mut rest) = (false, false, s);
        loop {
            if let Some(r) = rest.strip_prefix("C-").filter(|r| !r.is_empty()) {
                ctrl = true;
                rest = r;
            } else if let Some(r) = rest.strip_prefix("A-").filter(|r| !r.is_empty()) {
                alt = true;
                rest = r;
            } else {
                break;
            }
        }
        let code = match rest {
            "Enter" => KeyCode::Enter,
            "Esc" => KeyCode::Esc,
            "Tab" => KeyCode::Tab,
            "Backspace" => KeyCode::Backspace,
            "Left" => KeyCode::Left,
            "Right" => KeyCode::Right,
            "Up" => KeyCode::Up,
            "Down" => KeyCode::Down,
            "PageUp" => KeyCode::PageUp,
            "PageDown" => KeyCode::PageDown,
            "Home" => KeyCode::Home,
            "End" => KeyCode::End,
            "Delete" => KeyCode::Delete,
            "Space" => KeyCode::Char(' '),
            other => {
                let mut chars = other.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => KeyCode::Char(c),
                    _ => return Err(format!("unknown key `{other}`")),
                }
            }
        };
        Ok(Key { code, ctrl, alt })
    }

    pub fn from_event(e: &KeyEvent) -> Key {
        Key {
            code: e.code,
            ctrl: e.modifiers.contains(KeyModifiers::CONTROL),
            alt: e.modifiers.contains(KeyModifiers::ALT),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.ctrl {
            f.write_str("C-")?;
        }
        if self.alt {
            f.write_str("A-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::PageUp => f.write_str("PageUp"),
            KeyCode::PageDown => f.write_str("PageDown"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// One binding of the effective keymap.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub keys: Vec<Key>,
    pub action: Action,
    pub desc: String,
}

/// The effective keymap: per pane, its bindings.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub panes: BTreeMap<String, Vec<Binding>>,
}

/// An action as a keymap file names it (`cycle_method`).
fn action_name(a: Action) -> String {
    serde_json::to_string(&a)
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|_| format!("{a:?}"))
}

fn parse_tables(text: &str, origin: &str) -> Result<BTreeMap<String, Vec<Binding>>> {
    let raw: BTreeMap<String, RawTable> = toml::from_str(text).map_err(|e| {
        Error::Input(format!(
            "keymap {origin}: {}",
            e.to_string().trim().replace('\n', " ")
        ))
    })?;
    let mut out = BTreeMap::new();
    for (pane, table) in raw {
        if !PANES.contains(&pane.as_str()) {
            return Err(Error::Input(format!(
                "keymap {origin}: unknown table `[{pane}]` (tables: {})",
                PANES.join(", ")
            )));
        }
        let mut bs: Vec<Binding> = Vec::new();
        for b in table.keys {
            if b.on.is_empty() {
                return Err(Error::Input(format!(
                    "keymap {origin}, [{pane}]: the binding of `{}` has no keys (`on = []`)",
                    action_name(b.run)
                )));
            }
            let keys =
                b.on.iter()
                    .map(|k| {
                        Key::parse(k)
                            .map_err(|m| Error::Input(format!("keymap {origin}, [{pane}]: {m}")))
                    })
                    .collect::<Result<Vec<_>>>()?;
            // one file binds a key once per table: a second binding would silently win
            if let Some((k, other)) = keys.iter().find_map(|k| {
                bs.iter()
                    .find(|o| o.keys.contains(k))
                    .map(|o| (k, o.action))
                    .or_else(|| (keys.iter().filter(|x| *x == k).count() > 1).then_some((k, b.run)))
            }) {
                return Err(Error::Input(format!(
                    "keymap {origin}, [{pane}]: key `{k}` is bound twice (to `{}` and `{}`)",
                    action_name(other),
                    action_name(b.run)
                )));
            }
            bs.push(Binding {
                keys,
                action: b.run,
                desc: b.desc,
            });
        }
        out.insert(pane, bs);
    }
    Ok(out)
}

impl Keymap {
    /// The built-in keymap.
    #[allow(
        clippy::expect_used,
        reason = "the built-in keymap is compiled in, and a unit test parses it"
    )]
    pub fn default_map() -> Keymap {
        Keymap {
            panes: parse_tables(DEFAULT, "keymaps/default.toml")
                .expect("the built-in keymap parses"),
        }
    }

    /// The built-in keymap overridden by the file at `path`.
    pub fn load(path: Option<&Path>) -> Result<Keymap> {
        let mut map = Keymap::default_map();
        if let Some(p) = path {
            let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
            map.merge(parse_tables(&text, &p.display().to_string())?);
        }
        Ok(map)
    }

    /// User bindings replace the built-in binding of each key they name.
    fn merge(&mut self, user: BTreeMap<String, Vec<Binding>>) {
        for (pane, bindings) in user {
            let table = self.panes.entry(pane).or_default();
            for b in bindings {
                for t in table.iter_mut() {
                    t.keys.retain(|k| !b.keys.contains(k));
                }
                table.retain(|t| !t.keys.is_empty());
                table.push(b);
            }
        }
    }

    /// The action of a key in `pane` (its own table first, then `global`).
    pub fn action(&self, pane: &str, key: Key) -> Option<Action> {
        let find = |p: &str| {
            self.panes
                .get(p)
                .and_then(|bs| {
                    bs.iter()
                        .find(|b| b.keys.iter().any(|k| *k == key || loose_eq(k, &key)))
                })
                .map(|b| b.action)
        };
        find(pane).or_else(|| find("global"))
    }

    /// Help lines for `pane` and the global table: `(keys, description)`.
    pub fn help(&self, pane: &str) -> Vec<(String, String)> {
        [pane, "global"]
            .iter()
            .filter_map(|p| self.panes.get(*p))
            .flatten()
            .map(|b| {
                (
                    b.keys
                        .iter()
                        .map(Key::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                    b.desc.clone(),
                )
            })
            .collect()
    }

    /// The whole effective keymap as text (`treevis keys`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for pane in PANES {
            if let Some(bs) = self.panes.get(pane) {
                s.push_str(&format!("[{pane}]\n"));
                for b in bs {
                    let keys = b
                        .keys
                        .iter()
                        .map(Key::to_string)
                        .collect::<Vec<_>>()
                        .join(" ");
                    s.push_str(&format!(
                        "  {keys:<20} {:<14} {}\n",
                        format!("{:?}", b.action),
                        b.desc
                    ));
                }
            }
        }
        s
    }
}

/// Terminals report `G` as Shift+G; bindings name the character only.
fn loose_eq(a: &Key, b: &Key) -> bool {
    a.ctrl == b.ctrl
        && a.alt == b.alt
        && matches!((a.code, b.code), (KeyCode::Char(x), KeyCode::Char(y)) if x == y)
}

/// The user's keymap file: `$XDG_CONFIG_HOME/treevis/keymap.toml` (or `~/.config/...`).
pub fn user_keymap_path() -> Option<std::path::PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
        .map(|d| d.join("treevis/keymap.toml"))
        .filter(|p| p.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> Key {
        Key::parse(s).unwrap()
    }

    #[test]
    fn default_keymap_binds_arrows_and_hjkl() {
        let m = Keymap::default_map();
        for (a, b, act) in [
            ("Left", "h", Action::Left),
            ("Down", "j", Action::Down),
            ("Up", "k", Action::Up),
            ("Right", "l", Action::Right),
        ] {
            assert_eq!(m.action("gallery", key(a)), Some(act));
            assert_eq!(m.action("gallery", key(b)), Some(act));
        }
        assert_eq!(
            m.action("tree", key("q")),
            Some(Action::Quit),
            "global fallback"
        );
        assert_eq!(m.action("tree", key("Enter")), Some(Action::Expand));
        assert_eq!(m.action("gallery", key("z")), None);
    }

    #[test]
    fn user_entries_override_and_help_follows() {
        let mut m = Keymap::default_map();
        m.merge(
            parse_tables(
                "[gallery]\nkeys = [{ on = [\"h\"], run = \"first\", desc = \"jump home\" }]\n",
                "user",
            )
            .unwrap(),
        );
        assert_eq!(m.action("gallery", key("h")), Some(Action::First));
        assert_eq!(
            m.action("gallery", key("Left")),
            Some(Action::Left),
            "other keys of the old binding stay"
        );
        assert!(m
            .help("gallery")
            .iter()
            .any(|(k, d)| k == "h" && d == "jump home"));
        assert!(m.describe().contains("jump home"));
    }

    #[test]
    fn bad_keymaps_are_clear_errors() {
        assert!(parse_tables("[nope]\nkeys = []", "u")
            .unwrap_err()
            .to_string()
            .contains("unknown table `[nope]`"));
        assert!(
            parse_tables("[tree]\nkeys = [{ on = [\"Hyper\"], run = \"up\" }]", "u")
                .unwrap_err()
                .to_string()
                .contains("unknown key `Hyper`")
        );
        assert!(
            parse_tables("[tree]\nkeys = [{ on = [\"u\"], run = \"fly\" }]", "u")
                .unwrap_err()
                .to_string()
                .contains("fly")
        );
        assert_eq!(
            key("C-c"),
            Key {
                code: KeyCode::Char('c'),
                ctrl: true,
                alt: false
            }
        );
    }
}
