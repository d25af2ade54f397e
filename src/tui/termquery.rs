//! Asks the terminal what it can draw: kitty graphics, sixel (DA1 attribute 4) and the
//! cell size in pixels (`CSI 16 t`), closed by a status report (`CSI 5 n`) that every
//! VT100-style terminal answers.
//!
//! ratatui-image has such a query, but it reads stdin on a thread of its own and leaves that
//! thread behind when the terminal is slow to answer (its timeout is 2 s): the thread then
//! swallows the user's first keys and later switches raw mode off under the app. Here the
//! answer is read on the calling thread, with `poll` and a deadline, so that nothing reads
//! the terminal once [`ask`] returns but the app's own input thread.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// What the terminal said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// It answered the kitty graphics query with OK.
    pub kitty: bool,
    /// Its primary device attributes include 4 (sixel graphics).
    pub sixel: bool,
    /// Cell size in pixels (width, height), from `CSI 6 ; h ; w t`.
    pub cell: Option<(u16, u16)>,
    /// The closing status report arrived: every answer the terminal meant to give is in.
    pub complete: bool,
    /// Bytes that were no answer (keys typed while the query ran); they are dropped.
    pub stray: usize,
}

/// The query, wrapped for tmux's passthrough when `tmux` (which must then allow it).
pub fn query(tmux: bool) -> String {
    let (start, esc, end) = if tmux {
        ("\x1bPtmux;", "\x1b\x1b", "\x1b\\")
    } else {
        ("", "\x1b", "")
    };
    format!("{start}{esc}_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA{esc}\\{esc}[c{esc}[16t{esc}[5n{end}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Str {
    Apc,
    Osc,
    Dcs,
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Ground,
    Esc,
    Csi(Vec<u8>),
    /// A string sequence; the flag says the last byte was ESC (maybe the start of ST).
    Str(Str, Vec<u8>, bool),
}

/// Reads the answers byte by byte, in whatever pieces they arrive.
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
    reply: Reply,
}

impl Parser {
    pub fn push(&mut self, b: u8) {
        self.state = match std::mem::take(&mut self.state) {
            State::Ground if b == 0x1b => State::Esc,
            State::Ground => {
                self.reply.stray += 1;
                State::Ground
            }
            State::Esc => match b {
                b'[' => State::Csi(Vec::new()),
                b'_' => State::Str(Str::Apc, Vec::new(), false),
                b']' => State::Str(Str::Osc, Vec::new(), false),
                b'P' => State::Str(Str::Dcs, Vec::new(), false),
                0x1b => State::Esc,
                _ => {
                    self.reply.stray += 2;
                    State::Ground
                }
            },
            State::Csi(mut body) => {
                if (0x40..=0x7e).contains(&b) {
                    self.csi(&body, b);
                    State::Ground
                } else if b == 0x1b || body.len() > 256 {
                    self.reply.stray += body.len() + 2;
                    if b == 0x1b {
                        State::Esc
                    } else {
                        State::Ground
                    }
                } else {
                    body.push(b);
                    State::Csi(body)
                }
            }
            State::Str(kind, mut body, esc) => {
                if esc && b == b'\\' || kind == Str::Osc && b == 0x07 {
                    if kind == Str::Apc && body.starts_with(b"Gi=31;OK") {
                        self.reply.kitty = true;
                    }
                    State::Ground
                } else if esc {
                    // ESC that did not start ST: a new sequence begins.
                    self.reply.stray += body.len() + 2;
                    State::Esc.then(self, b)
                } else if b == 0x1b {
                    State::Str(kind, body, true)
                } else {
                    if body.len() < 256 {
                        body.push(b);
                    }
                    State::Str(kind, body, false)
                }
            }
        };
    }

    fn csi(&mut self, body: &[u8], fin: u8) {
        let text = String::from_utf8_lossy(body);
        match fin {
            b'c' if text.starts_with('?') => {
                self.reply.sixel |= text[1..].split(';').any(|p| p == "4");
            }
            b't' => {
                let p: Vec<Option<u16>> = text.split(';').map(|s| s.parse().ok()).collect();
                if let [Some(6), Some(h), Some(w)] = p[..] {
                    if w > 0 && h > 0 {
                        self.reply.cell = Some((w, h));
                    }
                }
            }
            b'n' if text == "0" => self.reply.complete = true,
            _ => {}
        }
    }

    pub fn reply(&self) -> &Reply {
        &self.reply
    }
}

impl State {
    /// Feeds `b` to this state (used when a byte ends one sequence and begins another).
    fn then(self, p: &mut Parser, b: u8) -> State {
        p.state = self;
        p.push(b);
        std::mem::take(&mut p.state)
    }
}

/// After a query that timed out, the terminal's answers may still come, and the input
/// thread would read them as keys: crossterm drops the CSI answers, but the kitty answer
/// `ESC _ G i = 3 1 ; O K ESC \` arrives as Alt+`_`, `G`, `i`, … Alt+`\`, and `G` is a
/// binding. This drops one such run of keys, within a while of the start.
#[derive(Debug)]
pub struct LateAnswer {
    until: Option<Instant>,
    /// Keys dropped so far inside an answer, once its Alt+`_` came.
    inside: Option<usize>,
}

impl LateAnswer {
    /// How long after the start an answer is still expected.
    const WINDOW: Duration = Duration::from_secs(30);
    /// The most keys one answer can make (`Gi=31;OK` plus margin).
    const LONGEST: usize = 32;

