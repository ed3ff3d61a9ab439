"""Exercise notebooks: generated from solutions/, in sync, and validated by nbval.

* ``solutions/`` pass ``pytest --nbval`` (every output compared);
* ``exercises/`` run with ``pytest --nbval-lax`` fail on every grade cell and nowhere else
  (proof that the graders can fail), read from nbval's JUnit XML;
* the generator is deterministic, in sync, and refuses to overwrite learner edits.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import nbformat
import pytest

from clipq_helpers.grading import ids

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
TOOL = ROOT / "tools" / "make_exercises.py"
SANITIZE = ROOT / "nbval_sanitize.cfg"
NOTEBOOK_SECONDS = 60  # budget per notebook on a 2-core laptop

_spec = importlib.util.spec_from_file_location("make_exercises", TOOL)
make_exercises = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_exercises)


def _notebooks(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.ipynb"))


def _code_cells(path: Path) -> list[nbformat.NotebookNode]:
    return [c for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]


def _tagged(path: Path, tag: str) -> set[int]:
    """nbval's cell numbers (index among code cells) of the cells carrying a tag."""
    return {i for i, c in enumerate(_code_cells(path)) if tag in c.metadata.get("tags", [])}


# --------------------------------------------------------------------------- fast checks


def test_exercises_in_sync_with_solutions(capsys):
    """``python tools/make_exercises.py --check`` (run in-process: same code, no extra start-up)."""
    rc = make_exercises.main(["--check"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert "in sync" in out.out


def test_same_notebooks_on_both_sides():
    assert [p.name for p in _notebooks(SOLUTIONS)] == [p.name for p in _notebooks(EXERCISES)]
    assert len(_notebooks(SOLUTIONS)) >= 7


def test_every_exercise_has_exactly_one_grade_cell():
    graded = []
    for path in _notebooks(SOLUTIONS):
        for cell in _code_cells(path):
            if make_exercises.GRADE_TAG in cell.metadata.get("tags", []):
                graded.append(make_exercises.grade_exercise_id(cell))
    assert sorted(graded) == sorted(ids())


@pytest.mark.parametrize("name", [p.name for p in _notebooks(EXERCISES)])
def test_exercise_notebook_structure(name):
    sol, ex = SOLUTIONS / name, EXERCISES / name
    sol_cells, ex_cells = _code_cells(sol), _code_cells(ex)
    setup = ex_cells[0].source
    assert "TQDM_DISABLE" in setup and "manual_seed" in setup
    n_regions = sum(c.source.count("### BEGIN SOLUTION") for c in sol_cells)
    assert n_regions >= 1
    ex_text = "\n".join(c.source for c in ex_cells)
    assert "### " not in ex_text  # no solution markers or hints left
    assert ex_text.count("raise NotImplementedError(") == n_regions
    for cell in ex_cells:
        ast.parse(cell.source)  # every stub is valid Python
        tags = cell.metadata.get("tags", [])
        if make_exercises.GRADE_TAG in tags:
            assert "nbval-check-output" in tags
            assert cell.metadata["clipq"]["exercise"] == make_exercises.grade_exercise_id(cell)
            [out] = cell.outputs  # the expected pass line is kept for nbval
            assert re.fullmatch(r"[\w.]+: (\d+)/\1 cases pass", out["data"]["text/plain"])
            assert cell.execution_count is not None
        else:
            assert cell.outputs == [] and cell.execution_count is None
        if make_exercises.DEMO_TAG in tags:
            assert "nbval-skip" in tags
    meta = nbformat.read(str(ex), as_version=4).metadata
    assert meta["clipq"]["sha256"] == make_exercises.sources_hash(
        nbformat.read(str(ex), as_version=4)
    )


def test_generator_is_deterministic():
    sol = _notebooks(SOLUTIONS)[0]
    nb = nbformat.read(str(sol), as_version=4)
    rel = f"solutions/{sol.name}"
    a = make_exercises.dumps(make_exercises.generate(nb, rel))
    b = make_exercises.dumps(make_exercises.generate(nbformat.read(str(sol), as_version=4), rel))
    assert a == b == (EXERCISES / sol.name).read_text(encoding="utf-8")


def test_strip_solutions_rules():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    ### HINT: add one\n    return x + y\n    ### END SOLUTION\n"
    assert make_exercises.strip_solutions(src, "t") == (
        'def f(x):\n    y = 1\n    raise NotImplementedError("add one")\n'
    )
    with pytest.raises(make_exercises.GenerateError, match="without ### END"):
        make_exercises.strip_solutions("def f():\n    ### BEGIN SOLUTION\n    pass\n", "t")
    with pytest.raises(make_exercises.GenerateError, match="inside a function"):
        make_exercises.strip_solutions("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "t")
    # no HINT line: the registry's stub hint of the enclosing function is used
    out = make_exercises.strip_solutions(
        "def sqnr_db(x, x_hat):\n    ### BEGIN SOLUTION\n    pass\n    ### END SOLUTION\n", "t"
    )
    assert "signal power over noise power" in out


def test_generator_refuses_to_overwrite_learner_edits(tmp_path):
    sol_dir, ex_dir = tmp_path / "solutions", tmp_path / "exercises"
    sol_dir.mkdir()
    name = "ch01_patches.ipynb"
    shutil.copy(SOLUTIONS / name, sol_dir / name)
    args = ["--solutions", str(sol_dir), "--exercises", str(ex_dir)]
    assert make_exercises.main(args) == 0
    target = ex_dir / name
    generated = target.read_text(encoding="utf-8")

    # running the notebook changes outputs, not code: regenerating may overwrite it
    nb = nbformat.read(str(target), as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, str(target))
    assert make_exercises.main(args) == 0
    assert target.read_text(encoding="utf-8") == generated

    # a learner writes code: regenerating refuses and leaves the file alone
    nb = nbformat.read(str(target), as_version=4)
    stub = next(c for c in nb.cells if "NotImplementedError" in c.source)
    stub.source = stub.source.replace("raise NotImplementedError", "return images  #")
    nbformat.write(nb, str(target))
    edited = target.read_text(encoding="utf-8")
    assert make_exercises.learner_edited(target)
    assert make_exercises.main(args) == 1
    assert target.read_text(encoding="utf-8") == edited
    assert make_exercises.main(args + ["--check"]) == 1  # and --check reports it as out of sync

    assert make_exercises.main(args + ["--force"]) == 0
    assert target.read_text(encoding="utf-8") == generated


# --------------------------------------------------------------------------- nbval (slow)


def _nbval(mode: str, folder: Path, junit: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        mode,
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(SANITIZE),
        "-p",
        "no:cacheprovider",
        "-q",
        "--color=no",
        f"--junitxml={junit}",
        str(folder),
    ]
    return subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _junit(path: Path) -> dict[tuple[str, int], dict]:
    """{(notebook name, cell number): {"status": passed|failed|skipped, "text":, "time":}}."""
    out = {}
    for tc in ET.parse(path).getroot().iter("testcase"):
        nb = (
            tc.get("classname").split(".", 1)[1]
            if "." in tc.get("classname")
            else tc.get("classname")
        )
        cell = int(tc.get("name").split()[-1])
        status, text = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                status, text = "failed", (child.get("message") or "") + (child.text or "")
            elif child.tag == "skipped":
                status = "skipped"
        out[(nb, cell)] = {"status": status, "text": text, "time": float(tc.get("time", 0))}
    return out


@pytest.fixture(scope="module")
def nbval_results(tmp_path_factory):
    """Run nbval on solutions/ (strict) and exercises/ (lax) side by side (2 processes)."""
    tmp = tmp_path_factory.mktemp("nbval")
    t0 = time.perf_counter()
    procs = {
        "solutions": (_nbval("--nbval", SOLUTIONS, tmp / "solutions.xml"), tmp / "solutions.xml"),
        "exercises": (
            _nbval("--nbval-lax", EXERCISES, tmp / "exercises.xml"),
            tmp / "exercises.xml",
        ),
    }
    results = {}
    for key, (proc, xml) in procs.items():
        log, _ = proc.communicate(timeout=NOTEBOOK_SECONDS * 2 * len(_notebooks(SOLUTIONS)))
        results[key] = {"rc": proc.returncode, "log": log, "cells": _junit(xml)}
    results["seconds"] = time.perf_counter() - t0
    return results


def _per_notebook_seconds(cells: dict) -> dict[str, float]:
    times: dict[str, float] = {}
    for (nb, _), r in cells.items():
        times[nb] = times.get(nb, 0.0) + r["time"]
    return times


@pytest.mark.slow
def test_solutions_pass_nbval(nbval_results):
    res = nbval_results["solutions"]
    assert res["rc"] == 0, res["log"][-4000:]
    expected = {(p.name, i) for p in _notebooks(SOLUTIONS) for i in range(len(_code_cells(p)))}
    assert set(res["cells"]) == expected
    assert all(r["status"] == "passed" for r in res["cells"].values())
    slow = {nb: t for nb, t in _per_notebook_seconds(res["cells"]).items() if t > NOTEBOOK_SECONDS}
    assert not slow, slow


@pytest.mark.slow
def test_exercises_fail_exactly_on_grade_cells(nbval_results):
    res = nbval_results["exercises"]
    assert res["rc"] == 1, res["log"][-4000:]
    cells = res["cells"]
    failed = {k for k, r in cells.items() if r["status"] == "failed"}
    skipped = {k for k, r in cells.items() if r["status"] == "skipped"}
    grade = {
        (p.name, i) for p in _notebooks(EXERCISES) for i in _tagged(p, make_exercises.GRADE_TAG)
    }
    demo = {(p.name, i) for p in _notebooks(EXERCISES) for i in _tagged(p, make_exercises.DEMO_TAG)}
    assert len(grade) == len(ids())
    assert failed == grade
    assert skipped == demo
    for key in failed:
        text = cells[key]["text"]
        assert "ExerciseFailed" in text and "not written yet" in text, (key, text[-2000:])
    slow = {nb: t for nb, t in _per_notebook_seconds(cells).items() if t > NOTEBOOK_SECONDS}
    assert not slow, slow
