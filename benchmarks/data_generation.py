"""How fast the shapes world renders: images per second, serially and on all cores.

    python benchmarks/data_generation.py [--n 10000]

Prints one JSON line. The goal (issue 3): 10k images in under 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from clipq_helpers import shapes


def _render_chunk(args: tuple[int, int]) -> int:
    start, n = args
    scenes = shapes.split_scenes("calibration", n, seed=start)
    return int(shapes.render_many(scenes).shape[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000)
    n = p.parse_args().n
    workers = os.cpu_count() or 1
    t = time.perf_counter()
    shapes.render_many(shapes.split_scenes("calibration", n))
    serial = time.perf_counter() - t
    chunks = [(i, n // workers) for i in range(workers)]
    t = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        done = sum(ex.map(_render_chunk, chunks))
    parallel = time.perf_counter() - t
    print(
        json.dumps(
            {
                "images": n,
                "serial_s": round(serial, 2),
                "workers": workers,
                "parallel_images": done,
                "parallel_s": round(parallel, 2),
                "images_per_s_serial": round(n / serial, 1),
                "cpu": os.cpu_count(),
                "numpy": np.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
