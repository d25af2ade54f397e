//! Asks the terminal what it can draw: kitty graphics, its name and version (XTVERSION,
//! `CSI > q`), sixel (DA1 attribute 4) and the cell size in pixels (`CSI 16 t`), closed by a
//! status report (`CSI 5 n`) that every VT100-style terminal answers. [`choose`] makes a
//! protocol of the answer.
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
use ratatui_image::picker::ProtocolType;

/// What the terminal said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// It answered the kitty graphics query with OK.
    pub kitty: bool,
    /// Its name and version, where it answered XTVERSION.
    pub xtversion: Option<XtVersion>,
    /// Its primary device attributes include 4 (sixel graphics).
    pub sixel: bool,
    /// Cell size in pixels (width, height), from `CSI 6 ; h ; w t`.
    pub cell: Option<(u16, u16)>,
    /// The closing status report arrived: every answer the terminal meant to give is in.
    pub complete: bool,
    /// Bytes that were no answer (keys typed while the query ran); they are dropped.
    pub stray: usize,
}

/// A terminal's XTVERSION answer (`DCS > | text ST`): `kitty(0.26.5)`, `XTerm(379)`,
/// `WezTerm 20240203-110809-5046fc22`, `tmux 3.3a`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XtVersion {
    pub name: String,
    pub version: String,
}

impl XtVersion {
    /// `text` as terminals write it: `name(version)` or `name version`.
    pub fn parse(text: &str) -> XtVersion {
        let text = text.trim();
        let (name, version) = match text.split_once('(') {
            Some((name, rest)) if rest.ends_with(')') => (name, &rest[..rest.len() - 1]),
            _ => text.split_once(' ').unwrap_or((text, "")),
        };
        XtVersion {
            name: name.trim().to_string(),
            version: version.trim().to_string(),
        }
    }

    /// The version's first three numbers (`0.26.5`: `[0, 26, 5]`, `1.2`: `[1, 2, 0]`);
    /// `None` where it does not begin with a number.
    pub fn numbers(&self) -> Option<[u32; 3]> {
        let mut out = [0; 3];
        for (i, part) in self.version.split('.').take(3).enumerate() {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            match digits.parse() {
                Ok(n) => out[i] = n,
                Err(_) if i == 0 => return None,
                Err(_) => break,
            }
            if digits.len() < part.len() {
                break;
            }
        }
        Some(out)
    }
}

/// The first kitty that draws unicode placeholders (`U=1`, kitty 0.28.0): ratatui-image
/// places kitty images with nothing else, and an older kitty rejects the whole command
/// ("Malformed GraphicsCommand control block, invalid key character: 0x55"), so that no
/// picture shows at all.
pub const KITTY_PLACEHOLDERS: [u32; 3] = [0, 28, 0];

/// The image protocol an answer allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// `None`: none from the answer (half-blocks, or what the environment hints).
    pub protocol: Option<ProtocolType>,
    /// Why the kitty graphics the terminal offers are not used, in a few words.
    pub passed_over: Option<String>,
}

/// Picks the protocol from the answer. `distrusted`: the environment names a terminal whose
/// sixel and kitty images are not trusted (WezTerm, Konsole), as ratatui-image does.
///
/// Kitty graphics need unicode placeholders: a kitty older than 0.28.0 gets none, nor does
/// a terminal that answers the kitty query but not XTVERSION (kitty did not before 0.21.2,
/// and every terminal known to draw the placeholders does). Other names keep kitty graphics
/// as before: WezTerm (it draws no placeholders either) is only known from its environment.
pub fn choose(reply: &Reply, distrusted: bool) -> Choice {
    if distrusted {
        return Choice {
            protocol: None,
            passed_over: None,
        };
    }
    let mut passed_over = None;
    if reply.kitty {
        passed_over = match &reply.xtversion {
            None => Some("kitty graphics without XTVERSION".to_string()),
            Some(v) if v.name.eq_ignore_ascii_case("kitty") => match v.numbers() {
                Some(n) if n < KITTY_PLACEHOLDERS => Some(format!("kitty {} < 0.28", v.version)),
                _ => None,
            },
            Some(_) => None,
        };
        if passed_over.is_none() {
            return Choice {
                protocol: Some(ProtocolType::Kitty),
                passed_over,
            };
        }
    }
    Choice {
        protocol: reply.sixel.then_some(ProtocolType::Sixel),
        passed_over,
    }
}

