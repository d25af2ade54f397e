"""Timing shared by the bench/ scripts."""

import statistics
import time


def timeit(fn, runs, sync=None):
    """Median wall time of `runs` calls of `fn` after one warm-up call, in milliseconds.

    `sync` (e.g. torch.cuda.synchronize) is called after each call, inside the timed span,
    so that work queued on a GPU is counted."""
    sync = sync or (lambda: None)
    fn()  # warm-up
    sync()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        ts.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(ts)
