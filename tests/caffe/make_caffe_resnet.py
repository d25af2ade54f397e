#!/usr/bin/env python3
"""Writes the reduced ResNet-18 of the golden fixtures (tests/golden/resnet18.pth: torchvision
BasicBlock, layers [2,2,2,2], widths 8/16/32/64, fc 64->1000, input 112x112) in Caffe's own
formats, the same way as make_caffe.py: Google's `protobuf` package with caffe.proto's messages
declared from their field numbers (no protoc, no Caffe). An import must reproduce
tests/golden/resnet18.ref.* (blob names are torchvision's module names: relu, layer1.0, ..., fc).

Caffe ResNet style: Convolution (bias_term false) + BatchNorm (use_global_stats, blobs
[mean*s, var*s, s] with s = 0.5, so an importer must divide by blobs[2]) + Scale (bias_term
true, blobs [gamma, beta]) in place; Eltwise SUM; the stem max pool uses round_mode FLOOR
(Caffe's default CEIL would give 29x29 instead of PyTorch's 28x28); a final Softmax "prob".

    /work/venv/bin/pip install protobuf safetensors numpy torch
    python tests/caffe/make_caffe_resnet.py   # writes tests/caffe/resnet18_deploy.prototxt,
                                              # resnet18.caffemodel, and checks them
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_caffe import messages  # noqa: E402  (NetParameter / BlobProto subset)

S = 0.5  # Caffe's BatchNorm stores running statistics times this factor (blobs[2])
EPS = 1e-5
PARAM = {"Convolution": "convolution_param", "Pooling": "pooling_param", "BatchNorm": "batch_norm_param",
         "Scale": "scale_param", "Eltwise": "eltwise_param", "InnerProduct": "inner_product_param"}


def f32(t):
    return np.asarray(t.detach().cpu().numpy() if torch.is_tensor(t) else t, dtype=np.float32)


def describe(sd):
    """[(name, type, bottoms, tops, params, blobs)] in Caffe's order."""
    L = []

    def conv(name, bottom, top, wkey, k, stride, pad):
        w = f32(sd[wkey])
        L.append((name, "Convolution", [bottom], [top],
                  dict(num_output=w.shape[0], bias_term="false", pad=pad, kernel_size=k, stride=stride), [w]))

    def bn(name, prefix, blob):
        L.append((name, "BatchNorm", [blob], [blob], dict(use_global_stats="true", eps=EPS),
                  [f32(sd[prefix + ".running_mean"]) * np.float32(S), f32(sd[prefix + ".running_var"]) * np.float32(S),
                   np.array([S], dtype=np.float32)]))

    def scale(name, prefix, blob):
        L.append((name, "Scale", [blob], [blob], dict(bias_term="true"),
                  [f32(sd[prefix + ".weight"]), f32(sd[prefix + ".bias"])]))

    conv("conv1", "data", "conv1", "conv1.weight", 7, 2, 3)
    bn("bn_conv1", "bn1", "conv1")
    scale("scale_conv1", "bn1", "conv1")
    L.append(("relu", "ReLU", ["conv1"], ["relu"], {}, []))
    L.append(("maxpool", "Pooling", ["relu"], ["maxpool"],
              dict(pool="MAX", kernel_size=3, stride=2, pad=1, round_mode="FLOOR"), []))
    cur = "maxpool"
    for s in range(1, 5):
        for i in range(2):
            p = f"layer{s}.{i}"
            stride = 2 if (s > 1 and i == 0) else 1
            conv(p + ".conv1", cur, p + ".conv1", p + ".conv1.weight", 3, stride, 1)
            bn(p + ".bn1", p + ".bn1", p + ".conv1")
            scale(p + ".bn1_scale", p + ".bn1", p + ".conv1")
            L.append((p + ".relu", "ReLU", [p + ".conv1"], [p + ".conv1"], {}, []))
            conv(p + ".conv2", p + ".conv1", p + ".conv2", p + ".conv2.weight", 3, 1, 1)
            bn(p + ".bn2", p + ".bn2", p + ".conv2")
            scale(p + ".bn2_scale", p + ".bn2", p + ".conv2")
            ident = cur
            if p + ".downsample.0.weight" in sd:
                d = p + ".downsample.0"
                conv(d, cur, d, d + ".weight", 1, stride, 0)
                bn(p + ".downsample.1", p + ".downsample.1", d)
                scale(p + ".downsample.1_scale", p + ".downsample.1", d)
                ident = d
            L.append((p + ".add", "Eltwise", [p + ".conv2", ident], [p + ".add"], dict(operation="SUM"), []))
            L.append((p + ".relu_1", "ReLU", [p + ".add"], [p], {}, []))
            cur = p
    L.append(("avgpool", "Pooling", [cur], ["avgpool"], dict(pool="AVE", global_pooling="true"), []))
    fw, fb = f32(sd["fc.weight"]), f32(sd["fc.bias"])
    L.append(("fc", "InnerProduct", ["avgpool"], ["fc"], dict(num_output=fw.shape[0]), [fw, fb]))
    L.append(("prob", "Softmax", ["fc"], ["prob"], {}, []))
    return L


