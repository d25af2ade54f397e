//! The terminal app: gallery -> overview -> tree. One event loop draws, reads keys and
//! engine messages; all numeric work happens on the engine thread ([`crate::engine`]).
//! The panes and overlays are components ([`panes`]) under one root ([`app::App`]).
//! The terminal is restored on every exit path: quit, error, panic, SIGTERM, SIGHUP.

pub mod app;
pub mod keymap;
pub mod panes;
pub mod session;
pub mod termquery;
pub mod ui;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{self, Event as TermEvent, KeyEventKind};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::FontSize;

use crate::engine::Engine;
use crate::model::Model;

/// How images reach the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Protocol {
    /// Ask the terminal (sixel, kitty, iTerm2), else unicode half-blocks.
    #[default]
    Auto,
    Sixel,
    Kitty,
    Iterm2,
    Halfblocks,
    /// No images at all: captions and numbers only.
    Text,
}

pub struct TuiOptions {
    pub images: Vec<PathBuf>,
    pub protocol: Protocol,
    /// How long the terminal may take to answer the capability query.
    pub query_timeout: Duration,
    pub keymap: keymap::Keymap,
    pub info: String,
    /// Where the exploration is saved and restored from.
    pub session: Option<PathBuf>,
    /// A feature cache (`treevis cache build`) for neuron grids and activation ranks.
    pub feature_cache: Option<PathBuf>,
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Picks the image protocol. The terminal is asked ([`termquery`]) for its graphics and its
/// cell size, in raw mode and before the input thread starts, unless `--protocol` says
/// `halfblocks` or `text`; a protocol named on the command line wins over the answer.
/// Returns whether the terminal answered in time, too (see [`termquery::LateAnswer`]), and
/// why kitty graphics the terminal offers are not used (see [`termquery::choose`]).
fn picker(p: Protocol, timeout: Duration) -> (Option<Picker>, bool, Option<String>) {
    match p {
        Protocol::Text => return (None, true, None),
        Protocol::Halfblocks => return (Some(Picker::halfblocks()), true, None),
        _ => {}
    }
    // inside tmux the query must be wrapped for passthrough (which this also switches on);
    // the environment's hints (iTerm2) are kept where the answer names no protocol
    #[allow(deprecated)] // the one public constructor that takes a measured cell size
    let fallback = Picker::from_fontsize(FontSize::new(10, 20));
    let tmux = fallback.tmux_detected();
    let asked = !tmux || tmux_attached();
    let reply = if !asked {
        // nobody outside to answer through the passthrough
        tracing::info!("inside a tmux session with no client attached: not asking");
        termquery::Reply::default()
    } else {
        let start = Instant::now();
        let reply = termquery::ask(tmux, timeout).unwrap_or_else(|e| {
            tracing::warn!("cannot query the terminal: {e}");
            termquery::Reply::default()
        });
        let ms = start.elapsed().as_secs_f64() * 1e3;
        tracing::info!(ms, tmux, ?reply, "terminal query");
        if !reply.complete {
            tracing::warn!(
                "the terminal did not answer within {timeout:?}; images fall back to \
                 half-blocks unless --protocol names one (or try --query-timeout)"
            );
        }
        reply
    };
    // as ratatui-image does: Konsole's sixel is unreliable, and neither it nor WezTerm draws
    // the kitty placeholders; WezTerm is taken as iTerm2 from its environment
    let distrusted = ["WEZTERM_EXECUTABLE", "KONSOLE_VERSION"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
    let choice = termquery::choose(&reply, distrusted);
    let found = choice.protocol;
    // (no answer can come late to a question not asked)
    let answered = reply.complete || !asked;
    let picker = match reply.cell.or_else(cell_from_winsize) {
        Some((w, h)) => {
            #[allow(deprecated)]
            let mut picker = Picker::from_fontsize(FontSize::new(w, h));
            if let Some(t) = found {
                picker.set_protocol_type(t);
            }
            picker
        }
        None if p == Protocol::Auto => {
            tracing::warn!("the terminal told no cell size: half-blocks");
            Picker::halfblocks()
        }
        None => {
            tracing::warn!("the terminal told no cell size: assuming 10x20 pixels");
            fallback
        }
    };
    let picker = forced(picker, p);
    let passed_over = choice
        .passed_over
        .filter(|_| p == Protocol::Auto && picker.protocol_type() != ProtocolType::Kitty);
    if let Some(why) = &passed_over {
        tracing::warn!(
            "{why}: ratatui-image places kitty images with unicode placeholders, which kitty \
             draws from 0.28.0 on; images fall back to {:?} (--protocol kitty forces them)",
            picker.protocol_type()
        );
    }
    (Some(picker), answered, passed_over)
}

/// Whether a client is attached to this tmux session (so that a terminal is there to
/// answer); when tmux cannot tell, assume one is.
fn tmux_attached() -> bool {
    std::process::Command::new("tmux")
        .args(["display-message", "-p", "#{session_attached}"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .is_none_or(|o| String::from_utf8_lossy(&o.stdout).trim() != "0")
}

/// `picker` with the protocol named on the command line, if one is.
fn forced(mut picker: Picker, p: Protocol) -> Picker {
    match p {
        Protocol::Sixel => picker.set_protocol_type(ProtocolType::Sixel),
        Protocol::Kitty => picker.set_protocol_type(ProtocolType::Kitty),
        Protocol::Iterm2 => picker.set_protocol_type(ProtocolType::Iterm2),
        _ => {}
    }
    picker
}

/// The cell size from the kernel's window size in pixels, where the terminal fills it in.
fn cell_from_winsize() -> Option<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(io::stdout()).ok()?;
    if ws.ws_xpixel == 0 || ws.ws_ypixel == 0 || ws.ws_col == 0 || ws.ws_row == 0 {
        return None;
    }
    Some((ws.ws_xpixel / ws.ws_col, ws.ws_ypixel / ws.ws_row))
}

/// The app ended because of a signal: the process should exit with 128 + the signal's
/// number, as a shell reports a killed command, so a script can tell it from a quit.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = signal_hook::low_level::signal_name(self.0).unwrap_or("a signal");
        write!(f, "stopped by {name}")
    }
}

impl std::error::Error for Interrupted {}

/// The signals that end the app cleanly (terminal restored, session saved).
const STOP_SIGNALS: [i32; 6] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
];

