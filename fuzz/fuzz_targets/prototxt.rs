//! The text-format reader and the deploy-net conversion: any bytes give a spec or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = treevis::caffe::parse_deploy(text, "fuzz.prototxt") {
            let _ = treevis::caffe::to_spec(&d, "fuzz.prototxt", "fuzz", None);
        }
    }
});