def prototxt(L):
    s = ['name: "ResNet-18"', 'input: "data"', "input_shape { dim: 1 dim: 3 dim: 112 dim: 112 }"]
    for name, typ, bottoms, tops, params, _ in L:
        s.append(f'layer {{\n  name: "{name}"\n  type: "{typ}"')
        s += [f'  bottom: "{b}"' for b in bottoms] + [f'  top: "{t}"' for t in tops]
        if params:
            s.append(f"  {PARAM[typ]} {{ " + " ".join(f"{k}: {v}" for k, v in params.items()) + " }")
        s.append("}")
    return "\n".join(s) + "\n"


def parse_prototxt(text):
    """Just enough of the text format to read back what prototxt() writes."""
    layers, cur = [], None
    for line in text.splitlines():
        line = line.strip()
        if line == "layer {":
            cur = dict(bottom=[], top=[], params={})
        elif line == "}":
            layers.append(cur)
            cur = None
        elif cur is not None:
            k, _, v = line.partition(":")
            if k in ("name", "type"):
                cur[k] = v.strip().strip('"')
            elif k in ("bottom", "top"):
                cur[k].append(v.strip().strip('"'))
            else:  # "xxx_param { a: 1 b: 2 }"
                toks = line.split("{", 1)[1].rsplit("}", 1)[0].split()
                cur["params"] = {toks[j].rstrip(":"): toks[j + 1] for j in range(0, len(toks), 2)}
    return layers


def forward(layers, blobs, x):
    """Caffe deploy semantics, from the parsed prototxt and the caffemodel's blobs."""
    env = {"data": x[None]}
    for l in layers:
        p, b, typ = l["params"], blobs[l["name"]], l["type"]
        xs = [env[n] for n in l["bottom"]]
        if typ == "Convolution":
            assert p["bias_term"] == "false" and len(b) == 1
            y = F.conv2d(xs[0], b[0], stride=int(p["stride"]), padding=int(p["pad"]))
        elif typ == "BatchNorm":
            assert p["use_global_stats"] == "true"
            f = b[2][0]
            mean, var = b[0] / f, b[1] / f
            y = (xs[0] - mean[:, None, None]) / torch.sqrt(var[:, None, None] + float(p["eps"]))
        elif typ == "Scale":
            y = xs[0] * b[0][:, None, None] + b[1][:, None, None]
        elif typ == "ReLU":
            y = F.relu(xs[0])
        elif typ == "Pooling":
            if p.get("global_pooling") == "true":
                assert p["pool"] == "AVE"
                y = xs[0].mean(dim=(2, 3))
            else:
                assert p["pool"] == "MAX" and p["round_mode"] == "FLOOR"
                y = F.max_pool2d(xs[0], int(p["kernel_size"]), int(p["stride"]), int(p["pad"]), ceil_mode=False)
        elif typ == "Eltwise":
            assert p["operation"] == "SUM"
            y = xs[0] + xs[1]
        elif typ == "InnerProduct":
            y = xs[0].flatten(1) @ b[0].T + b[1]
        elif typ == "Softmax":
            y = torch.softmax(xs[0], dim=1)
        else:
            raise ValueError(typ)
        env[l["top"][0]] = y
    return {k: v[0] for k, v in env.items()}


