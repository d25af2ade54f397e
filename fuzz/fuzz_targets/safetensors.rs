//! safetensors files: the header and the tensors it names.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::model::weights::safetensors_tensors(std::path::Path::new("fuzz.safetensors"), data);
});
