//! Legacy PyTorch checkpoints (the magic header is prepended so the fuzzer starts past it).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut bytes = treevis::model::pth::MAGIC.to_vec();
    bytes.extend_from_slice(data);
    let _ = treevis::model::pth::read(&bytes);
});
