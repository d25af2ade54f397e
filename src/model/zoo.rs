//! Specs of torchvision's graph networks, built in code from the same plans as torchvision's
//! model builders: layer names are torchvision's module paths (`layer4.1.conv2`), so its
//! `.pth` state dicts load by name, and tree blobs are the blocks' outputs (reference
//! section 8). Channel counts come from the weights, so width-reduced variants of the same
//! topology load with the same spec; the `out` fields are the published widths.

use super::spec::{BlobSpec, ColorOrder, InputSpec, LayerKind, LayerSpec, PoolSpec, Spec};

/// The generated specs: `(name, description)`.
pub const ZOO: &[(&str, &str)] = &[
    (
        "resnet18",
        "torchvision ResNet-18 (He et al. 2015), basic blocks [2, 2, 2, 2]",
    ),
    (
        "resnet34",
        "torchvision ResNet-34, basic blocks [3, 4, 6, 3]",
    ),
    (
        "resnet50",
        "torchvision ResNet-50 (v1.5: stride in the 3x3), bottlenecks [3, 4, 6, 3]",
    ),
    (
        "resnet101",
        "torchvision ResNet-101, bottlenecks [3, 4, 23, 3]",
    ),
    (
        "mobilenet_v2",
        "torchvision MobileNetV2 (Sandler et al. 2018), width 1.0",
    ),
    (
        "squeezenet1_1",
        "torchvision SqueezeNet 1.1 (Iandola et al. 2016): fire modules",
    ),
    (
        "googlenet",
        "torchvision GoogLeNet (Szegedy et al. 2014): inception modules, BatchNorm",
    ),
    (
        "vgg16_bn",
        "torchvision VGG16 with BatchNorm (Simonyan & Zisserman 2014)",
    ),
    (
        "densenet121",
        "torchvision DenseNet-121 (Huang et al. 2017): dense blocks [6, 12, 24, 16]",
    ),
];

/// The spec of a generated network, by name.
pub fn spec(name: &str) -> Option<Spec> {
    let description = ZOO.iter().find(|(n, _)| *n == name)?.1.to_string();
    let mut b = Builder::default();
    match name {
        "resnet18" => resnet(&mut b, false, [2, 2, 2, 2]),
        "resnet34" => resnet(&mut b, false, [3, 4, 6, 3]),
        "resnet50" => resnet(&mut b, true, [3, 4, 6, 3]),
        "resnet101" => resnet(&mut b, true, [3, 4, 23, 3]),
        "mobilenet_v2" => mobilenet_v2(&mut b, 1.0),
        "squeezenet1_1" => squeezenet1_1(&mut b),
        "googlenet" => googlenet(&mut b),
        "vgg16_bn" => vgg16_bn(&mut b),
        "densenet121" => densenet(&mut b, 32, 64, 4, [6, 12, 24, 16]),
        _ => return None,
    }
    // top blob first
    b.blobs.reverse();
    let mut input = torchvision_input();
    if name == "googlenet" {
        // torchvision's pretrained GoogLeNet re-normalises its input (`transform_input`):
        // together with the ImageNet mean/std that is mean 0.5, std 0.5
        input.mean = [0.5; 3];
        input.std = [0.5; 3];
    }
    Some(Spec {
        name: name.to_string(),
        description,
        labels: Some("imagenet_classes.txt".into()),
        weights: None,
        input,
        layers: b.layers,
        blobs: b.blobs,
    })
}

/// MobileNetV2 at another width multiplier (torchvision's `width_mult`): which blocks have a
/// residual connection depends on the rounded widths, so each width is its own topology.
#[allow(
    clippy::expect_used,
    reason = "mobilenet_v2 is compiled into the zoo, and its tests build it"
)]
pub fn mobilenet_v2_spec(width_mult: f32) -> Spec {
    let mut s = spec("mobilenet_v2").expect("in the zoo");
    let mut b = Builder::default();
    mobilenet_v2(&mut b, width_mult);
    b.blobs.reverse();
    s.name = format!("mobilenet_v2_x{width_mult}");
    s.layers = b.layers;
    s.blobs = b.blobs;
    s
}

/// torchvision's `_make_divisible(v, 8)`.
fn make_divisible(v: f32) -> usize {
    let d = 8.0;
    let mut n = ((v + d / 2.0) / d).floor() * d;
    n = n.max(d);
    if n < 0.9 * v {
        n += d;
    }
    n as usize
}

