//! Key bindings: `keymaps/default.toml` (built in), overridden entry by entry by a user
//! file; one table per [`Layer`] (a pane or an overlay) plus `global`. Help, `treevis keys`
//! and the keys that titles and the status bar name ([`Keymap::hint`]) are generated from
//! it, so they follow a user's rebinding.

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
    /// The selected node's parents (drill up; choosing one re-roots the tree).
    Parents,
    /// Children ranking: abs -> pos (excitatory) -> neg (inhibitory).
    CycleSign,
    /// Children with their ablation drop too.
    ToggleAblation,
    /// The selected node under every rule and multiplier mode.
    Compare,
    /// The randomization sanity check of the selected node.
    Sanity,
}

/// A table of the keymap: the keys of one pane or overlay. A key is looked up in the
/// layers in effect, top first, then in `Global`. The names are the tables' names in a
/// keymap file (`[tree]`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Global,
    Gallery,
    Overview,
    Tree,
    /// The help overlay (no keys of its own by default).
    Help,
    /// The feature-cache grid overlay (no keys of its own by default: those of the pane
    /// below it apply).
    Features,
    /// The list of a tree node's parents (modal: its own keys and `global`).
    Parents,
    /// The rules compared on a tree node (modal).
    Compare,
    /// The sanity check of a tree node (modal).
    Sanity,
}

impl Layer {
    pub const ALL: [Layer; 9] = [
        Layer::Global,
        Layer::Gallery,
        Layer::Overview,
        Layer::Tree,
        Layer::Help,
        Layer::Features,
        Layer::Parents,
        Layer::Compare,
        Layer::Sanity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Layer::Global => "global",
            Layer::Gallery => "gallery",
            Layer::Overview => "overview",
            Layer::Tree => "tree",
            Layer::Help => "help",
            Layer::Features => "features",
            Layer::Parents => "parents",
            Layer::Compare => "compare",
            Layer::Sanity => "sanity",
        }
    }

    pub fn from_name(s: &str) -> Option<Layer> {
        Layer::ALL.into_iter().find(|l| l.name() == s)
    }
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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

/// The effective keymap: per layer, its bindings.
#[derive(Debug, Clone)]
pub struct Keymap {
    pub layers: BTreeMap<Layer, Vec<Binding>>,
}

/// An action as a keymap file names it (`cycle_method`).
fn action_name(a: Action) -> String {
    serde_json::to_string(&a)
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|_| format!("{a:?}"))
}

