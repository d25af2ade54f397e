//! Golden numeric tests on the CPU kernels (`--device cpu`): treevis against PyTorch
//! autograd + Captum on the same weights (the suite is `tests/golden/suite.rs`).

const DEVICE: &str = "cpu";

/// Winograd only where it gains: at the fixtures' sizes, hardly anywhere.
const CONVS: treevis::model::ConvPath = treevis::model::ConvPath::Auto;

include!("golden/suite.rs");
