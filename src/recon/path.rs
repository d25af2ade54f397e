//! Paths through the feature hierarchy: `conv4:285/conv3:303/conv2:5`, top node first. The
//! textual form splits on `/` and on the *last* `:` of each node, so it works for any blob
//! name (`features.10:7`, `conv5_3:12`, `inception-4a:3`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One node of a path: a channel of a blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    pub blob: String,
    pub channel: usize,
}

/// A path of nodes from a root down the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Path(pub Vec<Node>);

impl Path {
    pub fn root(blob: &str, channel: usize) -> Path {
        Path(vec![Node {
            blob: blob.to_string(),
            channel,
        }])
    }

    pub fn nodes(&self) -> &[Node] {
        &self.0
    }

    #[allow(
        clippy::expect_used,
        reason = "a Path is never empty: parsing and `root` make at least one node, and no method removes the last"
    )]
    pub fn last(&self) -> &Node {
        self.0.last().expect("paths are never empty")
    }

    /// This path extended by one node.
    pub fn child(&self, blob: &str, channel: usize) -> Path {
        let mut v = self.0.clone();
        v.push(Node {
            blob: blob.to_string(),
            channel,
        });
        Path(v)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A file-name-safe form (`conv4_285-conv3_303`, other characters replaced).
    pub fn file_stem(&self) -> String {
        self.0
            .iter()
            .map(|n| {
                let b: String = n
                    .blob
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect();
                format!("{b}_{}", n.channel)
            })
            .collect::<Vec<_>>()
            .join("--")
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            write!(f, "{}:{}", n.blob, n.channel)?;
        }
        Ok(())
    }
}

impl FromStr for Path {
    type Err = Error;

    fn from_str(s: &str) -> Result<Path, Error> {
        let s = s.trim();
        if s.is_empty() {
            return Err(Error::path(
                s,
                "empty path; write it as blob:channel[/blob:channel...]",
            ));
        }
        let nodes = s
            .split('/')
            .map(|part| {
                let (blob, ch) = part.rsplit_once(':').ok_or_else(|| {
                    Error::path(
                        s,
                        format!("node `{part}` has no `:channel` (write it as blob:channel)"),
                    )
                })?;
                if blob.is_empty() {
                    return Err(Error::path(s, format!("node `{part}` has no blob name")));
                }
                let channel = ch.parse::<usize>().map_err(|_| {
                    Error::path(s, format!("node `{part}`: `{ch}` is not a channel number"))
                })?;
                Ok(Node {
                    blob: blob.to_string(),
                    channel,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Path(nodes))
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Path, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_any_blob_name() {
        for s in [
            "conv4:285/conv3:303/conv2:5",
            "features.10:7/features.8:0",
            "conv5_3:1",
            "a-b:c:3",
        ] {
            let p: Path = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        let p: Path = "a-b:c:3".parse().unwrap();
        assert_eq!(p.0[0].blob, "a-b:c");
    }

    #[test]
    fn rejects_malformed_paths_with_a_reason() {
        for (s, needle) in [
            ("", "empty"),
            ("conv4", "no `:channel`"),
            ("conv4:x", "not a channel"),
            (":3", "no blob"),
            ("conv4:1//conv3:2", "no `:channel`"),
        ] {
            let e = s.parse::<Path>().unwrap_err().to_string();
            assert!(e.contains(needle), "{s}: {e}");
        }
    }

    #[test]
    fn file_stems_are_safe() {
        let p: Path = "features.10:7/x/y:2"
            .parse()
            .unwrap_or_else(|_| "features.10:7/y:2".parse().unwrap());
        assert!(!p.file_stem().contains('/'));
    }
}
