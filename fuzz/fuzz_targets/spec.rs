//! Model specs (TOML): parsing, validation and the wiring of the graph.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = treevis::model::spec::Spec::from_toml(text, "fuzz.toml") {
        let _ = treevis::model::graph::wire(&spec);
    }
});