def caffe_pool_out(n, k, s, p, ceil):
    """Caffe's PoolingLayer::Reshape."""
    q = n + 2 * p - k
    o = (-(-q // s) if ceil else q // s) + 1
    if p and (o - 1) * s >= n + p:
        o -= 1
    return o


def main():
    Net, Blob = messages()
    sd = torch.load(os.path.join(HERE, "..", "golden", "resnet18.pth"), map_location="cpu", weights_only=True)
    L = describe(sd)
    proto_path = os.path.join(HERE, "resnet18_deploy.prototxt")
    model_path = os.path.join(HERE, "resnet18.caffemodel")
    with open(proto_path, "w") as f:
        f.write(prototxt(L))
    net = Net(name="ResNet-18")
    for name, typ, bottoms, tops, _, blobs in L:
        l = net.layer.add(name=name, type=typ, bottom=bottoms, top=tops)
        for a in blobs:
            b = l.blobs.add(data=a.ravel().tolist())
            b.shape.dim.extend(a.shape)
    with open(model_path, "wb") as f:
        f.write(net.SerializeToString())

    # --- checks: round trip of every tensor, then a forward of the deploy semantics ---
    back = Net()
    with open(model_path, "rb") as f:
        back.ParseFromString(f.read())
    assert [l.name for l in back.layer] == [e[0] for e in L]
    blobs, n = {}, 0
    for l, (name, typ, bottoms, tops, _, want) in zip(back.layer, L):
        assert (l.type, list(l.bottom), list(l.top)) == (typ, bottoms, tops), name
        got = [np.asarray(b.data, dtype=np.float32).reshape(tuple(b.shape.dim)) for b in l.blobs]
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            assert g.shape == w.shape and np.array_equal(g, w), name
            n += 1
        blobs[name] = [torch.from_numpy(g) for g in got]
    print(f"round trip: {len(back.layer)} layers, {n} blobs bit-exact")

    print("stem max pool on 56x56, k3 s2 p1: Caffe CEIL ->", caffe_pool_out(56, 3, 2, 1, True),
          ", FLOOR ->", caffe_pool_out(56, 3, 2, 1, False), ", PyTorch -> 28")

    with open(proto_path) as f:
        layers = parse_prototxt(f.read())
    assert [l["name"] for l in layers] == [e[0] for e in L]
    ref = load_file(os.path.join(HERE, "..", "golden", "resnet18.ref.safetensors"))
    with torch.no_grad():
        env = forward(layers, blobs, torch.from_numpy(ref["input"]))
    worst = 0.0
    for k, v in ref.items():
        if k.startswith("blob/"):
            got = env[k[5:]].numpy()
            assert got.shape == v.shape, (k, got.shape, v.shape)
            d = float(np.abs(got - v).max())
            worst = max(worst, d) if k != "blob/fc" else worst
            print(f"{k:16s} {str(v.shape):14s} max |diff| {d:.3g}")
    dfc = float(np.abs(env["fc"].numpy() - ref["blob/fc"]).max())
    dp = float(np.abs(env["prob"].numpy() - ref["probs"]).max())
    print(f"probs max |diff| {dp:.3g}")
    assert dfc < 1e-5 and dp < 1e-5, (dfc, dp)
    print(f"wrote {proto_path} ({os.path.getsize(proto_path)} B), {model_path} ({os.path.getsize(model_path)} B)")


if __name__ == "__main__":
    main()
