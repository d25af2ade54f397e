#!/usr/bin/env python3
"""The GEMM shapes of `treevis bench --kernels`, timed with torch.mm and ONNX Runtime.

Reads the shapes from the JSON `treevis bench --kernels --json FILE` writes (each case:
id, m, n, k, a_t, b_t; C[m, n] = A[m, k] . B[k, n], row-major C; a_t / b_t when the operand
is the transposed view of a row-major matrix, as treevis passes it) and times the same
products, float32, on --threads threads (default: all cores):

  torch        torch.mm(A, B), A / B built as the same (transposed) views
  onnxruntime  a one-node ONNX graph: Gemm(A, B) with transA / transB for the transposed
               operands, intra-op threads = --threads, inputs bound once (IOBinding)

Each number is the median GFLOP/s of --samples samples, each repeating the product for at
least 20 ms after a warm-up. Output (--out, default bench/gemm_results.json):
  {"torch": {id: GFLOP/s}, "onnxruntime": {id: GFLOP/s}, "meta": {...}}
which `treevis bench --kernels --compare FILE` prints beside its own columns.

Run:  /work/venv/bin/python bench/gemm_bench.py --shapes /tmp/ours.json [--samples 5]
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import torch


def timed(f, flops, samples):
    f()
    t = time.perf_counter()
    f()
    once = max(time.perf_counter() - t, 1e-6)
    reps = max(1, min(10000, int(0.02 / once + 0.999)))
    rates = []
    for _ in range(samples):
        t = time.perf_counter()
        for _ in range(reps):
            f()
        rates.append(flops * reps / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


def operands(c, rng):
    m, n, k = c["m"], c["n"], c["k"]
    a = rng.uniform(-1, 1, (k, m) if c["a_t"] else (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (n, k) if c["b_t"] else (k, n)).astype(np.float32)
    return a, b


def torch_case(c, a, b, samples):
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    if c["a_t"]:
        ta = ta.t()
    if c["b_t"]:
        tb = tb.t()
    out = torch.empty(c["m"], c["n"])
    flops = 2.0 * c["m"] * c["n"] * c["k"]
    with torch.inference_mode():
        return timed(lambda: torch.mm(ta, tb, out=out), flops, samples)


def ort_case(c, a, b, samples, threads):
    import onnxruntime as ort
    from onnx import TensorProto, helper

    node = helper.make_node(
        "Gemm", ["A", "B"], ["C"], transA=int(c["a_t"]), transB=int(c["b_t"])
    )
    graph = helper.make_graph(
        [node],
        "gemm",
        [
            helper.make_tensor_value_info("A", TensorProto.FLOAT, list(a.shape)),
            helper.make_tensor_value_info("B", TensorProto.FLOAT, list(b.shape)),
        ],
        [helper.make_tensor_value_info("C", TensorProto.FLOAT, [c["m"], c["n"]])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    )
    io = sess.io_binding()
    io.bind_cpu_input("A", a)
    io.bind_cpu_input("B", b)
    io.bind_output("C")
    flops = 2.0 * c["m"] * c["n"] * c["k"]
    return timed(lambda: sess.run_with_iobinding(io), flops, samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", required=True, help="JSON of treevis bench --kernels --json")
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--no-ort", action="store_true", help="leave out ONNX Runtime")
    ap.add_argument(
        "--out",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "gemm_results.json"),
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cases = json.load(open(args.shapes))["cases"]
    rng = np.random.default_rng(0)
    res = {"torch": {}, "onnxruntime": {}}
    for i, c in enumerate(cases):
        a, b = operands(c, rng)
        res["torch"][c["id"]] = torch_case(c, a, b, args.samples)
        line = f"{c['id']}: torch {res['torch'][c['id']]:.1f}"
        if not args.no_ort:
            res["onnxruntime"][c["id"]] = ort_case(c, a, b, args.samples, args.threads)
            line += f", onnxruntime {res['onnxruntime'][c['id']]:.1f}"
        print(f"[{i + 1}/{len(cases)}] {line} GFLOP/s", flush=True)
    meta = {
        "torch": torch.__version__,
        "torch_blas": torch.backends.mkl.is_available() and "mkl" or "other",
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "samples": args.samples,
        "loadavg_after": os.getloadavg()[0],
    }
    if not args.no_ort:
        import onnxruntime

        meta["onnxruntime"] = onnxruntime.__version__
    res["meta"] = meta
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
