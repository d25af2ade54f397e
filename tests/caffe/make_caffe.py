#!/usr/bin/env python3
"""Writes a small CaffeNet-topology net in Caffe's own formats with an implementation
independent of treevis: Google's `protobuf` package, caffe.proto's messages declared from
their field numbers (no protoc, no Caffe). The weights are the reduced-width CaffeNet of
the golden fixtures (tests/golden/caffenet.weights.safetensors, whose activations and
reconstructions PyTorch and Captum computed in tests/golden/make_golden.py), so an import
must reproduce those references.

    /work/venv/bin/pip install protobuf safetensors numpy
    python tests/caffe/make_caffe.py    # writes tests/caffe/{deploy,deploy_v1}.prototxt,
                                        # net.caffemodel, net_v1.caffemodel, mean.binaryproto
"""
import os

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
T = descriptor_pb2.FieldDescriptorProto


def messages():
    f = descriptor_pb2.FileDescriptorProto(name="caffe_subset.proto", package="caffe", syntax="proto2")

    def msg(name, fields):
        m = f.message_type.add(name=name)
        for fname, num, typ, label, tname, packed in fields:
            fd = m.field.add(name=fname, number=num, type=typ, label=label)
            if tname:
                fd.type_name = tname
            if packed:
                fd.options.packed = True

    O, R = T.LABEL_OPTIONAL, T.LABEL_REPEATED
    msg("BlobShape", [("dim", 1, T.TYPE_INT64, R, None, True)])
    msg("BlobProto", [
        ("num", 1, T.TYPE_INT32, O, None, False), ("channels", 2, T.TYPE_INT32, O, None, False),
        ("height", 3, T.TYPE_INT32, O, None, False), ("width", 4, T.TYPE_INT32, O, None, False),
        ("data", 5, T.TYPE_FLOAT, R, None, True), ("shape", 7, T.TYPE_MESSAGE, O, ".caffe.BlobShape", False),
    ])
    msg("LayerParameter", [
        ("name", 1, T.TYPE_STRING, O, None, False), ("type", 2, T.TYPE_STRING, O, None, False),
        ("bottom", 3, T.TYPE_STRING, R, None, False), ("top", 4, T.TYPE_STRING, R, None, False),
        ("blobs", 7, T.TYPE_MESSAGE, R, ".caffe.BlobProto", False),
    ])
    msg("V1LayerParameter", [
        ("bottom", 2, T.TYPE_STRING, R, None, False), ("top", 3, T.TYPE_STRING, R, None, False),
        ("name", 4, T.TYPE_STRING, O, None, False), ("type", 5, T.TYPE_INT32, O, None, False),
        ("blobs", 6, T.TYPE_MESSAGE, R, ".caffe.BlobProto", False),
    ])
    msg("NetParameter", [
        ("name", 1, T.TYPE_STRING, O, None, False),
        ("layers", 2, T.TYPE_MESSAGE, R, ".caffe.V1LayerParameter", False),
        ("input", 3, T.TYPE_STRING, R, None, False), ("input_dim", 4, T.TYPE_INT32, R, None, False),
        ("layer", 100, T.TYPE_MESSAGE, R, ".caffe.LayerParameter", False),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    get = lambda n: message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe." + n))
    return get("NetParameter"), get("BlobProto")


# CaffeNet's chain: (name, type, params)
def layers(w):
    out = lambda n: w[n + ".weight"].shape[0]
    return [
        ("conv1", "Convolution", dict(num_output=out("conv1"), kernel_size=11, stride=4)),
        ("relu1", "ReLU", {}),
        ("pool1", "Pooling", dict(pool="MAX", kernel_size=3, stride=2)),
        ("norm1", "LRN", dict(local_size=5, alpha=0.0001, beta=0.75)),
        ("conv2", "Convolution", dict(num_output=out("conv2"), pad=2, kernel_size=5, group=2)),
        ("relu2", "ReLU", {}),
        ("pool2", "Pooling", dict(pool="MAX", kernel_size=3, stride=2)),
        ("norm2", "LRN", dict(local_size=5, alpha=0.0001, beta=0.75)),
        ("conv3", "Convolution", dict(num_output=out("conv3"), pad=1, kernel_size=3)),
        ("relu3", "ReLU", {}),
        ("conv4", "Convolution", dict(num_output=out("conv4"), pad=1, kernel_size=3, group=2)),
        ("relu4", "ReLU", {}),
        ("conv5", "Convolution", dict(num_output=out("conv5"), pad=1, kernel_size=3, group=2)),
        ("relu5", "ReLU", {}),
        ("pool5", "Pooling", dict(pool="MAX", kernel_size=3, stride=2)),
        ("fc6", "InnerProduct", dict(num_output=out("fc6"))),
        ("relu6", "ReLU", {}),
        ("drop6", "Dropout", dict(dropout_ratio=0.5)),
        ("fc7", "InnerProduct", dict(num_output=out("fc7"))),
        ("relu7", "ReLU", {}),
        ("drop7", "Dropout", dict(dropout_ratio=0.5)),
        ("fc8", "InnerProduct", dict(num_output=out("fc8"))),
        ("prob", "Softmax", {}),
    ]


PARAM = {"Convolution": "convolution_param", "Pooling": "pooling_param", "LRN": "lrn_param",
         "InnerProduct": "inner_product_param", "Dropout": "dropout_param"}
V1 = {"Convolution": ("CONVOLUTION", 4), "ReLU": ("RELU", 18), "Pooling": ("POOLING", 17),
      "LRN": ("LRN", 15), "InnerProduct": ("INNER_PRODUCT", 14), "Dropout": ("DROPOUT", 6),
      "Softmax": ("SOFTMAX", 20)}


def tops(chain):
    """Caffe's blob names: ReLU and Dropout work in place."""
    cur, out = "data", []
    for name, typ, _ in chain:
        top = cur if typ in ("ReLU", "Dropout") else name
        out.append((cur, top))
        cur = top
    return out


def prototxt(chain, v1):
    s = ['name: "CaffeNet"', 'input: "data"'] + [f"input_dim: {d}" for d in (10, 3, 227, 227)]
    for (name, typ, params), (bottom, top) in zip(chain, tops(chain)):
        t = V1[typ][0] if v1 else f'"{typ}"'
        s.append(f'{"layers" if v1 else "layer"} {{\n  name: "{name}"\n  type: {t}')
        s.append(f'  bottom: "{bottom}"\n  top: "{top}"')
        if params:
            body = " ".join(f"{k}: {v}" for k, v in params.items())
            s.append(f"  {PARAM[typ]} {{ {body} }}")
        s.append("}")
    return "\n".join(s) + "\n"


def main():
    Net, Blob = messages()
    w = load_file(os.path.join(HERE, "..", "golden", "caffenet.weights.safetensors"))
    chain = layers(w)
    for v1 in (False, True):
        with open(os.path.join(HERE, "deploy_v1.prototxt" if v1 else "deploy.prototxt"), "w") as f:
            f.write(prototxt(chain, v1))
        net = Net(name="CaffeNet")
        for (name, typ, _), (bottom, top) in zip(chain, tops(chain)):
            blobs = []
            if typ in ("Convolution", "InnerProduct"):
                for a in (w[name + ".weight"], w[name + ".bias"]):
                    a = np.asarray(a, dtype=np.float32)
                    b = Blob(data=a.ravel().tolist())
                    if v1:  # legacy 4-d blobs: inner products as [1, 1, out, in], biases [1, 1, 1, out]
                        d = [1] * (4 - a.ndim) + list(a.shape)
                        b.num, b.channels, b.height, b.width = d
                    else:
                        b.shape.dim.extend(a.shape)
                    blobs.append(b)
            if v1:
                l = net.layers.add(name=name, type=V1[typ][1], bottom=[bottom], top=[top])
            else:
                l = net.layer.add(name=name, type=typ, bottom=[bottom], top=[top])
            l.blobs.extend(blobs)
        with open(os.path.join(HERE, "net_v1.caffemodel" if v1 else "net.caffemodel"), "wb") as f:
            f.write(net.SerializeToString())
    # a per-pixel BGR mean, 256x256 as ILSVRC's, smooth and not constant per channel
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    mean = np.stack([100 + 10 * np.sin(x / 40), 115 + 8 * np.cos(y / 30), 120 + 0.05 * (x - y)])
    b = Blob(num=1, channels=3, height=256, width=256, data=mean.astype(np.float32).ravel().tolist())
    with open(os.path.join(HERE, "mean.binaryproto"), "wb") as f:
        f.write(b.SerializeToString())
    np.save(os.path.join(HERE, "mean_expected.npy"), mean.astype(np.float32))
    print("wrote deploy.prototxt, deploy_v1.prototxt, net.caffemodel, net_v1.caffemodel, mean.binaryproto")


if __name__ == "__main__":
    main()
