#!/usr/bin/env python3
"""Writes a small Caffe-style image LMDB with an implementation independent of treevis:
Python's `lmdb` binding and Google's `protobuf` package, with caffe.proto's `Datum`
message declared from its field numbers (no protoc). Records are what Caffe's
`convert_imageset` writes: raw BGR channel-major bytes (colour and grey), and an encoded
PNG. The expected RGB pixels go beside it as PNG files written by Pillow.

    /work/venv/bin/pip install lmdb protobuf pillow numpy
    python tests/datum/make_datum_lmdb.py   # writes tests/datum/{lmdb,expected}/
"""
import io
import os
import shutil

import lmdb
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))


def datum_class():
    f = descriptor_pb2.FileDescriptorProto(name="caffe_datum.proto", package="caffe", syntax="proto2")
    m = f.message_type.add(name="Datum")
    T = descriptor_pb2.FieldDescriptorProto
    for name, num, typ, label in [
        ("channels", 1, T.TYPE_INT32, T.LABEL_OPTIONAL),
        ("height", 2, T.TYPE_INT32, T.LABEL_OPTIONAL),
        ("width", 3, T.TYPE_INT32, T.LABEL_OPTIONAL),
        ("data", 4, T.TYPE_BYTES, T.LABEL_OPTIONAL),
        ("label", 5, T.TYPE_INT32, T.LABEL_OPTIONAL),
        ("float_data", 6, T.TYPE_FLOAT, T.LABEL_REPEATED),
        ("encoded", 7, T.TYPE_BOOL, T.LABEL_OPTIONAL),
    ]:
        m.field.add(name=name, number=num, type=typ, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.Datum"))


def main():
    Datum = datum_class()
    rng = np.random.default_rng(7)
    out, exp = os.path.join(HERE, "lmdb"), os.path.join(HERE, "expected")
    for d in (out, exp):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    env = lmdb.open(out, map_size=1 << 22, subdir=True)
    records = []
    # raw colour records, 24x20, structured so a channel swap would show
    for i in range(3):
        y, x = np.mgrid[0:20, 0:24]
        rgb = np.stack([(x * 10 + i * 30) % 256, (y * 12) % 256, rng.integers(0, 256, (20, 24))], -1).astype(np.uint8)
        bgr_chw = rgb[:, :, ::-1].transpose(2, 0, 1)
        d = Datum(channels=3, height=20, width=24, data=bgr_chw.tobytes(), label=i, encoded=False)
        records.append((f"{i:08d}_cls{i}/img{i}.jpg", d, rgb))
    # a grey raw record
    grey = rng.integers(0, 256, (9, 11)).astype(np.uint8)
    d = Datum(channels=1, height=9, width=11, data=grey.tobytes(), label=5)
    records.append(("00000003_grey.png", d, np.stack([grey] * 3, -1)))
    # an encoded PNG record, as convert_imageset --encoded writes
    rgb = rng.integers(0, 256, (16, 13, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    d = Datum(channels=3, height=16, width=13, data=buf.getvalue(), label=9, encoded=True)
    records.append(("00000004_encoded.png", d, rgb))
    with env.begin(write=True) as txn:
        for key, d, rgb in records:
            txn.put(key.encode(), d.SerializeToString())
            Image.fromarray(rgb).save(os.path.join(exp, key.replace("/", "__") + ".png"))
            with open(os.path.join(exp, key.replace("/", "__") + ".label"), "w") as f:
                f.write(str(d.label))
    env.close()
    lock = os.path.join(out, "lock.mdb")
    if os.path.exists(lock):
        os.remove(lock)
    print(f"wrote {len(records)} records to {out}")


if __name__ == "__main__":
    main()
