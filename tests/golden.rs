//! Golden numeric tests on the CPU kernels (`--device cpu`): treevis against PyTorch
//! autograd + Captum on the same weights (the suite is `tests/golden/suite.rs`).

const DEVICE: &str = "cpu";

include!("golden/suite.rs");