/// torchvision's ImageNet preprocessing: RGB in 0..1, mean/std normalised, resize 256 and
/// centre crop 224.
pub fn torchvision_input() -> InputSpec {
    InputSpec {
        size: [224, 224],
        color: ColorOrder::Rgb,
        scale: 1.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        resize: Some(256),
        mean_file: None,
    }
}

#[derive(Default)]
struct Builder {
    layers: Vec<LayerSpec>,
    blobs: Vec<BlobSpec>,
}

impl Builder {
    /// Adds a layer taking `inputs` (written out only where they are not the layer before).
    fn add(&mut self, name: &str, inputs: &[&str], kind: LayerKind) -> String {
        let prev = self
            .layers
            .last()
            .map(|l| l.name.as_str())
            .unwrap_or("data");
        let inputs = if inputs == [prev] {
            None
        } else {
            Some(inputs.iter().map(|s| s.to_string()).collect())
        };
        self.layers.push(LayerSpec {
            name: name.to_string(),
            inputs,
            kind,
        });
        name.to_string()
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(
        &mut self,
        name: &str,
        input: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        pad: usize,
        depthwise: bool,
    ) -> String {
        self.add(
            name,
            &[input],
            LayerKind::Conv {
                out: Some(out),
                kernel: kernel.into(),
                stride: stride.into(),
                pad: pad.into(),
                dilation: 1.into(),
                groups: 1,
                depthwise,
                weight: None,
                bias: None,
                bias_term: false,
            },
        )
    }

    fn bn(&mut self, name: &str, input: &str) -> String {
        self.add(name, &[input], LayerKind::Batchnorm { eps: 1e-5 })
    }

    fn blob(&mut self, name: &str, layer: &str) {
        self.blobs.push(BlobSpec {
            name: name.to_string(),
            layer: layer.to_string(),
            mult: 1.0,
            below: None,
        });
    }

    /// conv, BatchNorm and optionally an activation: torchvision's `Conv2dNormActivation`
    /// (`NAME.0`, `NAME.1`, `NAME.2`).
    #[allow(clippy::too_many_arguments)]
    fn conv_bn_act(
        &mut self,
        name: &str,
        input: &str,
        out: usize,
        kernel: usize,
        stride: usize,
        depthwise: bool,
        act: Option<LayerKind>,
    ) -> String {
        let c = self.conv(
            &format!("{name}.0"),
            input,
            out,
            kernel,
            stride,
            (kernel - 1) / 2,
            depthwise,
        );
        let n = self.bn(&format!("{name}.1"), &c);
        match act {
            Some(a) => self.add(&format!("{name}.2"), &[&n], a),
            None => n,
        }
    }
}

fn resnet(b: &mut Builder, bottleneck: bool, blocks: [usize; 4]) {
    let c = b.conv("conv1", "data", 64, 7, 2, 3, false);
    let n = b.bn("bn1", &c);
    let r = b.add("relu", &[&n], LayerKind::Relu);
    b.blob("relu", &r);
    let mut x = b.add(
        "maxpool",
        &[&r],
        LayerKind::Maxpool(PoolSpec::square(3, 2, 1, false)),
    );
    let expansion = if bottleneck { 4 } else { 1 };
    let mut inplanes = 64;
    for (stage, (&n_blocks, planes)) in blocks.iter().zip([64, 128, 256, 512]).enumerate() {
        for i in 0..n_blocks {
            let p = format!("layer{}.{i}", stage + 1);
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let out = if bottleneck {
                let c1 = b.conv(&format!("{p}.conv1"), &x, planes, 1, 1, 0, false);
                let n1 = b.bn(&format!("{p}.bn1"), &c1);
                let r1 = b.add(&format!("{p}.relu"), &[&n1], LayerKind::Relu);
                let c2 = b.conv(&format!("{p}.conv2"), &r1, planes, 3, stride, 1, false);
                let n2 = b.bn(&format!("{p}.bn2"), &c2);
                let r2 = b.add(&format!("{p}.relu_1"), &[&n2], LayerKind::Relu);
                let c3 = b.conv(&format!("{p}.conv3"), &r2, planes * 4, 1, 1, 0, false);
                b.bn(&format!("{p}.bn3"), &c3)
            } else {
                let c1 = b.conv(&format!("{p}.conv1"), &x, planes, 3, stride, 1, false);
                let n1 = b.bn(&format!("{p}.bn1"), &c1);
                let r1 = b.add(&format!("{p}.relu"), &[&n1], LayerKind::Relu);
                let c2 = b.conv(&format!("{p}.conv2"), &r1, planes, 3, 1, 1, false);
                b.bn(&format!("{p}.bn2"), &c2)
            };
            let identity = if stride != 1 || inplanes != planes * expansion {
                let d = b.conv(
                    &format!("{p}.downsample.0"),
                    &x,
                    planes * expansion,
                    1,
                    stride,
                    0,
                    false,
                );
                b.bn(&format!("{p}.downsample.1"), &d)
            } else {
                x.clone()
            };
            let sum = b.add(
                &format!("{p}.add"),
                &[&out, &identity],
                LayerKind::Add(Default::default()),
            );
            let last_relu = if bottleneck { "relu_2" } else { "relu_1" };
            x = b.add(&format!("{p}.{last_relu}"), &[&sum], LayerKind::Relu);
            b.blob(&p, &x);
            inplanes = planes * expansion;
        }
    }
    head(b, &x, "avgpool", "fc", false);
}

/// Global average pooling, flatten and the classifier (`fc`, or `classifier.1` after a
/// dropout `classifier.0`).
fn head(b: &mut Builder, x: &str, pool: &str, fc: &str, dropout: bool) {
    let p = b.add(pool, &[x], LayerKind::AdaptiveAvgpool { output: [1, 1] });
    let mut f = b.add("flatten", &[&p], LayerKind::Flatten);
    if dropout {
        let name = if fc == "fc" {
            "dropout"
        } else {
            "classifier.0"
        };
        f = b.add(name, &[&f], LayerKind::Dropout { p: 0.2 });
    }
    let l = b.add(
        fc,
        &[&f],
        LayerKind::Linear {
            out: Some(1000),
            weight: None,
            bias: None,
            bias_term: true,
        },
    );
    b.blob(fc, &l);
}

fn relu6() -> LayerKind {
    LayerKind::Clip { min: 0.0, max: 6.0 }
}

fn mobilenet_v2(b: &mut Builder, width: f32) {
    let first = make_divisible(32.0 * width);
    let mut x = b.conv_bn_act("features.0", "data", first, 3, 2, false, Some(relu6()));
    b.blob("features.0", &x);
    let mut cin = first;
    let mut idx = 1;
    for (t, c, n, s) in [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        let c = make_divisible(c as f32 * width);
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let p = format!("features.{idx}");
            let hidden = cin * t;
            let mut y = x.clone();
            let mut part = 0;
            if t != 1 {
                y = b.conv_bn_act(
                    &format!("{p}.conv.0"),
                    &y,
                    hidden,
                    1,
                    1,
                    false,
                    Some(relu6()),
                );
                part = 1;
            }
            y = b.conv_bn_act(
                &format!("{p}.conv.{part}"),
                &y,
                hidden,
                3,
                stride,
                true,
                Some(relu6()),
            );
            let pw = b.conv(&format!("{p}.conv.{}", part + 1), &y, c, 1, 1, 0, false);
            y = b.bn(&format!("{p}.conv.{}", part + 2), &pw);
            if stride == 1 && cin == c {
                y = b.add(
                    &format!("{p}.add"),
                    &[&y, &x],
                    LayerKind::Add(Default::default()),
                );
            }
            b.blob(&p, &y);
            x = y;
            cin = c;
            idx += 1;
        }
    }
    let last = make_divisible(1280.0 * width.max(1.0));
    x = b.conv_bn_act("features.18", &x, last, 1, 1, false, Some(relu6()));
    b.blob("features.18", &x);
    head(b, &x, "avgpool", "classifier.1", true);
}

