//! Golden numeric tests on the CPU kernels with the six-point Winograd schemes forced onto
//! every convolution they take (`ConvPath::Winograd4`): F(4x4, 3x3) on the stride-1 3x3
//! ones, F(2x2, 5x5) on the stride-1 5x5 ones (AlexNet's and CaffeNet's conv2). Their
//! larger points round more than F(2x2, 3x3); here they meet the PyTorch references at the
//! same bars as every other path (the suite is `tests/golden/suite.rs`).

const DEVICE: &str = "cpu";

const CONVS: treevis::model::ConvPath = treevis::model::ConvPath::Winograd4;

include!("golden/suite.rs");

/// The forced schemes do run, on both kernel sizes: AlexNet's conv2 (5x5) alone, then
/// with conv3-5 (3x3), change the logits' bits from the direct path's, and stay within
/// the bar of them.
#[test]
fn six_point_winograd_changes_the_bits_not_the_numbers() {
    let f = load("alexnet", None);
    let x = f.refs["input"].unsqueeze(0).unwrap();
    let logits = |path| {
        let mut net = f.model.net.clone();
        net.convs = path;
        let s = net.forward(&x).unwrap();
        s.outputs[net.blobs[0].layer].clone()
    };
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    let direct = logits(treevis::model::ConvPath::Direct);
    let small = logits(treevis::model::ConvPath::Winograd);
    let large = logits(treevis::model::ConvPath::Winograd4);
    assert_ne!(bits(&large), bits(&small), "F(4x4, 3x3) did not run");
    assert_ne!(
        bits(&large),
        bits(&direct),
        "the six-point path did not run"
    );
    for (name, t) in [("2x2 tiles", &small), ("4x4 tiles", &large)] {
        let e = rel_err(t, &direct);
        assert!(e < 1e-4, "Winograd ({name}) against im2col: {e}");
    }
}
