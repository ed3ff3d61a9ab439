"""Tests of tools/clipq_book.py, the book's Sphinx extension: solution editions, workshop plans.

The fast tests check the notebook transformation and the plan parsing; the slow ones build a
tiny book (one solution notebook, one plan page) in both editions with ``-W`` and read the
HTML: solutions folded in the default edition, absent from every file of the "no solutions"
edition.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from html import unescape
from pathlib import Path

import nbformat
import pytest

from clipq_helpers.grading import ids

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import clipq_book as cb  # noqa: E402
import make_exercises as mx  # noqa: E402

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))
JUPYTER_BOOK = str(Path(sys.executable).parent / "jupyter-book")  # the CLI of this environment


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def _solution_lines(nb: nbformat.NotebookNode) -> list[str]:
    """The code lines inside solution regions (markers and hints excluded), stripped."""
    lines, inside = [], False
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if "### BEGIN SOLUTION" in line:
                inside = True
            elif "### END SOLUTION" in line:
                inside = False
            elif inside and line.strip() and not line.strip().startswith("###"):
                lines.append(line.strip())
    return lines


def _distinctive(lines: list[str], visible_elsewhere: str) -> list[str]:
    """Solution lines that are not also written outside the solutions (e.g. `return q`)."""
    return [x for x in lines if len(x) > 12 and x not in visible_elsewhere]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


# --------------------------------------------------------------------------- solution pages


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_default_edition_folds_every_solution(path):
    nb = _read(path)
    before = nbformat.writes(nb)
    page = cb.solution_page(nb, path.name, hide=False)
    assert nbformat.writes(nb) == before  # the notebook itself is not modified
    solution_cells = [c for c in nb.cells if c.cell_type == "code" and cb.SOLUTION_MARK in c.source]
    folded = [c for c in page.cells if "hide-input" in _tags(c)]
    assert solution_cells and len(folded) == len(solution_cells)
    for cell in folded:
        assert cb.SOLUTION_MARK in cell.source
        assert cell.metadata["mystnb"]["code_prompt_show"] == "Show solution"
    # nothing else is hidden or dropped: the same code cells, in the same order
    assert [c.source for c in page.cells if c.cell_type == "code"] == [
        c.source for c in nb.cells if c.cell_type == "code"
    ]
    assert "solved notebook" in page.cells[1].source and path.name in page.cells[1].source


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_no_solutions_edition_shows_stubs_and_runs_solutions_hidden(path):
    nb = _read(path)
    page = cb.solution_page(nb, path.name, hide=True)
    removed = {"remove-input", "remove-cell"}
    visible = "\n".join(
        c.source for c in page.cells if c.cell_type == "markdown" or not removed & set(_tags(c))
    )
    assert cb.SOLUTION_MARK not in visible
    outside = "\n".join(
        mx.strip_solutions(c.source, "t") for c in nb.cells if c.cell_type == "code"
    )
    secret = _distinctive(
        _solution_lines(nb),
        outside + "\n".join(c.source for c in nb.cells if c.cell_type == "markdown"),
    )
    assert secret, "no distinctive solution line found: the test would prove nothing"
    leaked = [line for line in secret if line in visible]
    assert not leaked
    # every solution cell still runs (hidden), right after a markdown copy of its stub
    for i, cell in enumerate(page.cells):
        if cell.cell_type == "code" and cb.SOLUTION_MARK in cell.source:
            assert "remove-input" in _tags(cell)
            stub = page.cells[i - 1]
            assert stub.cell_type == "markdown" and "raise NotImplementedError" in stub.source
            assert stub.source.startswith("```ipython3\n")
    # grade cells are untouched, so they print their pass lines
    grades = [c.source for c in page.cells if mx.GRADE_TAG in _tags(c)]
    assert grades == [c.source for c in nb.cells if mx.GRADE_TAG in _tags(c)]
    assert "does not show the solutions" in page.cells[1].source


def test_solution_only_cells():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("print(42)", metadata={"tags": [mx.SOLUTION_ONLY_TAG]}),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    assert cb.has_solutions(nb)
    shown = cb.solution_page(nb, "t.ipynb", hide=False)
    assert "hide-cell" in _tags(shown.cells[2]) and not _tags(shown.cells[3])
    hidden = cb.solution_page(nb, "t.ipynb", hide=True)
    assert "remove-cell" in _tags(hidden.cells[2])


def test_fence_is_longer_than_backticks_in_the_code():
    code = 'doc = """\n```python\nx\n```\n"""'
    fenced = cb._fenced(code)
    assert fenced.startswith("````python\n") and fenced.endswith("\n````")


# --------------------------------------------------------------------------- workshop plans


def test_count_words():
    assert cb.count_words("Hello world, it's INT8 量化误差") == 6  # 4 words + 4 characters / 2
    text = "One two.\n\n```python\nx = words in code\n```\n\nThree $a + b$ four $$\nx\n$$ five"
    assert cb.count_words(text) == 5
    assert cb.count_words("[link text](https://example.org/some/words)") == 2


def test_page_words_of_a_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A title\n\nSome prose here."),
        nbformat.v4.new_code_cell("these are not counted"),
    ]
    path = tmp_path / "p.ipynb"
    nbformat.write(nb, str(path))
    assert cb.page_words(path) == 5
    md = tmp_path / "p.md"
    md.write_text("---\njupytext: x\n---\n# Title\n\nTwo words.\n", encoding="utf-8")
    assert cb.page_words(md) == 3


def test_grade_ids_match_the_registry():
    for path in SOLUTIONS:
        chapter = path.name.split("_")[0]
        assert sorted(cb.grade_ids(path)) == sorted(i for i in ids() if i.startswith(chapter + "."))


def test_parse_plan():
    rows = [
        {"block": "Welcome", "minutes": 10},
        {"break": 15, "note": "coffee"},
        {
            "block": "Math",
            "page": "book/ch03",
            "share": 0.5,
            "exercises": "solutions/ch03",
            "only": ["ch03.sqnr_db"],
            "per-exercise": 8,
        },
    ]
    blocks = cb.parse_plan(rows)
    assert [b.title for b in blocks] == ["Welcome", "Break", "Math"]
    assert blocks[1].is_break and blocks[1].minutes == 15
    assert blocks[2].share == 0.5 and blocks[2].only == ["ch03.sqnr_db"]
    assert blocks[2].per_exercise == 8


@pytest.mark.parametrize(
    "rows, message",
    [
        ("just text", "YAML list"),
        ([], "YAML list"),
        (["x"], "expected a mapping"),
        ([{"title": "no block key"}], "needs 'block"),
        ([{"block": "b", "pages": "typo"}], "unknown keys \\['pages'\\]"),
        ([{"block": "b", "share": 1.5}], "share must be between 0 and 1"),
        ([{"block": "b", "only": ["ch03.sqnr_db"]}], "'only' needs 'exercises'"),
        ([{"break": 10, "minutes": 5}], "a break takes only"),
    ],
)
def test_parse_plan_errors(rows, message):
    with pytest.raises(ValueError, match=message):
        cb.parse_plan(rows)


def test_clock():
    assert cb._clock("09:00", 0) == "09:00"
    assert cb._clock("09:30", 95) == "11:05"


# --------------------------------------------------------------------------- tiny book builds

NOTEBOOK = "ch03_quantization.ipynb"
PLAN = """\
# Plan