    /// `timed_out`: the query went unanswered (else this never drops anything).
    pub fn new(timed_out: bool) -> LateAnswer {
        LateAnswer {
            until: timed_out.then(|| Instant::now() + Self::WINDOW),
            inside: None,
        }
    }

    /// Whether `key` belongs to a late answer (and is to be dropped).
    pub fn swallow(&mut self, key: &KeyEvent) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        let alt = |c| key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::ALT);
        if let Some(n) = self.inside {
            if alt('\\') || n + 1 >= Self::LONGEST {
                // one answer only
                self.until = None;
            }
            self.inside = Some(n + 1);
            return true;
        }
        if Instant::now() > until {
            self.until = None;
            return false;
        }
        if alt('_') {
            self.inside = Some(0);
            return true;
        }
        false
    }
}

/// Sends the query and reads the answers until the status report or `timeout`. The
/// terminal must be in raw mode; no other thread may read stdin meanwhile. The answers are
/// read from the file descriptor one byte at a time (they are short), so that nothing the
/// user types after them is taken from the kernel's buffer, where the input thread finds it.
pub fn ask(tmux: bool, timeout: Duration) -> io::Result<Reply> {
    let mut out = io::stdout().lock();
    out.write_all(query(tmux).as_bytes())?;
    out.flush()?;
    drop(out);
    let stdin = io::stdin();
    let fd = stdin.as_fd();
    let deadline = Instant::now() + timeout;
    let mut parser = Parser::default();
    while !parser.reply.complete {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let ts = rustix::event::Timespec::try_from(left).unwrap_or(rustix::event::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        });
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&ts)) {
            Ok(0) => break,
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let mut byte = [0u8; 1];
        match rustix::io::read(fd, &mut byte) {
            Ok(0) => break,
            Ok(_) => parser.push(byte[0]),
            Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(parser.reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Reply {
        let mut p = Parser::default();
        for &b in bytes {
            p.push(b);
        }
        p.reply
    }

    #[test]
    fn xterm_vt340_answers() {
        let r = parse(b"\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[6;15;9t\x1b[0n");
        assert_eq!(
            r,
            Reply {
                kitty: false,
                sixel: true,
                cell: Some((9, 15)),
                complete: true,
                stray: 0
            }
        );
    }

    #[test]
    fn kitty_answers_and_pieces_do_not_matter() {
        let all = b"\x1b_Gi=31;OK\x1b\\\x1b[?62;c\x1b[6;20;10t\x1b[0n";
        let whole = parse(all);
        assert!(whole.kitty && !whole.sixel && whole.complete);
        assert_eq!(whole.cell, Some((10, 20)));
        // the same bytes split anywhere
        let mut p = Parser::default();
        for chunk in all.chunks(3) {
            for &b in chunk {
                p.push(b);
            }
        }
        assert_eq!(p.reply, whole);
    }

    #[test]
    fn errors_other_sequences_and_typed_keys_are_not_answers() {
        let r =
            parse(b"q\x1b_Gi=31;ENOTSUPPORTED\x1b\\\x1b]11;rgb:0/0/0\x07\x1b[?1;2c\x1bOAj\x1b[0n");
        assert!(!r.kitty && !r.sixel && r.complete);
        assert_eq!(r.cell, None);
        assert_eq!(r.stray, 1 + 3 + 1, "{r:?}");
        // no status report: not complete
        assert!(!parse(b"\x1b[?62;4c").complete);
        // a DA1 attribute 14 or 40 is not sixel
        assert!(!parse(b"\x1b[?62;14;40c").sixel);
        // a cell size of zero is none
        assert_eq!(parse(b"\x1b[6;0;0t").cell, None);
    }

    #[test]
    fn a_late_kitty_answer_is_dropped_once_and_typed_keys_are_not() {
        let key = |c, m| KeyEvent::new(KeyCode::Char(c), m);
        let plain = |c| key(c, KeyModifiers::NONE);
        let alt = |c| key(c, KeyModifiers::ALT);
        // the answer as crossterm reads it
        let answer: Vec<KeyEvent> = std::iter::once(alt('_'))
            .chain("Gi=31;OK".chars().map(plain))
            .chain([alt('\\')])
            .collect();
        let mut late = LateAnswer::new(true);
        assert!(!late.swallow(&plain('G')), "a typed key before the answer");
        assert!(answer.iter().all(|k| late.swallow(k)));
        assert!(!late.swallow(&plain('G')), "a typed key after it");
        assert!(!late.swallow(&alt('_')), "only one answer is expected");
        // an answered query drops nothing
        let mut answered = LateAnswer::new(false);
        assert!(answer.iter().all(|k| !answered.swallow(k)));
        // an answer cut short ends within a bound
        let mut cut = LateAnswer::new(true);
        assert!(cut.swallow(&alt('_')));
        let dropped = (0..100).take_while(|_| cut.swallow(&plain('x'))).count();
        assert_eq!(dropped, LateAnswer::LONGEST);
    }

    #[test]
    fn tmux_wraps_the_query_for_passthrough() {
        let q = query(true);
        assert!(q.starts_with("\x1bPtmux;\x1b\x1b_G") && q.ends_with("\x1b\x1b[5n\x1b\\"));
        let inner = &q[7..q.len() - 2];
        assert!(!inner.replace("\x1b\x1b", "").contains('\x1b'), "{q:?}");
    }
}
