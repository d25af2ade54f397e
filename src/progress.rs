//! Progress bars of the commands that run for seconds (indicatif), in one style.

/// A bar of `len` steps drawn with `template` (indicatif's syntax); a template that does not
/// parse falls back to the plain default bar rather than failing the command.
pub fn bar(len: u64, template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    let style = indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_templates_in_use_parse() {
        for t in [
            "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            "pass [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
            "randomizing [{bar:30}] {pos}/{len} layers ETA {eta}",
        ] {
            assert!(indicatif::ProgressStyle::with_template(t).is_ok(), "{t}");
        }
    }
}
