"""Grade a folder of submitted exercise notebooks (for instructors).

    python -m clipq_helpers.grading.batch submissions/            # table on stdout
    python -m clipq_helpers.grading.batch submissions/ --csv grades.csv --timeout 120

Every ``*.ipynb`` under the folder is executed from top to bottom in a fresh kernel (its
stored outputs are ignored, so they cannot be faked), with the notebook's folder as the
working directory. Each grade cell (a ``check("<exercise id>", fn)`` call) becomes one row:
``pass``, ``FAIL`` (the ``ExerciseFailed`` message's first line), ``ERROR`` (another exception
in that cell) or ``not run``. When the course's ``solutions/`` folder has a notebook of the
same name, exercises whose grade cell was deleted are listed as ``missing``.

Submissions are arbitrary code: run this in a throw-away container or VM.
"""

from __future__ import annotations

import argparse
import csv
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["Row", "grade_notebook", "grade_folder", "main"]

_CHECK = re.compile(r"""check\(\s*["']([\w.]+)["']""")
_PASS = re.compile(r"^([\w.]+): (\d+)/(\d+) cases pass$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"


@dataclass
class Row:
    """One exercise of one notebook."""

    notebook: str
    exercise: str
    result: str  # pass | FAIL | ERROR | not run | missing
    detail: str
    seconds: float  # time to execute the whole notebook


def _grade_ids(nb: nbformat.NotebookNode) -> list[tuple[int, str]]:
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        m = _CHECK.search(cell.source)
        eid = cell.metadata.get("clipq", {}).get("exercise") or (m.group(1) if m else None)
        if eid and ("clipq-grade" in cell.metadata.get("tags", []) or m):
            out.append((i, eid))
    return out


def _cell_result(cell: nbformat.NotebookNode, eid: str) -> tuple[str, str]:
    if cell.get("execution_count") is None and not cell.outputs:
        return "not run", ""
    for out in cell.outputs:
        if out.output_type == "error":
            first = _ANSI.sub("", str(out.get("evalue", ""))).strip().splitlines()
            text = first[0] if first else ""
            if out.ename == "ExerciseFailed":
                return "FAIL", text.removeprefix(f"{eid}: ")
            return "ERROR", f"{out.ename}: {text}"[:200]
    for out in cell.outputs:
        text = (
            out.get("data", {}).get("text/plain", "") if out.output_type == "execute_result" else ""
        )
        m = _PASS.match(str(text).strip())
        if m and m.group(1) == eid and m.group(2) == m.group(3):
            return "pass", f"{m.group(2)}/{m.group(3)} cases"
    return "ERROR", "the grade cell printed no pass line"


def grade_notebook(path: Path, timeout: int = 120, root: Path | None = None) -> list[Row]:
    """Execute one notebook and return one row per exercise."""
    from nbclient import NotebookClient

    name = str(path.relative_to(root)) if root else path.name
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:  # never trust stored outputs
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        interrupt_on_timeout=True,
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    t0 = time.perf_counter()
    note = ""
    try:
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's own start-up chatter
    except Exception as e:  # noqa: BLE001 - a dead kernel must not stop the batch
        note = f"notebook stopped: {type(e).__name__}"
    seconds = time.perf_counter() - t0
    rows = []
    seen = set()
    for i, eid in _grade_ids(nb):
        result, detail = _cell_result(nb.cells[i], eid)
        if result == "not run" and note:
            detail = note
        rows.append(Row(name, eid, result, detail, seconds))
        seen.add(eid)
    ref = _SOLUTIONS / path.name
    if ref.exists():
        for _, eid in _grade_ids(nbformat.read(str(ref), as_version=4)):
            if eid not in seen:
                rows.append(Row(name, eid, "missing", "no grade cell for it", seconds))
    if not rows:
        rows.append(Row(name, "-", "ERROR", note or "no grade cells found", seconds))
    return rows


def grade_folder(folder: Path, timeout: int = 120) -> list[Row]:
    """Grade every notebook under ``folder`` (checkpoint folders skipped)."""
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    rows: list[Row] = []
    for p in paths:
        rows += grade_notebook(p, timeout=timeout, root=folder)
    return rows


def format_table(rows: list[Row]) -> str:
    """The rows as an aligned text table plus a summary line."""
    head = ("notebook", "exercise", "result", "detail")
    data = [(r.notebook, r.exercise, r.result, r.detail) for r in rows]
    widths = [max(len(str(x[i])) for x in [head, *data]) for i in range(3)]
    lines = [
        "  ".join(str(x[i]).ljust(widths[i]) for i in range(3)) + "  " + x[3] for x in [head, *data]
    ]
    times = {r.notebook: r.seconds for r in rows}
    n_pass = sum(r.result == "pass" for r in rows)
    if times:
        mean = sum(times.values()) / len(times)
        lines.append(
            f"\n{len(times)} notebook(s), {n_pass}/{len(rows)} exercises pass; "
            f"{mean:.1f} s per notebook on average (max {max(times.values()):.1f} s)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "folder", type=Path, help="folder of submitted notebooks (searched recursively)"
    )
    ap.add_argument("--timeout", type=int, default=120, help="seconds per cell (default 120)")
    ap.add_argument("--csv", type=Path, help="also write the table as CSV")
    args = ap.parse_args(argv)
    if not args.folder.is_dir():
        ap.error(f"{args.folder} is not a folder")
    rows = grade_folder(args.folder, timeout=args.timeout)
    print(format_table(rows))
    if args.csv:
        with args.csv.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["notebook", "exercise", "result", "detail", "notebook_seconds"])
            w.writerows(
                [r.notebook, r.exercise, r.result, r.detail, f"{r.seconds:.2f}"] for r in rows
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
