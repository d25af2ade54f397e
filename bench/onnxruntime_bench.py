#!/usr/bin/env python3
"""ONNX Runtime baseline for `treevis bench --compare bench/onnxruntime_results.json`.

The forward workloads of bench/pytorch_bench.py, run by ONNX Runtime's CPU provider on the
same networks (torchvision alexnet() and resnet50(), default random init, exported with
torch.onnx.export, batch axis dynamic; graph optimisations on, intra-op threads =
--threads, default = cores), float32, median of --runs after one warm-up, milliseconds:

  forward_b1_ms, forward_b32_ms                    AlexNet, input [3,224,224]
  resnet50_forward_b1_ms, resnet50_forward_b32_ms  ResNet-50, input [3,224,224]

Output (--out, default bench/onnxruntime_results.json):
  {"forward_b1_ms": 13.4, ..., "meta": {"onnxruntime": ..., "threads": 2, ...}}

Run:  /work/venv/bin/python bench/onnxruntime_bench.py [--runs 15] [--threads N]
"""

import argparse
import io
import json
import os
import platform
import sys
import warnings

import numpy as np
import onnxruntime as ort
import torch
import torchvision

warnings.filterwarnings("ignore")


sys.dont_write_bytecode = True  # no __pycache__ in bench/
from timing import timeit  # noqa: E402  (bench/, the script's folder)


def session(model, threads):
    model.eval()
    buf = io.BytesIO()
    x = torch.zeros(1, 3, 224, 224)
    kw = dict(
        input_names=["x"],
        output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
        opset_version=17,
    )
    try:
        torch.onnx.export(model, (x,), buf, dynamo=False, **kw)
    except TypeError:  # older torch: no `dynamo` argument
        torch.onnx.export(model, (x,), buf, **kw)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument(
        "--out",
        default=os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "onnxruntime_results.json"
        ),
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x1 = rng.uniform(-1, 1, (1, 3, 224, 224)).astype(np.float32)
    x32 = rng.uniform(-1, 1, (32, 3, 224, 224)).astype(np.float32)
    R = {}
    for key, ctor, b32_runs in [
        ("", torchvision.models.alexnet, 7),
        ("resnet50_", torchvision.models.resnet50, 5),
    ]:
        s = session(ctor(), args.threads)
        R[f"{key}forward_b1_ms"] = timeit(lambda: s.run(None, {"x": x1}), args.runs)
        R[f"{key}forward_b32_ms"] = timeit(
            lambda: s.run(None, {"x": x32}), min(args.runs, b32_runs)
        )
        print(f"{key or 'alexnet_'}forward: b1 {R[f'{key}forward_b1_ms']:.1f} ms, "
              f"b32 {R[f'{key}forward_b32_ms']:.1f} ms", flush=True)
    R["meta"] = {
        "library": "onnxruntime",
        "onnxruntime": ort.__version__,
        "torch": torch.__version__,
        "threads": args.threads,
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "runs": args.runs,
        "statistic": "median after 1 warm-up",
        "loadavg_after": os.getloadavg()[0],
    }
    with open(args.out, "w") as f:
        json.dump(R, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