fn parse_tables(text: &str, origin: &str) -> Result<BTreeMap<Layer, Vec<Binding>>> {
    let raw: BTreeMap<String, RawTable> = toml::from_str(text).map_err(|e| {
        Error::Input(format!(
            "keymap {origin}: {}",
            e.to_string().trim().replace('\n', " ")
        ))
    })?;
    let mut out = BTreeMap::new();
    for (pane, table) in raw {
        let Some(layer) = Layer::from_name(&pane) else {
            return Err(Error::Input(format!(
                "keymap {origin}: unknown table `[{pane}]` (tables: {})",
                Layer::ALL.map(Layer::name).join(", ")
            )));
        };
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
        out.insert(layer, bs);
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
            layers: parse_tables(DEFAULT, "keymaps/default.toml")
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

    /// User bindings replace the built-in binding of each key they name, and come first
    /// in their table: help lists them first and a hint names the user's key.
    fn merge(&mut self, user: BTreeMap<Layer, Vec<Binding>>) {
        for (layer, bindings) in user {
            let table = self.layers.entry(layer).or_default();
            for t in table.iter_mut() {
                t.keys
                    .retain(|k| !bindings.iter().any(|b| b.keys.contains(k)));
            }
            table.retain(|t| !t.keys.is_empty());
            table.splice(0..0, bindings);
        }
    }

    /// The bindings of `layers` (top first) and then of `global`, each table once.
    fn tables<'a>(&'a self, layers: &[Layer]) -> impl Iterator<Item = &'a Binding> + 'a {
        let mut order: Vec<Layer> = Vec::new();
        for l in layers.iter().copied().chain([Layer::Global]) {
            if !order.contains(&l) {
                order.push(l);
            }
        }
        order
            .into_iter()
            .filter_map(move |l| self.layers.get(&l))
            .flatten()
    }

    /// The action of a key in `layer` (its own table first, then `global`).
    pub fn action(&self, layer: Layer, key: Key) -> Option<Action> {
        self.action_in(&[layer], key)
    }

    /// The action of a key where `layers` are in effect (top first, then `global`).
    pub fn action_in(&self, layers: &[Layer], key: Key) -> Option<Action> {
        self.tables(layers)
            .find(|b| b.keys.iter().any(|k| *k == key || loose_eq(k, &key)))
            .map(|b| b.action)
    }

    /// The key that runs `action` where `layers` are in effect: the first key of its first
    /// binding in the first table that has one.
    pub fn key_for(&self, layers: &[Layer], action: Action) -> Option<Key> {
        self.tables(layers)
            .find(|b| b.action == action)
            .and_then(|b| b.keys.first().copied())
    }

    /// The key to name for `action` in `layer` in a title or a hint (`Enter`, `h`), or
    /// `unbound`.
    pub fn hint(&self, layer: Layer, action: Action) -> String {
        self.hint_in(&[layer], action)
    }

    /// [`Keymap::hint`] where `layers` are in effect (top first).
    pub fn hint_in(&self, layers: &[Layer], action: Action) -> String {
        self.key_for(layers, action)
            .map(|k| k.to_string())
            .unwrap_or_else(|| "unbound".into())
    }

    /// Help lines for `layer` and the global table: `(keys, description)`.
    pub fn help(&self, layer: Layer) -> Vec<(String, String)> {
        self.help_in(&[layer])
    }

    /// Help lines for `layers` (top first) and the global table.
    pub fn help_in(&self, layers: &[Layer]) -> Vec<(String, String)> {
        self.tables(layers)
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
        for (layer, bs) in &self.layers {
            s.push_str(&format!("[{layer}]\n"));
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
            assert_eq!(m.action(Layer::Gallery, key(a)), Some(act));
            assert_eq!(m.action(Layer::Gallery, key(b)), Some(act));
        }
        assert_eq!(
            m.action(Layer::Tree, key("q")),
            Some(Action::Quit),
            "global fallback"
        );
        assert_eq!(m.action(Layer::Tree, key("Enter")), Some(Action::Expand));
        assert_eq!(m.action(Layer::Gallery, key("z")), None);
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
        assert_eq!(m.action(Layer::Gallery, key("h")), Some(Action::First));
        assert_eq!(
            m.action(Layer::Gallery, key("Left")),
            Some(Action::Left),
            "other keys of the old binding stay"
        );
        assert!(m
            .help(Layer::Gallery)
            .iter()
            .any(|(k, d)| k == "h" && d == "jump home"));
        assert!(m.describe().contains("jump home"));
    }

    #[test]
    fn hints_name_the_first_key_and_follow_a_rebinding() {
        let mut m = Keymap::default_map();
        assert_eq!(m.hint(Layer::Tree, Action::Expand), "Enter");
        assert_eq!(m.hint(Layer::Tree, Action::Collapse), "h");
        assert_eq!(m.hint(Layer::Tree, Action::Help), "?", "global fallback");
        assert_eq!(m.hint(Layer::Gallery, Action::Expand), "unbound");
        // an overlay's (empty) table on top: the pane's keys still apply
        assert_eq!(
            m.hint_in(&[Layer::Features, Layer::Overview], Action::Features),
            "f"
        );
        assert_eq!(
            m.action_in(&[Layer::Features, Layer::Tree], key("x")),
            Some(Action::Remove)
        );
        m.merge(
            parse_tables(
                "[tree]\nkeys = [{ on = [\"o\"], run = \"expand\" }, \
                 { on = [\"Enter\"], run = \"toggle_input\" }]\n\
                 [help]\nkeys = [{ on = [\"j\"], run = \"down\" }]\n",
                "user",
            )
            .unwrap(),
        );
        assert_eq!(
            m.hint(Layer::Tree, Action::Expand),
            "o",
            "the user's key first"
        );
        assert_eq!(
            m.action(Layer::Tree, key("Enter")),
            Some(Action::ToggleInput)
        );
        assert_eq!(m.action(Layer::Tree, key("l")), Some(Action::Expand));
        assert_eq!(
            m.action_in(&[Layer::Help, Layer::Tree], key("j")),
            Some(Action::Down)
        );
        assert!(m.describe().contains("[help]"));
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