/// VGG16 with BatchNorm after every conv; blobs named as the `vgg16` spec's (`conv1_1` …
/// `conv5_3` after their ReLUs, `fc6`, `fc7`, `fc8`).
fn vgg16_bn(b: &mut Builder) {
    let plan: [&[usize]; 5] = [
        &[64, 64],
        &[128, 128],
        &[256, 256, 256],
        &[512, 512, 512],
        &[512, 512, 512],
    ];
    let mut x = "data".to_string();
    let mut idx = 0;
    for (stage, convs) in plan.iter().enumerate() {
        for (k, &c) in convs.iter().enumerate() {
            let cv = biased_conv(b, &format!("features.{idx}"), &x, c, 3, 1);
            let n = b.bn(&format!("features.{}", idx + 1), &cv);
            x = b.add(&format!("features.{}", idx + 2), &[&n], LayerKind::Relu);
            b.blob(&format!("conv{}_{}", stage + 1, k + 1), &x);
            idx += 3;
        }
        x = b.add(&format!("features.{idx}"), &[&x], pool(2, 2, 0, false));
        idx += 1;
    }
    let p = b.add(
        "avgpool",
        &[&x],
        LayerKind::AdaptiveAvgpool { output: [7, 7] },
    );
    let mut f = b.add("flatten", &[&p], LayerKind::Flatten);
    for (i, (name, out)) in [("fc6", 4096), ("fc7", 4096), ("fc8", 1000)]
        .into_iter()
        .enumerate()
    {
        let l = b.add(
            &format!("classifier.{}", i * 3),
            &[&f],
            LayerKind::Linear {
                out: Some(out),
                weight: None,
                bias: None,
                bias_term: true,
            },
        );
        if name == "fc8" {
            b.blob(name, &l);
            break;
        }
        let r = b.add(&format!("classifier.{}", i * 3 + 1), &[&l], LayerKind::Relu);
        b.blob(name, &r);
        f = b.add(
            &format!("classifier.{}", i * 3 + 2),
            &[&r],
            LayerKind::Dropout { p: 0.5 },
        );
    }
}

