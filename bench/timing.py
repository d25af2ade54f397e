"""Timing shared by the bench/ scripts."""

import statistics
import time


def timeit(fn, runs):
    """Median wall time of `runs` calls of `fn` after one warm-up call, in milliseconds."""
    fn()  # warm-up
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(ts)
