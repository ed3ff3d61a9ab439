"""Side-by-side latency: every runtime is timed in the same loop, repeat by repeat."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np


def interleaved(
    fns: Mapping[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall-clock seconds of ``repeats`` calls of each function, interleaved.

    Round ``r`` calls every function once (in the given order) before round ``r + 1``, so a
    slow period of a shared machine affects all runtimes alike and ratios stay fair.
    ``warmup`` untimed rounds run first (session initialisation, caches, thread pools).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile in milliseconds."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "median_ms": float(np.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "repeats": len(seconds),
    }
