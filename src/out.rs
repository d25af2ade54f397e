//! The commands' output on stdout. `println!` panics when stdout cannot be written (a full
//! disk behind `> file`, `/dev/full`); [`outln!`](crate::outln) returns the failure as an
//! error instead, which the binary reports in one line.

use std::io::Write;

/// Writes one line to stdout.
pub fn line(args: std::fmt::Arguments) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|_| out.write_all(b"\n"))
        .map_err(|e| anyhow::anyhow!("cannot write the output: {}", crate::error::io_text(&e)))
}

/// Writes text to stdout without a newline.
pub fn text(args: std::fmt::Arguments) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .map_err(|e| anyhow::anyhow!("cannot write the output: {}", crate::error::io_text(&e)))
}

/// `println!` that returns an error (use with `?`).
#[macro_export]
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($t:tt)*) => {
        $crate::out::line(format_args!($($t)*))
    };
}

/// `print!` that returns an error (use with `?`).
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => {
        $crate::out::text(format_args!($($t)*))
    };
}
