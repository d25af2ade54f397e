//! Zip-format PyTorch checkpoints: the archive, `data.pkl` and the storages.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::model::pth::read_zip(std::io::Cursor::new(data));
});
