//! The `treevis` binary: parse arguments, run one command, report errors on one line.

use clap::Parser;

// Large per-layer buffers are allocated and freed on every pass; mimalloc keeps them
// mapped instead of returning them to the kernel and faulting them in again.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` (mimalloc v2's `mimalloc.h`): -1 never returns freed memory to
/// the OS, so the next pass does not fault every page in again (a third of the time of a
/// batch-32 forward otherwise).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // SAFETY: setting an option of the allocator this binary uses; no allocation races it.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    // a closed pipe (`treevis ... | head -1`) ends the process quietly, as it ends every
    // Unix tool, instead of a panic in `println!` (Rust ignores SIGPIPE by default)
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    // a panic caught by the engine (answered as an error) is logged, not printed twice
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if treevis::panics::is_caught() {
            // the error it becomes says what went wrong; where it happened is for -vv
            tracing::debug!("{info}");
        } else {
            default_hook(info);
        }
    }));
    let cli = match treevis::cli::Cli::try_parse() {
        Ok(c) => c,
        // help and version are output; a usage error is one line, like every other error
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            eprintln!(
                "treevis: error: {} (see --help)",
                treevis::cli::one_line(first)
            );
            return std::process::ExitCode::from(2);
        }
    };
    treevis::cli::init_logging(cli.verbose, treevis::cli::opens_tui(&cli));
    match treevis::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if let Some(treevis::tui::Interrupted(sig)) = e.downcast_ref() {
                return std::process::ExitCode::from(128u8.saturating_add(*sig as u8));
            }
            eprintln!(
                "treevis: error: {}",
                treevis::cli::one_line(&format!("{e:#}"))
            );
            std::process::ExitCode::FAILURE
        }
    }
}
