//! Binary NetParameter and BlobProto decoding (weights and means).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = treevis::caffe::tensors_of_caffemodel(data, "fuzz.caffemodel");
    let _ = treevis::caffe::read_mean(data, "fuzz.binaryproto");
});