/// torchvision's DenseNet: each dense layer takes the concatenation of its block's input and
/// every earlier layer's new features; a block's output is the concatenation of all of them
/// (a blob), a transition halves the channels (its ReLU and conv outputs are blobs), and a
/// functional ReLU follows `features.norm5` (the blob `relu`).
fn densenet(b: &mut Builder, growth: usize, init: usize, bn_size: usize, blocks: [usize; 4]) {
    let c = b.conv("features.conv0", "data", init, 7, 2, 3, false);
    let n = b.bn("features.norm0", &c);
    let r = b.add("features.relu0", &[&n], LayerKind::Relu);
    b.blob("features.relu0", &r);
    let mut x = b.add("features.pool0", &[&r], pool(3, 2, 1, false));
    let mut channels = init;
    for (bi, &layers) in blocks.iter().enumerate() {
        let p = format!("features.denseblock{}", bi + 1);
        let mut feats = vec![x.clone()];
        for li in 0..layers {
            let q = format!("{p}.denselayer{}", li + 1);
            let refs: Vec<&str> = feats.iter().map(String::as_str).collect();
            let input = if refs.len() == 1 {
                refs[0].to_string()
            } else {
                b.add(&format!("{q}.cat"), &refs, LayerKind::Concat)
            };
            let n1 = b.bn(&format!("{q}.norm1"), &input);
            let r1 = b.add(&format!("{q}.relu1"), &[&n1], LayerKind::Relu);
            let c1 = b.conv(&format!("{q}.conv1"), &r1, bn_size * growth, 1, 1, 0, false);
            let n2 = b.bn(&format!("{q}.norm2"), &c1);
            let r2 = b.add(&format!("{q}.relu2"), &[&n2], LayerKind::Relu);
            let c2 = b.conv(&format!("{q}.conv2"), &r2, growth, 3, 1, 1, false);
            feats.push(c2);
        }
        let refs: Vec<&str> = feats.iter().map(String::as_str).collect();
        x = b.add(&format!("{p}.cat"), &refs, LayerKind::Concat);
        b.blob(&p, &x);
        channels += layers * growth;
        if bi < 3 {
            let t = format!("features.transition{}", bi + 1);
            let n = b.bn(&format!("{t}.norm"), &x);
            let r = b.add(&format!("{t}.relu"), &[&n], LayerKind::Relu);
            b.blob(&format!("{t}.relu"), &r);
            channels /= 2;
            let c = b.conv(&format!("{t}.conv"), &r, channels, 1, 1, 0, false);
            b.blob(&format!("{t}.conv"), &c);
            x = b.add(
                &format!("{t}.pool"),
                &[&c],
                LayerKind::Avgpool(PoolSpec::square(2, 2, 0, false)),
            );
        }
    }
    let n = b.bn("features.norm5", &x);
    let r = b.add("relu", &[&n], LayerKind::Relu);
    b.blob("relu", &r);
    let p = b.add(
        "avgpool",
        &[&r],
        LayerKind::AdaptiveAvgpool { output: [1, 1] },
    );
    let f = b.add("flatten", &[&p], LayerKind::Flatten);
    let l = b.add(
        "classifier",
        &[&f],
        LayerKind::Linear {
            out: Some(1000),
            weight: None,
            bias: None,
            bias_term: true,
        },
    );
    b.blob("classifier", &l);
}

