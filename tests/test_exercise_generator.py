"""A learner's work is never lost when exercises are regenerated (tools/make_exercises.py).

``tests/test_notebooks.py`` covers the basic case (an edited function body is refused, outputs
alone are not an edit, --force overwrites). These cover the other ways a learner changes a
notebook, a notebook the generator cannot read, partial refusals, --check never writing, the
backup --force keeps, and what JupyterLab itself changes when it saves an unedited notebook.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "make_exercises", ROOT / "tools" / "make_exercises.py"
)
mx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mx)

NAMES = ("ch01_patches.ipynb", "ch03_quantization.ipynb")


@pytest.fixture
def course(tmp_path):
    """solutions/ with two notebooks, exercises/ generated from them; returns (args, exercises)."""
    sol, ex = tmp_path / "solutions", tmp_path / "exercises"
    sol.mkdir()
    for name in NAMES:
        shutil.copy(ROOT / "solutions" / name, sol / name)
    args = ["--solutions", str(sol), "--exercises", str(ex)]
    assert mx.main(args) == 0
    return args, ex


def _edit(path: Path, change) -> str:
    nb = nbformat.read(str(path), as_version=4)
    change(nb)
    nbformat.write(nb, str(path))
    return path.read_text(encoding="utf-8")


def _add_cell(nb):
    nb.cells.append(nbformat.v4.new_code_cell("my_experiment = 1"))


def _delete_cell(nb):
    del nb.cells[2]


def _edit_markdown(nb):
    md = next(c for c in nb.cells if c.cell_type == "markdown")
    md.source += "\n\nMy notes: remember the narrow range!"


def _solve_a_stub(nb):
    stub = next(c for c in nb.cells if "NotImplementedError" in c.source)
    stub.source = stub.source.replace("raise NotImplementedError", "return None  #")


@pytest.mark.parametrize("change", [_add_cell, _delete_cell, _edit_markdown, _solve_a_stub])
def test_every_kind_of_edit_is_refused(course, capsys, change):
    args, ex = course
    target = ex / NAMES[0]
    edited = _edit(target, change)
    assert mx.learner_edited(target)
    assert mx.main(args) == 1
    assert target.read_text(encoding="utf-8") == edited
    err = capsys.readouterr().err
    assert f"refused: {target} has learner edits" in err and "--force" in err


def test_unreadable_or_foreign_notebooks_are_not_overwritten(course):
    args, ex = course
    broken = ex / NAMES[0]
    broken.write_text('{"cells": [ this is not JSON', encoding="utf-8")
    foreign = ex / NAMES[1]  # a learner's own notebook with the same name: no clipq.sha256
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nbformat.write(nb, str(foreign))
    before = {p: p.read_bytes() for p in (broken, foreign)}
    assert mx.learner_edited(broken) and mx.learner_edited(foreign)
    assert mx.main(args) == 1
    assert {p: p.read_bytes() for p in (broken, foreign)} == before


def test_refusing_one_notebook_still_updates_the_others(course, tmp_path):
    args, ex = course
    edited = _edit(ex / NAMES[0], _solve_a_stub)
    other = ex / NAMES[1]
    other.unlink()  # e.g. a new chapter's exercise that is not there yet
    assert mx.main(args) == 1  # one refusal: exit code 1 ...
    assert other.exists()  # ... but the other notebook was written
    assert (ex / NAMES[0]).read_text(encoding="utf-8") == edited


def test_check_never_writes(course):
    args, ex = course
    edited = _edit(ex / NAMES[0], _solve_a_stub)
    (ex / NAMES[1]).unlink()
    assert mx.main(args + ["--check"]) == 1
    assert (ex / NAMES[0]).read_text(encoding="utf-8") == edited
    assert not (ex / NAMES[1]).exists()


def test_force_keeps_a_backup_of_the_edited_notebook(course, capsys):
    args, ex = course
    target = ex / NAMES[0]
    generated = (ROOT / "exercises" / NAMES[0]).read_text(encoding="utf-8")
    edited = _edit(target, _solve_a_stub)
    assert mx.main(args + ["--force"]) == 0
    assert target.read_text(encoding="utf-8") == generated
    backup = ex / f"{NAMES[0]}.bak"
    assert backup.read_text(encoding="utf-8") == edited
    assert f"kept the edited notebook as {backup}" in capsys.readouterr().out
    # a second forced regeneration of a second edit keeps both backups
    edited2 = _edit(target, _add_cell)
    assert mx.main(args + ["--force"]) == 0
    assert (ex / f"{NAMES[0]}.bak2").read_text(encoding="utf-8") == edited2
    assert backup.read_text(encoding="utf-8") == edited
    # backups are not notebooks of the course: --check does not call them stale
    assert mx.main(args + ["--check"]) == 0


def test_a_notebook_saved_by_jupyterlab_without_edits_is_regenerated(course):
    """Running and saving adds outputs, execution metadata and kernel info: not an edit."""
    args, ex = course
    target = ex / NAMES[1]

    def run_and_save(nb):
        nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                cell.execution_count = i
                cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
                cell.outputs = [nbformat.v4.new_output("stream", text="ran\n")]

    _edit(target, run_and_save)
    assert not mx.learner_edited(target)
    assert mx.main(args) == 0
    assert target.read_text(encoding="utf-8") == (ROOT / "exercises" / NAMES[1]).read_text(
        encoding="utf-8"
    )


def test_solution_update_reaches_an_unedited_exercise(course, tmp_path):
    args, ex = course
    sol = tmp_path / "solutions" / NAMES[1]
    nb = nbformat.read(str(sol), as_version=4)
    nb.cells[0].source += "\n\nA new paragraph from the instructor."
    nbformat.write(nb, str(sol))
    assert mx.main(args) == 0
    assert "A new paragraph from the instructor." in (ex / NAMES[1]).read_text(encoding="utf-8")