```{workshop-plan}
:start: "13:00"
:budget: 90

- block: Welcome
  minutes: 10
- break: 5
- block: Exercises
  exercises: solutions/ch03_quantization
  only: [ch03.symmetric_scale]
```
"""


def _tiny_book(tmp_path: Path, hide: bool) -> Path:
    book = tmp_path / "book"
    (book / "solutions").mkdir(parents=True)
    shutil.copy(ROOT / "solutions" / NOTEBOOK, book / "solutions" / NOTEBOOK)
    (book / "intro.md").write_text("# Tiny\n\nA test book.\n", encoding="utf-8")
    (book / "plan.md").write_text(PLAN, encoding="utf-8")
    (book / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n"
        "  - file: solutions/ch03_quantization\n  - file: plan\n",
        encoding="utf-8",
    )
    (book / "_config.yml").write_text(
        textwrap.dedent(f"""\
            title: Tiny
            only_build_toc_files: true
            execute:
              execute_notebooks: force
              timeout: 120
            repository:
              url: https://github.com/clipq-course/clipq
              branch: main
            launch_buttons:
              notebook_interface: jupyterlab
              binderhub_url: https://mybinder.org
            html:
              use_repository_button: true
            sphinx:
              extra_extensions: [sphinx_exercise]
              local_extensions:
                clipq_book: {ROOT / "tools"}
              config:
                nb_merge_streams: true
                hide_solutions: {str(hide).lower()}
            """),
        encoding="utf-8",
    )
    proc = subprocess.run(
        [JUPYTER_BOOK, "build", str(book), "-W", "--keep-going", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return book / "_build" / "html"


def _text(html: str) -> str:
    """Visible text of an HTML page, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _code_text(html: str) -> str:
    """HTML with tags removed (not replaced by spaces: pygments splits code into spans)."""
    return unescape(re.sub(r"<[^>]+>", "", html))


