//! NumPy `.npy` arrays.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::data::npy::parse(data);
});
