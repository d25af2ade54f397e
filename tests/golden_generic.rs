//! Golden numeric tests on the tensor-op backend (`--device cpu-generic`): the code that runs
//! on a GPU, held to the same references and the same bar as the CPU kernels (the suite is
//! `tests/golden/suite.rs`).

const DEVICE: &str = "cpu-generic";

/// Winograd only where it gains: at the fixtures' sizes, hardly anywhere.
const CONVS: treevis::model::ConvPath = treevis::model::ConvPath::Auto;

include!("golden/suite.rs");