/// The terminal's settings before raw mode, for the fatal-signal handler.
static COOKED: std::sync::OnceLock<rustix::termios::Termios> = std::sync::OnceLock::new();

/// On a fatal signal (a bus error from a file changed under a memory map, a segfault, an
/// abort), puts the terminal back before the process dies: only async-signal-safe calls
/// (tcsetattr, write), then the signal's default action.
fn install_fatal_restore() {
    if let Ok(t) = rustix::termios::tcgetattr(io::stdin()) {
        let _ = COOKED.set(t);
    }
    for sig in [
        signal_hook::consts::SIGBUS,
        signal_hook::consts::SIGSEGV,
        signal_hook::consts::SIGABRT,
        signal_hook::consts::SIGFPE,
        signal_hook::consts::SIGILL,
    ] {
        // SAFETY: the handler only calls tcsetattr and write (async-signal-safe) and then
        // re-raises the signal with its default action.
        let _ = unsafe {
            signal_hook_registry::register_unchecked(sig, move |_| {
                if let Some(t) = COOKED.get() {
                    let _ = rustix::termios::tcsetattr(
                        io::stdin(),
                        rustix::termios::OptionalActions::Now,
                        t,
                    );
                }
                let _ = rustix::io::write(io::stdout(), b"\x1b[?1049l\x1b[?25h\r\n");
                let _ = signal_hook::low_level::emulate_default_handler(sig);
            })
        };
    }
}

