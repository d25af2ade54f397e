//! A protobuf text-format reader, enough for Caffe's `.prototxt` files: `name: value`
//! fields, nested `name { ... }` (or `name: { ... }`, `name < ... >`) messages, repeated
//! fields, `#` comments, quoted strings with escapes, numbers and enum identifiers. The
//! result is a field tree; [`super::net`] reads Caffe's messages from it by field name.

use crate::error::{Error, Result};

/// A scalar as written: a string literal, or a bare token (number, enum name, `true`).
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Str(String),
    Bare(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Message(Message),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
    /// 1-based line of the field's name, for messages.
    pub line: usize,
}

/// A message: its fields in file order (repeated fields appear several times).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    pub fields: Vec<Field>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Number(String),
    Str(String),
    Punct(char),
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    line: usize,
    origin: &'a str,
}

impl<'a> Lexer<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Input(format!("{}:{}: {msg}", self.origin, self.line))
    }

    fn skip_space(&mut self) {
        while self.i < self.s.len() {
            match self.s[self.i] {
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                b' ' | b'\t' | b'\r' | b',' | b';' => self.i += 1,
                b'#' => {
                    while self.i < self.s.len() && self.s[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// The next token and its line, or `None` at the end.
    fn next(&mut self) -> Result<Option<(Tok, usize)>> {
        self.skip_space();
        let Some(&c) = self.s.get(self.i) else {
            return Ok(None);
        };
        let line = self.line;
        let start = self.i;
        let tok =
            match c {
                b'{' | b'}' | b':' | b'<' | b'>' | b'[' | b']' => {
                    self.i += 1;
                    Tok::Punct(c as char)
                }
                b'"' | b'\'' => Tok::Str(self.string(c)?),
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    while self
                        .s
                        .get(self.i)
                        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
                    {
                        self.i += 1;
                    }
                    Tok::Ident(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
                }
                c if c.is_ascii_digit() || c == b'-' || c == b'+' || c == b'.' => {
                    self.i += 1;
                    while self.s.get(self.i).is_some_and(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+')
                    }) {
                        self.i += 1;
                    }
                    Tok::Number(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
                }
                c => return Err(self.err(format!("unexpected character `{}`", c as char))),
            };
        Ok(Some((tok, line)))
    }

    fn string(&mut self, quote: u8) -> Result<String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err(self.err("unterminated string"));
            };
            self.i += 1;
            match c {
                b'\n' => return Err(self.err("newline inside a string")),
                c if c == quote => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    out.push(match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'0'..=b'7' => {
                            // up to three octal digits
                            let mut v = (e - b'0') as u32;
                            for _ in 0..2 {
                                match self.s.get(self.i) {
                                    Some(&d @ b'0'..=b'7') => {
                                        v = v * 8 + (d - b'0') as u32;
                                        self.i += 1;
                                    }
                                    _ => break,
                                }
                            }
                            (v & 0xff) as u8
                        }
                        other => other,
                    });
                }
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// How deep messages may nest (a guard against hostile input).
const MAX_DEPTH: usize = 64;

/// Parses a whole text-format file; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Message> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        i: 0,
        line: 1,
        origin,
    };
    let m = message(&mut lx, None, 0)?;
    Ok(m)
}

fn message(lx: &mut Lexer, close: Option<char>, depth: usize) -> Result<Message> {
    if depth > MAX_DEPTH {
        return Err(lx.err("messages nested too deeply"));
    }
    let mut m = Message::default();
    loop {
        let Some((tok, line)) = lx.next()? else {
            return match close {
                None => Ok(m),
                Some(c) => Err(lx.err(format!("missing `{c}` at the end of the file"))),
            };
        };
        let name = match tok {
            Tok::Punct(c) if Some(c) == close => return Ok(m),
            Tok::Ident(n) => n,
            Tok::Punct('[') => {
                // an extension name `[pkg.ext]`
                let mut n = String::new();
                loop {
                    match lx.next()? {
                        Some((Tok::Punct(']'), _)) => break,
                        Some((Tok::Ident(p), _)) => n.push_str(&p),
                        _ => return Err(lx.err("bad extension name")),
                    }
                }
                n
            }
            other => return Err(lx.err(format!("expected a field name, found {other:?}"))),
        };
        let mut t = lx.next()?;
        if matches!(t, Some((Tok::Punct(':'), _))) {
            t = lx.next()?;
        }
        let value = match t {
            Some((Tok::Punct('{'), _)) => Value::Message(message(lx, Some('}'), depth + 1)?),
            Some((Tok::Punct('<'), _)) => Value::Message(message(lx, Some('>'), depth + 1)?),
            Some((Tok::Punct('['), _)) => {
                // a list of scalars: `dim: [1, 3, 227, 227]`
                loop {
                    match lx.next()? {
                        Some((Tok::Punct(']'), _)) => break,
                        Some((Tok::Number(v) | Tok::Ident(v), l)) => m.fields.push(Field {
                            name: name.clone(),
                            value: Value::Scalar(Scalar::Bare(v)),
                            line: l,
                        }),
                        Some((Tok::Str(v), l)) => m.fields.push(Field {
                            name: name.clone(),
                            value: Value::Scalar(Scalar::Str(v)),
                            line: l,
                        }),
                        _ => return Err(lx.err(format!("bad list for `{name}`"))),
                    }
                }
                continue;
            }
            Some((Tok::Str(s), _)) => {
                // adjacent string literals concatenate
                let mut s = s;
                loop {
                    let save = (lx.i, lx.line);
                    match lx.next()? {
                        Some((Tok::Str(more), _)) => s.push_str(&more),
                        _ => {
                            (lx.i, lx.line) = save;
                            break;
                        }
                    }
                }
                Value::Scalar(Scalar::Str(s))
            }
            Some((Tok::Number(v) | Tok::Ident(v), _)) => Value::Scalar(Scalar::Bare(v)),
            Some((other, _)) => {
                return Err(lx.err(format!("expected a value for `{name}`, found {other:?}")))
            }
            None => return Err(lx.err(format!("`{name}` has no value"))),
        };
        m.fields.push(Field { name, value, line });
    }
}

impl Message {
    /// Every value of field `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
        self.fields.iter().filter(move |f| f.name == name)
    }

    /// Every nested message named `name`.
    pub fn messages<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Message> + 'a {
        self.all(name).filter_map(|f| match &f.value {
            Value::Message(m) => Some(m),
            _ => None,
        })
    }

    pub fn message(&self, name: &str) -> Option<&Message> {
        self.fields.iter().find_map(|f| match &f.value {
            Value::Message(m) if f.name == name => Some(m),
            _ => None,
        })
    }

    /// The scalars of field `name`, as written.
    pub fn scalars<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, usize)> + 'a {
        self.all(name).filter_map(|f| match &f.value {
            Value::Scalar(Scalar::Str(s) | Scalar::Bare(s)) => Some((s.as_str(), f.line)),
            _ => None,
        })
    }

    /// The last value of a scalar field (protobuf's rule for a repeated optional field).
    pub fn scalar(&self, name: &str) -> Option<(&str, usize)> {
        self.fields.iter().rev().find_map(|f| match &f.value {
            Value::Scalar(Scalar::Str(s) | Scalar::Bare(s)) if f.name == name => {
                Some((s.as_str(), f.line))
            }
            _ => None,
        })
    }

    /// Field names that are not among `known` (for clear errors on typos).
    pub fn unknown<'a>(&'a self, known: &[&str]) -> Option<&'a Field> {
        self.fields
            .iter()
            .find(|f| !known.contains(&f.name.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_caffe_style_text() {
        let t = r#"
name: "CaffeNet"  # a comment
input: "data"
input_dim: 10 input_dim: 3
input_shape { dim: [1, 3, 227, 227] }
layer {
  name: 'conv1' type: "Convolution"
  bottom: "data" top: "conv1"
  convolution_param: { num_output: 96 kernel_size: 11 stride: 4 }
  param < lr_mult: 1.0 >
  weight: -1.5e-3
}
"#;
        let m = parse(t, "t").unwrap();
        assert_eq!(m.scalar("name"), Some(("CaffeNet", 2)));
        let dims: Vec<&str> = m.scalars("input_dim").map(|s| s.0).collect();
        assert_eq!(dims, ["10", "3"]);
        let shape: Vec<&str> = m
            .message("input_shape")
            .unwrap()
            .scalars("dim")
            .map(|s| s.0)
            .collect();
        assert_eq!(shape, ["1", "3", "227", "227"]);
        let l = m.message("layer").unwrap();
        assert_eq!(l.scalar("name").unwrap().0, "conv1");
        assert_eq!(
            l.message("convolution_param")
                .unwrap()
                .scalar("kernel_size")
                .unwrap()
                .0,
            "11"
        );
        assert_eq!(l.scalar("weight").unwrap().0, "-1.5e-3");
        assert!(l.message("param").is_some());
    }

    #[test]
    fn errors_name_the_line() {
        for (bad, want) in [
            ("layer {\n name: \"x\"\n", "missing `}`"),
            ("a: \"open\n", ":1: newline inside a string"),
            ("a {\n b: }\n", ":2: expected a value"),
            ("a: @", "unexpected character"),
            ("}", "expected a field name"),
        ] {
            let e = parse(bad, "net.prototxt").unwrap_err().to_string();
            assert!(
                e.contains("net.prototxt") && e.contains(want),
                "{bad:?}: {e}"
            );
        }
        let deep = "a {".repeat(100);
        assert!(parse(&deep, "d")
            .unwrap_err()
            .to_string()
            .contains("too deeply"));
    }
}