fn pool(kernel: usize, stride: usize, pad: usize, ceil: bool) -> LayerKind {
    LayerKind::Maxpool(PoolSpec::square(kernel, stride, pad, ceil))
}

fn biased_conv(
    b: &mut Builder,
    name: &str,
    input: &str,
    out: usize,
    kernel: usize,
    stride: usize,
) -> String {
    let c = b.conv(name, input, out, kernel, stride, (kernel - 1) / 2, false);
    if let Some(LayerKind::Conv { bias_term, .. }) = b.layers.last_mut().map(|l| &mut l.kind) {
        *bias_term = true;
    }
    c
}

fn squeezenet1_1(b: &mut Builder) {
    let c = biased_conv(b, "features.0", "data", 64, 3, 2);
    // torchvision's stem conv has no padding
    if let Some(LayerKind::Conv { pad, .. }) = b.layers.last_mut().map(|l| &mut l.kind) {
        *pad = 0.into();
    }
    let mut x = b.add("features.1", &[&c], LayerKind::Relu);
    b.blob("features.1", &x);
    let fires: [(usize, Option<(usize, usize)>); 10] = [
        (2, None),
        (3, Some((16, 64))),
        (4, Some((16, 64))),
        (5, None),
        (6, Some((32, 128))),
        (7, Some((32, 128))),
        (8, None),
        (9, Some((48, 192))),
        (10, Some((48, 192))),
        (11, Some((64, 256))),
    ];
    for (i, fire) in fires.into_iter().chain([(12, Some((64, 256)))]) {
        let p = format!("features.{i}");
        match fire {
            None => x = b.add(&p, &[&x], pool(3, 2, 0, true)),
            Some((sq, ex)) => {
                let s = biased_conv(b, &format!("{p}.squeeze"), &x, sq, 1, 1);
                let sa = b.add(&format!("{p}.squeeze_activation"), &[&s], LayerKind::Relu);
                let e1 = biased_conv(b, &format!("{p}.expand1x1"), &sa, ex, 1, 1);
                let a1 = b.add(
                    &format!("{p}.expand1x1_activation"),
                    &[&e1],
                    LayerKind::Relu,
                );
                let e3 = biased_conv(b, &format!("{p}.expand3x3"), &sa, ex, 3, 1);
                let a3 = b.add(
                    &format!("{p}.expand3x3_activation"),
                    &[&e3],
                    LayerKind::Relu,
                );
                x = b.add(&format!("{p}.cat"), &[&a1, &a3], LayerKind::Concat);
                b.blob(&p, &x);
            }
        }
    }
    let d = b.add("classifier.0", &[&x], LayerKind::Dropout { p: 0.5 });
    let c = biased_conv(b, "classifier.1", &d, 1000, 1, 1);
    let r = b.add("classifier.2", &[&c], LayerKind::Relu);
    let p = b.add(
        "classifier.3",
        &[&r],
        LayerKind::AdaptiveAvgpool { output: [1, 1] },
    );
    let f = b.add("flatten", &[&p], LayerKind::Flatten);
    b.blob("classifier.3", &f);
}

/// torchvision's `BasicConv2d`: conv without bias, BatchNorm (eps 0.001), ReLU.
fn basic_conv(
    b: &mut Builder,
    p: &str,
    input: &str,
    out: usize,
    kernel: usize,
    stride: usize,
) -> String {
    let c = b.conv(
        &format!("{p}.conv"),
        input,
        out,
        kernel,
        stride,
        (kernel - 1) / 2,
        false,
    );
    let n = b.add(
        &format!("{p}.bn"),
        &[&c],
        LayerKind::Batchnorm { eps: 1e-3 },
    );
    b.add(&format!("{p}.relu"), &[&n], LayerKind::Relu)
}

