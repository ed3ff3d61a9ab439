"""Build the grading reference data from the reference implementation.

    python tools/build_grading_refs.py            # (re)write clipq_helpers/grading/data/*
    python tools/build_grading_refs.py --check    # exit 1 if the stored data drifted
    python tools/build_grading_refs.py --only ch03.quantize_symmetric

Inputs come from fixed seeds (clipq_helpers/grading/cases.py); expected outputs from the
reference functions (clipq_helpers/quantize.py, calibrate.py, ...). Output: one
``<exercise_id>.json`` (case names, hints, arguments) and one ``<exercise_id>.safetensors``
(tensors) per exercise. Re-run it after changing a case or a reference function.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from clipq_helpers.grading import build, registry, store


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 on drift")
    ap.add_argument("--only", nargs="+", metavar="ID", help="exercise ids (default: all)")
    ap.add_argument("--data-dir", type=Path, default=store.DATA_DIR, help="output folder")
    args = ap.parse_args(argv)
    ids = args.only or registry.ids()
    unknown = [i for i in ids if i not in registry.EXERCISES]
    if unknown:
        ap.error(f"unknown exercise ids {unknown}; known: {registry.ids()}")
    if args.check:
        problems = [p for i in ids for p in build.drift(i, args.data_dir)]
        for p in problems:
            print(p)
        print("grading data in sync" if not problems else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    t0 = time.perf_counter()
    paths = build.write_all(ids, args.data_dir)
    size = sum(p.stat().st_size for p in paths)
    print(
        f"wrote {len(paths)} files ({size / 1024:.0f} KiB) to {args.data_dir} "
        f"in {time.perf_counter() - t0:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
