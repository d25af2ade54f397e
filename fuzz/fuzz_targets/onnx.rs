//! ONNX models: ModelProto decoding, tensor conversion, attributes, external data, and the
//! import of the graph to a spec
//! (resolved against a scratch folder that holds one 64-byte `data.bin`, so `location`s
//! reach the real path checks and memory maps).
#![no_main]
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn model_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("treevis-fuzz-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        let data: Vec<u8> = (0u8..64).collect();
        std::fs::write(dir.join("data.bin"), data).expect("data.bin");
        dir.join("fuzz.onnx")
    })
}

fuzz_target!(|data: &[u8]| {
    // the reader, then the importer on whatever graph it read
    if let Ok(m) = treevis::onnx::OnnxModel::from_bytes(data, model_path()) {
        let _ = treevis::onnx::import::import(&m, "fuzz");
    }
});
