//! Session files (JSON), validated as a whole.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::tui::session::Session::parse(data);
});
