//! Golden numeric tests on the CPU kernels with Winograd's 2x2-tile schemes forced onto
//! every convolution they take (`ConvPath::Winograd`): F(2x2, 3x3) on the stride-1 3x3
//! ones, F(2x2, 5x5) on the stride-1 5x5 ones. At the fixtures' small sizes the default
//! path (`Auto`) leaves most of them to `im2col`, so this is where the transformed
//! convolutions meet the PyTorch references, at the same bar (the suite is
//! `tests/golden/suite.rs`).

const DEVICE: &str = "cpu";

const CONVS: treevis::model::ConvPath = treevis::model::ConvPath::Winograd;

include!("golden/suite.rs");

/// The forced path does run: AlexNet's conv3-5 (13x13) come out of it, so the logits
/// differ from the direct path's in the last bits, and both match PyTorch.
#[test]
fn winograd_changes_the_bits_not_the_numbers() {
    let f = load("alexnet", None);
    let x = f.refs["input"].unsqueeze(0).unwrap();
    let logits = |path| {
        let mut net = f.model.net.clone();
        net.convs = path;
        let s = net.forward(&x).unwrap();
        s.outputs[net.blobs[0].layer].clone()
    };
    let (wino, direct) = (
        logits(treevis::model::ConvPath::Winograd),
        logits(treevis::model::ConvPath::Direct),
    );
    let bits = |t: &Tensor| -> Vec<u32> {
        t.flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|v| v.to_bits())
            .collect()
    };
    assert_ne!(bits(&wino), bits(&direct), "the Winograd path did not run");
    let e = rel_err(&wino, &direct);
    assert!(e < 1e-4, "Winograd against im2col: {e}");
}