fn googlenet(b: &mut Builder) {
    let mut x = basic_conv(b, "conv1", "data", 64, 7, 2);
    b.blob("conv1", &x);
    x = b.add("maxpool1", &[&x], pool(3, 2, 0, true));
    x = basic_conv(b, "conv2", &x, 64, 1, 1);
    b.blob("conv2", &x);
    x = basic_conv(b, "conv3", &x, 192, 3, 1);
    b.blob("conv3", &x);
    x = b.add("maxpool2", &[&x], pool(3, 2, 0, true));
    let plan: [(&str, [usize; 6]); 9] = [
        ("inception3a", [64, 96, 128, 16, 32, 32]),
        ("inception3b", [128, 128, 192, 32, 96, 64]),
        ("inception4a", [192, 96, 208, 16, 48, 64]),
        ("inception4b", [160, 112, 224, 24, 64, 64]),
        ("inception4c", [128, 128, 256, 24, 64, 64]),
        ("inception4d", [112, 144, 288, 32, 64, 64]),
        ("inception4e", [256, 160, 320, 32, 128, 128]),
        ("inception5a", [256, 160, 320, 32, 128, 128]),
        ("inception5b", [384, 192, 384, 48, 128, 128]),
    ];
    for (p, [c1, c3r, c3, c5r, c5, pp]) in plan {
        let b1 = basic_conv(b, &format!("{p}.branch1"), &x, c1, 1, 1);
        let t = basic_conv(b, &format!("{p}.branch2.0"), &x, c3r, 1, 1);
        let b2 = basic_conv(b, &format!("{p}.branch2.1"), &t, c3, 3, 1);
        let t = basic_conv(b, &format!("{p}.branch3.0"), &x, c5r, 1, 1);
        let b3 = basic_conv(b, &format!("{p}.branch3.1"), &t, c5, 3, 1);
        let t = b.add(&format!("{p}.branch4.0"), &[&x], pool(3, 1, 1, true));
        let b4 = basic_conv(b, &format!("{p}.branch4.1"), &t, pp, 1, 1);
        x = b.add(
            &format!("{p}.cat"),
            &[&b1, &b2, &b3, &b4],
            LayerKind::Concat,
        );
        b.blob(p, &x);
        match p {
            "inception3b" => x = b.add("maxpool3", &[&x], pool(3, 2, 0, true)),
            "inception4e" => x = b.add("maxpool4", &[&x], pool(2, 2, 0, true)),
            _ => {}
        }
    }
    head(b, &x, "avgpool", "fc", true);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{weights, Net};
    use candle_core::Device;

    #[test]
    fn generated_specs_build_with_random_weights() {
        for (name, _) in ZOO {
            let mut s = spec(name).unwrap();
            s.input.size = [64, 64];
            let w = weights::random_weights(&s, 1).unwrap();
            let net = Net::build(s, w, &Device::Cpu, std::path::Path::new("random")).unwrap();
            assert_eq!(net.blobs[0].shape.channels(), 1000, "{name}");
        }
        let r18 = spec("resnet18").unwrap();
        let names: Vec<&str> = r18.blobs.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names[..3], ["fc", "layer4.1", "layer4.0"]);
        assert_eq!(names.last(), Some(&"relu"));
        assert_eq!(spec("resnet50").unwrap().blobs.len(), 18);
        assert_eq!(spec("mobilenet_v2").unwrap().blobs.len(), 20);
        assert_eq!(spec("squeezenet1_1").unwrap().blobs.len(), 10);
        assert_eq!(spec("googlenet").unwrap().blobs.len(), 13);
        assert_eq!(spec("densenet121").unwrap().blobs.len(), 13);
        let vgg = spec("vgg16_bn").unwrap();
        assert_eq!(vgg.blobs.len(), 16);
        // the same tensor names as torchvision's vgg16_bn state dict
        let names = vgg.tensor_names();
        assert!(
            names.contains(&"features.41.running_var".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"classifier.6.bias".to_string()));
        assert_eq!(names.len(), 13 * 6 + 6);
    }
}