/// The query, wrapped for tmux's passthrough when `tmux` (which must then allow it).
pub fn query(tmux: bool) -> String {
    let (start, esc, end) = if tmux {
        ("\x1bPtmux;", "\x1b\x1b", "\x1b\\")
    } else {
        ("", "\x1b", "")
    };
    format!(
        "{start}{esc}_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA{esc}\\{esc}[>q{esc}[c{esc}[16t{esc}[5n{end}"
    )
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
                    if let (Str::Dcs, Some(text)) = (kind, body.strip_prefix(b">|")) {
                        self.reply.xtversion =
                            Some(XtVersion::parse(&String::from_utf8_lossy(text)));
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
/// binding; so does the XTVERSION answer `ESC P > | k i t t y … ESC \` (Alt+`P`, `>`, `|`,
/// …). This drops such runs of keys, one of each kind at most, within a while of the start.
#[derive(Debug)]
pub struct LateAnswer {
    until: Option<Instant>,
    /// Inside an answer, once its Alt+`_` or Alt+`P` came: that introducer, the keys the
    /// answer must go on with, and how many it has had.
    inside: Option<(char, &'static str, usize)>,
    /// The introducers of the answers still expected.
    expected: Vec<char>,
}

impl LateAnswer {
    /// How long after the start an answer is still expected.
    const WINDOW: Duration = Duration::from_secs(30);
    /// The most keys one answer can make (a version such as
    /// `>|WezTerm 20240203-110809-5046fc22`, plus margin).
    const LONGEST: usize = 64;

    /// `timed_out`: the query went unanswered (else this never drops anything).
    pub fn new(timed_out: bool) -> LateAnswer {
        LateAnswer {
            until: timed_out.then(|| Instant::now() + Self::WINDOW),
            inside: None,
            expected: vec!['_', 'P'],
        }
    }

    /// Whether `key` belongs to a late answer (and is to be dropped).
    pub fn swallow(&mut self, key: &KeyEvent) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        let alt = |c| key.code == KeyCode::Char(c) && key.modifiers.contains(KeyModifiers::ALT);
        if let Some((intro, start, n)) = self.inside {
            match start.chars().nth(n) {
                Some(c) if key.code != KeyCode::Char(c) => {
                    // not an answer after all (only its introducer is lost): this key is
                    // the user's, and the answer may still come
                    self.inside = None;
                    self.expected.push(intro);
                }
                _ => {
                    self.inside = Some((intro, start, n + 1));
                    if alt('\\') || n + 1 >= Self::LONGEST {
                        self.inside = None;
                        if self.expected.is_empty() {
                            self.until = None;
                        }
                    }
                    return true;
                }
            }
        }
        if Instant::now() > until {
            self.until = None;
            return false;
        }
        for (intro, start) in [('_', "G"), ('P', ">|")] {
            if alt(intro) && self.expected.contains(&intro) {
                self.expected.retain(|&e| e != intro);
                self.inside = Some((intro, start, 0));
                return true;
            }
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
                xtversion: None,
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
        let dropped = std::iter::once(plain('G'))
            .chain(std::iter::repeat(plain('x')))
            .take(100)
            .take_while(|k| cut.swallow(k))
            .count();
        assert_eq!(dropped, LateAnswer::LONGEST);
    }

    #[test]
    fn a_late_xtversion_answer_is_dropped_and_lookalikes_are_not() {
        let key = |c, m| KeyEvent::new(KeyCode::Char(c), m);
        let plain = |c| key(c, KeyModifiers::NONE);
        let alt = |c| key(c, KeyModifiers::ALT | KeyModifiers::SHIFT);
        let keys = |text: &str| text.chars().map(plain).collect::<Vec<_>>();
        let answer = |name: &str| -> Vec<KeyEvent> {
            std::iter::once(alt('P'))
                .chain(keys(name))
                .chain([alt('\\')])
                .collect()
        };
        let kitty: Vec<KeyEvent> = std::iter::once(alt('_'))
            .chain(keys("Gi=31;OK"))
            .chain([alt('\\')])
            .collect();
        // both answers, in the order kitty gives them, and then nothing more
        let mut late = LateAnswer::new(true);
        assert!(kitty.iter().all(|k| late.swallow(k)));
        assert!(answer(">|kitty(0.26.5)").iter().all(|k| late.swallow(k)));
        assert!(!late.swallow(&plain('k')));
        assert!(!late.swallow(&alt('P')) && !late.swallow(&alt('_')));
        // a long version fits
        let mut late = LateAnswer::new(true);
        let wez = answer(">|WezTerm 20240203-110809-5046fc22");
        assert!(wez.iter().all(|k| late.swallow(k)));
        assert!(!late.swallow(&plain('j')));
        // a typed Alt+P followed by anything but `>|` loses only itself, and the answer
        // may still come
        let mut late = LateAnswer::new(true);
        assert!(late.swallow(&alt('P')));
        assert!(!late.swallow(&plain('j')), "the user's key");
        assert!(!late.swallow(&plain('>')));
        assert!(answer(">|XTerm(379)").iter().all(|k| late.swallow(k)));
        assert!(!late.swallow(&plain('j')));
    }

    #[test]
    fn xtversion_answers_are_read_among_the_others() {
        // kitty 0.26.5, as it answered under Xvfb, split anywhere
        let all = b"\x1b_Gi=31;OK\x1b\\\x1bP>|kitty(0.26.5)\x1b\\\x1b[?62;c\x1b[6;20;9t\x1b[0n";
        for n in [1, 2, 5, 7] {
            let mut p = Parser::default();
            for chunk in all.chunks(n) {
                for &b in chunk {
                    p.push(b);
                }
            }
            let r = p.reply;
            assert!(r.kitty && r.complete && r.stray == 0, "{r:?}");
            assert_eq!(r.cell, Some((9, 20)));
            let v = r.xtversion.unwrap();
            assert_eq!((v.name.as_str(), v.version.as_str()), ("kitty", "0.26.5"));
            assert_eq!(v.numbers(), Some([0, 26, 5]));
        }
        // xterm's, with its DA1 after
        let r = parse(b"\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[0n");
        let v = r.xtversion.clone().unwrap();
        assert_eq!((v.name.as_str(), v.version.as_str()), ("XTerm", "379"));
        assert!(r.sixel && r.complete);
        // the space-separated form (WezTerm, tmux, foot's older one)
        let v = XtVersion::parse("WezTerm 20240203-110809-5046fc22");
        assert_eq!(v.name, "WezTerm");
        assert_eq!(v.numbers(), Some([20240203, 0, 0]));
        assert_eq!(XtVersion::parse("tmux 3.3a").numbers(), Some([3, 3, 0]));
        assert_eq!(XtVersion::parse("ghostty 1.1").numbers(), Some([1, 1, 0]));
        // a name alone, an unnumbered version
        assert_eq!(
            XtVersion::parse("st"),
            XtVersion {
                name: "st".into(),
                version: "".into()
            }
        );
        assert_eq!(XtVersion::parse("st").numbers(), None);
        assert_eq!(XtVersion::parse("foo(dev)").numbers(), None);
        // another DCS answer is none, nor is one cut short by a new sequence
        assert_eq!(parse(b"\x1bP1$r0m\x1b\\\x1b[0n").xtversion, None);
        let r = parse(b"\x1bP>|kitty(0.2\x1b[0n");
        assert!(r.xtversion.is_none() && r.complete, "{r:?}");
        // a terminal that does not know XTVERSION says nothing to it
        let r = parse(b"\x1b[?62;4c\x1b[0n");
        assert!(r.xtversion.is_none() && r.sixel && r.complete);
    }

    fn kitty_reply(version: Option<&str>) -> Reply {
        Reply {
            kitty: true,
            xtversion: version.map(XtVersion::parse),
            cell: Some((9, 20)),
            complete: true,
            ..Reply::default()
        }
    }

    #[test]
    fn kitty_graphics_only_where_the_placeholders_are_drawn() {
        let proto = |r: &Reply| choose(r, false).protocol;
        // placeholders came with kitty 0.28.0
        for v in ["kitty(0.28.0)", "kitty(0.35.2)", "kitty(1.0)"] {
            let c = choose(&kitty_reply(Some(v)), false);
            assert_eq!(c.protocol, Some(ProtocolType::Kitty), "{v}");
            assert_eq!(c.passed_over, None, "{v}");
        }
        // Debian 12 ships 0.26.5, Ubuntu 22.04 0.21.2: half-blocks, and why
        for (v, why) in [
            ("kitty(0.26.5)", "kitty 0.26.5 < 0.28"),
            ("kitty(0.21.2)", "kitty 0.21.2 < 0.28"),
            ("kitty(0.27.1)", "kitty 0.27.1 < 0.28"),
        ] {
            let c = choose(&kitty_reply(Some(v)), false);
            assert_eq!(c.protocol, None, "{v}");
            assert_eq!(c.passed_over.as_deref(), Some(why));
        }
        // a kitty graphics answer without XTVERSION: kitty before 0.21.2, or unknown
        let c = choose(&kitty_reply(None), false);
        assert_eq!(c.protocol, None);
        assert_eq!(
            c.passed_over.as_deref(),
            Some("kitty graphics without XTVERSION")
        );
        // a kitty whose version is no number is taken as a new one
        assert_eq!(
            proto(&kitty_reply(Some("kitty(dev)"))),
            Some(ProtocolType::Kitty)
        );
        // other terminals that answer the kitty query keep kitty graphics, as before
        for v in ["ghostty 1.1.3", "WezTerm 20240203-110809-5046fc22"] {
            assert_eq!(
                proto(&kitty_reply(Some(v))),
                Some(ProtocolType::Kitty),
                "{v}"
            );
        }
        // an old kitty that (hypothetically) said sixel too gets sixel
        let mut r = kitty_reply(Some("kitty(0.26.5)"));
        r.sixel = true;
        let c = choose(&r, false);
        assert_eq!(c.protocol, Some(ProtocolType::Sixel));
        assert!(c.passed_over.is_some());
    }

    #[test]
    fn other_terminals_choose_as_before() {
        let xterm = parse(b"\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c\x1b[0n");
        assert_eq!(
            choose(&xterm, false),
            Choice {
                protocol: Some(ProtocolType::Sixel),
                passed_over: None
            }
        );
        // sixel without XTVERSION, as before
        let old = parse(b"\x1b[?62;4c\x1b[0n");
        assert_eq!(choose(&old, false).protocol, Some(ProtocolType::Sixel));
        // nothing offered, no answer at all: none, and nothing passed over
        let plain = parse(b"\x1bP>|foot(1.16.2)\x1b\\\x1b[?62;22c\x1b[0n");
        assert_eq!(choose(&plain, false).protocol, None);
        assert_eq!(choose(&Reply::default(), false).passed_over, None);
        // WezTerm or Konsole from the environment: neither sixel nor kitty, even a new kitty's
        assert_eq!(
            choose(&kitty_reply(Some("kitty(0.35.2)")), true),
            Choice {
                protocol: None,
                passed_over: None
            }
        );
        assert_eq!(choose(&xterm, true).protocol, None);
    }

    #[test]
    fn tmux_wraps_the_query_for_passthrough() {
        let q = query(true);
        assert!(q.starts_with("\x1bPtmux;\x1b\x1b_G") && q.ends_with("\x1b\x1b[5n\x1b\\"));
        let inner = &q[7..q.len() - 2];
        assert!(!inner.replace("\x1b\x1b", "").contains('\x1b'), "{q:?}");
        // XTVERSION goes with the others, before the closing status report
        let plain = query(false);
        assert!(
            plain.contains("\x1b[>q\x1b[c") && plain.ends_with("\x1b[5n"),
            "{plain:?}"
        );
    }
}