/// Runs the app until the user quits (or a signal arrives: then the error is
/// [`Interrupted`]).
pub fn run(model: Model, opts: TuiOptions) -> Result<()> {
    let signal = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for sig in STOP_SIGNALS {
        signal_hook::flag::register_usize(sig, signal.clone(), sig as usize)
            .context("cannot install a signal handler")?;
    }
    install_fatal_restore();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if crate::panics::is_caught() {
            // answered to the UI as an error; the app goes on
            tracing::error!("{info}");
            return;
        }
        restore();
        default_hook(info);
    }));
    terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
    crossterm::execute!(io::stdout(), EnterAlternateScreen, crossterm::cursor::Hide)?;
    let result = (|| {
        let (picker, answered, passed_over) = picker(opts.protocol, opts.query_timeout);
        let mut protocol_name = match &picker {
            None => "text".to_string(),
            Some(p) => format!("{:?}", p.protocol_type()).to_lowercase(),
        };
        if let Some(why) = passed_over {
            protocol_name = format!("{protocol_name} ({why})");
        }
        let mut term = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        // a terminal that does not know a query's sequence may have printed it (ratatui's
        // own `clear` would ask for the cursor position, which not every terminal answers)
        crossterm::execute!(io::stdout(), terminal::Clear(terminal::ClearType::All))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let etx = tx.clone();
        let mut sched = crate::engine::Scheduler::new(model, crate::engine::RESULT_CACHE_BYTES);
        if let Some(dir) = opts.feature_cache.clone() {
            sched = sched.with_feature_cache(dir);
        }
        let engine = Engine::start_with(sched, Box::new(move |e| etx.send(Msg::Engine(e)).is_ok()))
            .context("cannot start the engine thread")?;
        let itx = tx.clone();
        let mut images = ui::Images::threaded(picker, move |e| {
            let _ = itx.send(Msg::Image(e));
        });
        let input = InputThread::start(tx, termquery::LateAnswer::new(!answered))
            .context("cannot start the input thread")?;
        let mut app = app::App::new(opts.images, format!("{} | {protocol_name}", opts.info));
        app.keymap = opts.keymap;
        if let Some(path) = &opts.session {
            let (s, report) = session::Session::load_or_set_aside(path)?;
            if let Some(s) = s {
                s.restore(&mut app);
            }
            if let Some(r) = report {
                tracing::warn!("{r}");
                app.shared.message = Some(r);
            }
        }
        let r = event_loop(
            &mut term,
            &engine,
            &rx,
            &mut app,
            &mut images,
            &signal,
            opts.session.as_deref(),
        );
        drop(input);
        r
    })();
    restore();
    let _ = io::stdout().flush();
    result?;
    match signal.load(Ordering::Relaxed) {
        0 => Ok(()),
        sig => Err(Interrupted(sig as i32).into()),
    }
}

/// What wakes the event loop.
enum Msg {
    Term(TermEvent),
    Engine(crate::engine::Event),
    Image(ui::Encoded),
    /// Reading the terminal failed.
    InputError(io::Error),
}

/// Reads terminal events on a thread of its own, so that keys, engine results and finished
/// image encodings all wake the event loop through one channel. A terminal answer that
/// comes after the query gave up is not passed on as keys.
struct InputThread {
    stop: Arc<AtomicBool>,
}

impl InputThread {
    fn start(tx: mpsc::Sender<Msg>, mut late: termquery::LateAnswer) -> io::Result<InputThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("treevis-input".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let msg = match event::poll(Duration::from_millis(50)) {
                        Ok(false) => continue,
                        Ok(true) => event::read().map(Msg::Term),
                        Err(e) => Err(e),
                    };
                    if let Ok(Msg::Term(TermEvent::Key(k))) = &msg {
                        if late.swallow(k) {
                            tracing::debug!(?k, "late terminal answer dropped");
                            continue;
                        }
                    }
                    let failed = msg.is_err();
                    if tx.send(msg.unwrap_or_else(Msg::InputError)).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(InputThread { stop })
    }
}

