//! Caffe Datum records as they come out of an image LMDB.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::data::datum::decode(data, "fuzz");
});
