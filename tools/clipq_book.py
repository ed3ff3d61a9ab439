"""Sphinx extension of the CLIP-Q book (Jupyter Book 1): solution editions and workshop plans.

Loaded from ``_config.yml``::

    sphinx:
      local_extensions:
        clipq_book: tools

**Solution notebooks as pages.** Every notebook page in ``solutions/`` (``### BEGIN SOLUTION``
regions, grade cells) is shown as an exercise page. The notebook file is not changed:
this extension edits the text Sphinx reads (event ``source-read``) before MyST-NB executes it,
so the solutions still run at every build and the grade cells print their pass lines.

* Default edition: each cell with a solution region is folded (MyST-NB's ``hide-input``
  tag, button "Show solution"); ``clipq-solution-only`` cells are folded whole.
* "No solutions" edition, switched by sphinx-exercise's ``hide_solutions: true`` (the one
  switch for every solution in the book): each solution cell is replaced on the page by its
  exercise stub (the ``raise NotImplementedError("<hint>")`` version, shown as code, not
  run); the solution itself still runs, hidden (``remove-input``), so the grade cells below
  it pass. ``clipq-solution-only`` cells are removed. The page's downloadable ``.ipynb`` is the
  exercise notebook and its launch buttons open ``exercises/``, so the built site holds no
  solution code at all.

**Workshop plans.** The ``workshop-plan`` directive turns a YAML list of blocks into a
timetable whose notebook run times are those MyST-NB measured when it executed the pages in
this very build; reading and exercise minutes are estimates from counted words and
exercises, and are labelled so.
"""

from __future__ import annotations

import copy
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import make_exercises as mx
import nbformat
import yaml
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = [
    "PlanBlock",
    "count_words",
    "parse_plan",
    "solution_page",
    "setup",
]

LOGGER = logging.getLogger(__name__)
SOLUTION_MARK = "### BEGIN SOLUTION"
SOLUTIONS_DIR = "solutions/"  # the pages this extension edits: notebooks in this folder
SHOW, HIDE = "Show solution", "Hide solution"
EXEC_TABLE_FLAG = "has_exec_table"  # MyST-NB re-writes pages with this flag after re-execution

# --------------------------------------------------------------------------- solution pages


def has_solutions(nb: nbformat.NotebookNode) -> bool:
    """True for a notebook with solution regions or solution-only cells."""
    return any(
        (c.cell_type == "code" and SOLUTION_MARK in c.source)
        or mx.SOLUTION_ONLY_TAG in c.get("metadata", {}).get("tags", [])
        for c in nb.cells
    )


def _add_tags(cell: nbformat.NotebookNode, *tags: str) -> None:
    existing = list(cell.metadata.get("tags", []))
    cell.metadata["tags"] = existing + [t for t in tags if t not in existing]