def _secret_lines() -> list[str]:
    nb = _read(ROOT / "solutions" / NOTEBOOK)
    outside = "\n".join(
        mx.strip_solutions(c.source, "t") if c.cell_type == "code" else c.source for c in nb.cells
    )
    secret = _distinctive(_solution_lines(nb), outside)  # the task text may quote a formula
    assert secret
    return secret


@pytest.mark.slow
def test_tiny_book_default_edition(tmp_path):
    html_dir = _tiny_book(tmp_path, hide=False)
    page = (html_dir / "solutions" / "ch03_quantization.html").read_text(encoding="utf-8")
    nb = _read(ROOT / "solutions" / NOTEBOOK)
    n_solutions = sum(cb.SOLUTION_MARK in c.source for c in nb.cells if c.cell_type == "code")
    folds = re.findall(r"<details[^>]*>\s*<summary[^>]*>.*?Show solution", page, re.S)
    assert len(folds) == n_solutions
    assert "ch03.symmetric_scale: " in page and " cases pass" in page  # grade cells ran
    assert "BEGIN SOLUTION" in page  # the solutions are on the page, folded
    # positive control for the leak check of the other edition: it finds them here
    text = _code_text(page)
    assert all(line in text for line in _secret_lines())
    plan = _text((html_dir / "plan.html").read_text(encoding="utf-8"))
    m = re.search(r"solutions run (\d+) s \(measured\)", plan)
    assert m, plan[:2000]
    assert "13:00" in plan and "13:10" in plan and "Budget 90 min" in plan


@pytest.mark.slow
def test_tiny_book_no_solutions_edition(tmp_path):
    html_dir = _tiny_book(tmp_path, hide=True)
    secret = _secret_lines()
    checked = 0
    for path in html_dir.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".js", ".ipynb", ".txt", ".json"}:
            text = path.read_text(encoding="utf-8", errors="replace")
            assert "BEGIN SOLUTION" not in text, path
            code = _code_text(text)
            leaked = [line for line in secret if line in text or line in code]
            assert not leaked, (path, leaked)
            checked += 1
    assert checked > 10
    page = (html_dir / "solutions" / "ch03_quantization.html").read_text(encoding="utf-8")
    assert "raise" in page and "NotImplementedError" in page  # the stubs are shown
    assert "cases pass" in page  # the hidden solutions ran, so the grade cells passed
    assert "does not show the solutions" in page
    # the downloadable notebook is the exercise notebook, byte for byte
    download = html_dir / "_sources" / "solutions" / NOTEBOOK
    assert download.read_bytes() == (ROOT / "exercises" / NOTEBOOK).read_bytes()
    binder = re.findall(r'href="(https://mybinder[^"]+)"', page)
    assert binder and all(f"exercises/{NOTEBOOK}" in url for url in binder)