impl Drop for InputThread {
    /// Stops reading at the next poll. Not joined: after a hang-up the terminal is gone and
    /// a read may never return, and the process is about to exit anyway.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// How often the screen is redrawn with nothing happening (spinners, signals).
const TICK: Duration = Duration::from_millis(100);

fn event_loop(
    term: &mut Terminal<CrosstermBackend<io::Stdout>>,
    engine: &Engine,
    rx: &mpsc::Receiver<Msg>,
    app: &mut app::App,
    images: &mut ui::Images,
    stop: &std::sync::atomic::AtomicUsize,
    session: Option<&std::path::Path>,
) -> Result<()> {
    let mut saved: Option<session::Session> = None;
    let mut last_want = Vec::new();
    let (mut worst_frame, mut worst_layout) = (0f64, 0f64);
    // when the screen last started waiting for results (pane change, expansion)
    let mut waiting_since: Option<(String, Instant)> = Some(("launch".into(), Instant::now()));
    let started = Instant::now();
    let mut first_frame = true;
    while !app.quit && stop.load(Ordering::Relaxed) == 0 {
        let t0 = Instant::now();
        let mut layout_ms = 0.0;
        term.draw(|f| {
            ui::draw(f, app, images);
            layout_ms = t0.elapsed().as_secs_f64() * 1e3;
        })?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if ms > worst_frame {
            // the rest of a frame is the terminal taking the bytes (images above all)
            worst_frame = ms;
            worst_layout = layout_ms;
        }
        if first_frame {
            tracing::info!(ms = started.elapsed().as_secs_f64() * 1e3, "first frame");
            first_frame = false;
        }
        let want = app.wants();
        if let Some((what, since)) = &waiting_since {
            if images.pending() == 0 && want.iter().all(|k| app.shared.results.contains_key(k)) {
                tracing::info!(screen = %what, ms = since.elapsed().as_secs_f64() * 1e3, "screen complete");
                waiting_since = None;
            }
        }
        if want != last_want {
            if want.iter().any(|k| !app.shared.results.contains_key(k)) && waiting_since.is_none() {
                waiting_since = Some((app.pane.name().to_string(), Instant::now()));
            }
            engine.want(want.clone());
            images.retain(&want);
            last_want = want;
        }
        // sleep until something happens, then take everything that arrived
        let first = match rx.recv_timeout(TICK) {
            Ok(m) => Some(m),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => anyhow::bail!("the input thread stopped"),
        };
        for msg in first
            .into_iter()
            .chain(std::iter::from_fn(|| rx.try_recv().ok()))
        {
            match msg {
                Msg::Term(TermEvent::Key(k)) if k.kind != KeyEventKind::Release => {
                    if app.input(k.code) {
                        continue;
                    }
                    if let Some(a) = app.action(keymap::Key::from_event(&k)) {
                        tracing::debug!(?a, "action");
                        app.apply(a);
                        if let Some(e) = app.export.take() {
                            engine.export(e);
                        }
                        waiting_since =
                            Some((format!("{} after {a:?}", app.pane.name()), Instant::now()));
                    }
                }
                Msg::Term(TermEvent::Resize(..)) => term.autoresize()?,
                Msg::Term(other) => tracing::debug!(?other, "terminal event ignored"),
                Msg::Engine(e) => app.on_event(e),
                Msg::Image(e) => images.encoded(e),
                Msg::InputError(e) => return Err(e).context("cannot read the terminal"),
            }
        }
        if let Some(path) = session {
            let now = session::Session::capture(app);
            if saved.as_ref() != Some(&now) {
                if let Err(e) = now.save(path) {
                    tracing::warn!("cannot save the session: {e:#}");
                    app.shared.message = Some(format!("cannot save the session: {e:#}"));
                }
                saved = Some(now);
            }
        }
        app.shared.tick = app.shared.tick.wrapping_add(1);
    }
    tracing::info!(
        worst_frame_ms = worst_frame,
        of_which_drawing_ms = worst_layout,
        "quit"
    );
    Ok(())
}