def _fenced(code: str, lang: str = "python") -> str:
    longest = max((len(m) for m in re.findall(r"`{3,}", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{code}\n{fence}"


def _notice(name: str, hide: bool) -> str:
    if hide:
        body = (
            "This edition of the course does not show the solutions. The functions below "
            f"are the stubs you complete in **`exercises/{name}`** in JupyterLab; under each "
            "one, its grade cell shows the line it prints once your function is right."
        )
    else:
        body = (
            f"This page is the solved notebook `solutions/{name}`. The solutions are folded "
            f"away: click **{SHOW}** above a function to see one. To do the exercises, open "
            f"**`exercises/{name}`** in JupyterLab; each grade cell below shows the line it "
            "prints once your function is right."
        )
    return f"```{{note}}\n{body}\n```"


def solution_page(nb: nbformat.NotebookNode, name: str, hide: bool) -> nbformat.NotebookNode:
    """The notebook as the book shows it (see the module docstring); ``nb`` is not modified.

    Args:
        nb: a solution notebook (``solutions/<name>``).
        name: its file name, e.g. ``"ch03_quantization.ipynb"``.
        hide: True for the "no solutions" edition.
    """
    nb = copy.deepcopy(nb)
    cells = []
    for idx, cell in enumerate(nb.cells):
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and mx.SOLUTION_ONLY_TAG in tags:
            if hide:
                _add_tags(cell, "remove-cell")
            else:
                _add_tags(cell, "hide-cell")
                cell.metadata["mystnb"] = {"code_prompt_show": SHOW, "code_prompt_hide": HIDE}
        elif cell.cell_type == "code" and SOLUTION_MARK in cell.source:
            if hide:
                stub = mx.strip_solutions(cell.source, f"{name} cell {idx}")
                cells.append(nbformat.v4.new_markdown_cell(_fenced(stub, "ipython3")))
                _add_tags(cell, "remove-input")
            else:
                _add_tags(cell, "hide-input")
                cell.metadata["mystnb"] = {"code_prompt_show": SHOW, "code_prompt_hide": HIDE}
        cells.append(cell)
    at = 1 if cells and cells[0].cell_type == "markdown" else 0  # after the title cell
    cells.insert(at, nbformat.v4.new_markdown_cell(_notice(name, hide)))
    nb.cells = cells
    return nb


def _hide(app: Sphinx) -> bool:
    return bool(app.config.hide_solutions)


def _is_solution_doc(app: Sphinx, docname: str) -> bool:
    return docname.startswith(SOLUTIONS_DIR) and str(app.env.doc2path(docname)).endswith(".ipynb")


def _on_source_read(app: Sphinx, docname: str, source: list[str]) -> None:
    if not _is_solution_doc(app, docname):
        return
    if SOLUTION_MARK not in source[0] and mx.SOLUTION_ONLY_TAG not in source[0]:
        return
    nb = nbformat.reads(source[0], as_version=4)
    if has_solutions(nb):
        name = posixpath.basename(docname) + ".ipynb"
        source[0] = nbformat.writes(solution_page(nb, name, _hide(app)))


def _solution_docs(app: Sphinx) -> list[str]:
    docs = []
    for docname in sorted(app.env.found_docs):
        path = Path(app.env.doc2path(docname))
        if _is_solution_doc(app, docname) and SOLUTION_MARK in path.read_text(encoding="utf-8"):
            docs.append(docname)
    return docs


def _on_page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """No-solutions edition: launch buttons of a solution page open the exercise notebook."""
    if not _hide(app) or not pagename.startswith(SOLUTIONS_DIR):
        return
    name = posixpath.basename(pagename) + ".ipynb"
    for group in context.get("header_buttons", []):
        if group.get("label") == "launch-buttons":
            for button in group.get("buttons", []):
                if "url" in button:
                    button["url"] = button["url"].replace(f"solutions/{name}", f"exercises/{name}")


def _on_build_finished(app: Sphinx, exception: Exception | None) -> None:
    """No-solutions edition: the downloadable ``_sources/<page>.ipynb`` becomes the exercise."""
    if exception is not None or not _hide(app) or app.builder.format != "html":
        return
    for docname in _solution_docs(app):
        target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
        if not target.exists():
            continue
        path = Path(app.env.doc2path(docname))
        rel = f"solutions/{path.name}"
        exercise = mx.generate(nbformat.read(str(path), as_version=4), rel)
        target.write_text(mx.dumps(exercise), encoding="utf-8")


# --------------------------------------------------------------------------- workshop plans

_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$", re.S)
_FENCE = re.compile(r"^(`{3,}|:{3,}).*?^\1\s*$", re.S | re.M)
_LATIN = re.compile(r"[A-Za-z][A-Za-z'-]*")
_CJK = re.compile(r"[\u3400-\u9fff]")


def count_words(markdown: str) -> int:
    """Words of prose: English words plus one per two Chinese characters (no code, no math)."""
    text = _FENCE.sub(" ", markdown)
    text = _MATH.sub(" ", text)
    text = re.sub(r"\(https?://[^)]*\)|<[^>]+>", " ", text)  # link targets, HTML tags
    return len(_LATIN.findall(text)) + len(_CJK.findall(text)) // 2


def page_words(path: Path) -> int:
    """Prose words of a page: the markdown cells of a notebook, or a MyST markdown file."""
    if path.suffix == ".ipynb":
        nb = nbformat.read(str(path), as_version=4)
        return count_words("\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown"))
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"\A---\n.*?\n---\n", "", text, flags=re.S)  # front matter
    return count_words(text)


def grade_ids(path: Path) -> list[str]:
    """Exercise ids of the grade cells of a solution notebook, in order."""
    nb = nbformat.read(str(path), as_version=4)
    return [
        mx.grade_exercise_id(c)
        for c in nb.cells
        if c.cell_type == "code" and mx.GRADE_TAG in c.metadata.get("tags", [])
    ]


@dataclass
class PlanBlock:
    """One block of a workshop plan (one table row)."""

    title: str
    minutes: float = 0.0  # fixed minutes (estimate): welcome, breaks, wrap-up
    page: str | None = None  # docname of the chapter presented
    share: float = 1.0  # share of the page's prose presented
    exercises: str | None = None  # docname of the solution notebook
    only: list[str] | None = None  # subset of its exercise ids
    per_exercise: float | None = None  # minutes per exercise, overrides the plan's
    note: str = ""
    is_break: bool = False
    page_has_code: bool = False  # a notebook (or MyST notebook) that the build executes
    # filled in from the sources
    words: int = 0
    exercise_ids: list[str] = field(default_factory=list)
    all_ids: list[str] = field(default_factory=list)


_BLOCK_KEYS = {"block", "minutes", "page", "share", "exercises", "only", "per-exercise", "note"}


def parse_plan(rows: Any) -> list[PlanBlock]:
    """Validate the YAML rows of a ``workshop-plan``; raise ValueError naming the problem."""
    if not isinstance(rows, list) or not rows:
        raise ValueError("the directive's content must be a YAML list of blocks")
    blocks = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise ValueError(f"block {i}: expected a mapping, got {row!r}")
        if "break" in row:
            if set(row) - {"break", "note"}:
                raise ValueError(f"block {i}: a break takes only 'break: <minutes>' and 'note'")
            blocks.append(
                PlanBlock("Break", float(row["break"]), note=row.get("note", ""), is_break=True)
            )
            continue
        unknown = set(row) - _BLOCK_KEYS
        if unknown or "block" not in row:
            raise ValueError(
                f"block {i}: needs 'block: <title>'; unknown keys {sorted(unknown)}; "
                f"allowed: {sorted(_BLOCK_KEYS)} or 'break'"
            )
        share = float(row.get("share", 1.0))
        if not 0 <= share <= 1:
            raise ValueError(f"block {i}: share must be between 0 and 1, got {share}")
        if "only" in row and "exercises" not in row:
            raise ValueError(f"block {i}: 'only' needs 'exercises'")
        blocks.append(
            PlanBlock(
                title=str(row["block"]),
                minutes=float(row.get("minutes", 0)),
                page=row.get("page"),
                share=share,
                exercises=row.get("exercises"),
                only=list(row["only"]) if "only" in row else None,
                per_exercise=float(row["per-exercise"]) if "per-exercise" in row else None,
                note=str(row.get("note", "")),
            )
        )
    return blocks


class workshop_plan_node(nodes.General, nodes.Element):
    """Placeholder, replaced by the timetable once every notebook has run."""


class WorkshopPlan(SphinxDirective):
    """``workshop-plan``: a timetable from a YAML list of blocks.

    Options: ``start`` (clock time, "09:00"), ``budget`` (minutes), ``words-per-minute``,
    ``minutes-per-exercise``, ``round`` (minutes each block is rounded up to).
    """

    has_content = True
    option_spec = {
        "start": directives.unchanged,
        "budget": directives.positive_int,
        "words-per-minute": directives.positive_int,
        "minutes-per-exercise": float,
        "round": directives.positive_int,
    }

    def run(self) -> list[nodes.Node]:
        try:
            blocks = parse_plan(yaml.safe_load("\n".join(self.content)))
            for b in blocks:
                self._fill(b)
        except (ValueError, yaml.YAMLError) as err:
            raise self.error(f"workshop-plan: {err}") from None
        node = workshop_plan_node()
        node["blocks"] = blocks
        node["options"] = {
            "start": self.options.get("start", "09:00"),
            "budget": self.options.get("budget"),
            "wpm": self.options.get("words-per-minute", 120),
            "per_exercise": self.options.get("minutes-per-exercise", 10.0),
            "round": self.options.get("round", 5),
        }
        self.set_source_info(node)
        from myst_nb.sphinx_ import NbMetadataCollector

        NbMetadataCollector.set_doc_data(self.env, self.env.docname, EXEC_TABLE_FLAG, True)
        return [node]

    def _path(self, docname: str, what: str) -> Path:
        if docname not in self.env.found_docs:
            raise ValueError(f"{what} {docname!r} is not a page of this book")
        path = Path(self.env.doc2path(docname))
        self.env.note_dependency(str(path))
        return path

    def _fill(self, b: PlanBlock) -> None:
        if b.page:
            path = self._path(b.page, "page")
            b.words = page_words(path)
            text = path.read_text(encoding="utf-8")
            b.page_has_code = path.suffix == ".ipynb" or "{code-cell}" in text
        if b.exercises:
            b.all_ids = grade_ids(self._path(b.exercises, "exercises"))
            if not b.all_ids:
                raise ValueError(f"{b.exercises!r} has no grade cells")
            chosen = b.only if b.only is not None else b.all_ids
            wrong = [x for x in chosen if x not in b.all_ids]
            if wrong:
                raise ValueError(f"{wrong} are not graded in {b.exercises!r} (it has {b.all_ids})")
            b.exercise_ids = list(chosen)


def _runtime(env, docname: str | None) -> float | None:
    from myst_nb.sphinx_ import NbMetadataCollector

    if not docname:
        return None
    data = NbMetadataCollector.get_doc_data(env).get(docname, {}).get("exec_data") or {}
    return data.get("runtime")


def _clock(start: str, minutes: float) -> str:
    h, m = (int(x) for x in start.split(":"))
    total = h * 60 + m + int(round(minutes))
    return f"{total // 60:02d}:{total % 60:02d}"


def _para(*parts: nodes.Node | str) -> nodes.paragraph:
    p = nodes.paragraph()
    for part in parts:
        p += nodes.Text(part) if isinstance(part, str) else part
    return p


def _doc_link(refdoc: str, target: str, text: str) -> pending_xref:
    ref = pending_xref(
        refdoc=refdoc,
        reftarget="/" + target,
        reftype="doc",
        refdomain="std",
        refexplicit=True,
        refwarn=True,
    )
    ref += nodes.inline(text=text)
    return ref


def _table(headers: list[str], rows: list[list[nodes.Node | list[nodes.Node]]]) -> nodes.table:
    table = nodes.table(classes=["colwidths-auto", "workshop-plan"])
    group = nodes.tgroup(cols=len(headers))
    table += group
    for _ in headers:
        group += nodes.colspec(colwidth=1)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for h in headers:
        row += nodes.entry("", _para(h))
    head += row
    body = nodes.tbody()
    group += body
    for cells in rows:
        row = nodes.row()
        for cell in cells:
            row += nodes.entry("", *(cell if isinstance(cell, list) else [cell]))
        body += row
    return table


def _run(what: str, seconds: float | None) -> str:
    if seconds is None:
        return f"{what} run: not executed in this build"
    return f"{what} run {seconds:.0f} s (measured)"


class WorkshopPlanTransform(SphinxPostTransform):
    """Fill each plan with the run times MyST-NB measured in this build."""

    default_priority = 8  # before the references (pending_xref) are resolved

    def run(self, **kwargs: Any) -> None:
        for node in list(self.document.findall(workshop_plan_node)):
            node.replace_self(self._render(node))

    def _render(self, node: workshop_plan_node) -> list[nodes.Node]:
        opt, env, doc = node["options"], self.env, self.env.docname
        rows, clock, total = [], 0.0, 0.0
        for b in node["blocks"]:
            read = b.words * b.share / opt["wpm"]
            per = b.per_exercise if b.per_exercise is not None else opt["per_exercise"]
            work = len(b.exercise_ids) * per
            run_page, run_ex = _runtime(env, b.page), _runtime(env, b.exercises)
            run_min = ((run_page or 0.0) + (run_ex or 0.0)) / 60
            exact = b.minutes + read + work + run_min
            minutes = exact if b.is_break else math.ceil(exact / opt["round"]) * opt["round"]
            what = _para()
            if b.page:
                what += _doc_link(doc, b.page, b.title)
            else:
                what += nodes.strong(text=b.title)
            if b.note:
                what += nodes.Text(f": {b.note}")
            ex: list[nodes.Node] = []
            if b.exercises:
                name = posixpath.basename(b.exercises)
                short = [x.split(".", 1)[-1] for x in b.exercise_ids]
                ex.append(_para(_doc_link(doc, b.exercises, name), ": " + ", ".join(short)))
                if set(b.exercise_ids) == set(b.all_ids):
                    check = nodes.literal(text=f"pytest --nbval-lax exercises/{name}.ipynb")
                    ex.append(_para("checkpoint: ", check))
                else:
                    ex.append(_para("checkpoint: their grade cells pass"))
            basis = []
            if b.page:
                basis.append(_para(f"presenting {read:.0f} ({b.words} words × {b.share:.0%})"))
            if b.exercise_ids:
                n = len(b.exercise_ids)
                basis.append(_para(f"exercises {work:.0f} ({n} × {per:g})"))
            if b.minutes:
                basis.append(_para(f"{'break' if b.is_break else 'fixed'} {b.minutes:g}"))
            if b.page_has_code:
                basis.append(_para(_run("chapter", run_page)))
            if b.exercises:
                basis.append(_para(_run("solutions", run_ex)))
            rows.append(
                [
                    [
                        _para(nodes.strong(text=_clock(opt["start"], clock))),
                        _para(f"{minutes:.0f} min"),
                    ],
                    what,
                    ex,
                    basis,
                ]
            )
            clock += minutes
            total += minutes
        rows.append(
            [
                [_para(nodes.strong(text=_clock(opt["start"], clock)))],
                _para(nodes.strong(text="End"), f" (total {total:.0f} min)"),
                [],
                [],
            ]
        )
        headers = ["Time", "Block", "Exercises and checkpoint", "Minutes: estimates, run times"]
        out: list[nodes.Node] = [_table(headers, rows)]
        budget = opt["budget"]
        cores = os.cpu_count() or 1
        text = (
            f"Total {total:.0f} min. Estimates: presenting at {opt['wpm']} words per minute "
            f"(the chapter's prose words, counted when this page was built, times the share "
            f"presented), {opt['per_exercise']:g} min per exercise unless the block says "
            f"otherwise. Run times: the chapter's and the solution notebook's, measured by this "
            f"build, each in a fresh kernel, on a machine with {cores} CPU cores. Each block is "
            f"the sum, rounded up to {opt['round']} min."
        )
        if budget:
            spare = budget - total
            if spare >= 0:
                text += f" Budget {budget} min: {spare:.0f} min to spare for questions."
            else:
                text += f" Budget {budget} min: OVER by {-spare:.0f} min; shorten a block."
                LOGGER.info("workshop plan in %s is over its budget by %.0f min", doc, -spare)
        out.append(_para(text))
        return out


# --------------------------------------------------------------------------- accessibility


def _visit_hidden_cell(self, node) -> None:
    """MyST-NB's fold of a hidden cell, without its fixed ``aria-label``.

    MyST-NB labels every fold "Toggle hidden content", which screen readers read instead of
    the visible "Show solution" (axe-core: label-content-name-mismatch). Without the label,
    the summary's accessible name is its visible text.
    """
    from html import escape

    classes = " ".join(node["classes"])
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    self.body.append(f'<p class="collapsed admonition-title">{escape(node["prompt_show"])}</p>\n')
    self.body.append(f'<p class="expanded admonition-title">{escape(node["prompt_hide"])}</p>\n')
    self.body.append("</summary>\n")


# --------------------------------------------------------------------------- setup


def setup(app: Sphinx) -> dict[str, Any]:
    app.setup_extension("sphinx_exercise")  # defines hide_solutions, the edition switch
    app.setup_extension("myst_nb")
    app.connect("source-read", _on_source_read)
    app.connect("html-page-context", _on_page_context, priority=600)
    app.connect("build-finished", _on_build_finished)
    from myst_nb.sphinx_ import HideCodeCellNode, depart_HideCellInput

    app.add_node(HideCodeCellNode, override=True, html=(_visit_hidden_cell, depart_HideCellInput))
    app.add_node(workshop_plan_node)
    app.add_directive("workshop-plan", WorkshopPlan)
    app.add_post_transform(WorkshopPlanTransform)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
