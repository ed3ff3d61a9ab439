"""tools/check_links.py on small hand-made sites (fast: no build, no browser)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_links.py"


@pytest.fixture(scope="module")
def check_links():
    spec = importlib.util.spec_from_file_location("check_links", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_site(root: Path, pages: dict[str, str]) -> Path:
    for name, body in pages.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"<!DOCTYPE html><html><body>{body}</body></html>", encoding="utf-8")
    return root


GOOD = {
    "index.html": '<meta http-equiv="refresh" content="0; url=book/intro.html">'
    '<a href="book/intro.html">home</a>',
    "book/intro.html": '<h1 id="top">Intro</h1><a href="ch01.html#sec-2">ch1</a>'
    '<a href="#top">top</a><a href="#">js</a><a href="../search.html?q=x">s</a>'
    '<a href="https://example.org/missing.html#nope">ext</a><a href="mailto:a@b.c">m</a>'
    '<a href="//cdn.example.org/x.js">cdn</a><a href="sub/">folder</a>'
    '<img src="../_images/fig%201.png" alt="a figure">'
    '<link rel="stylesheet" href="../_static/style.css?v=123">',
    "book/ch01.html": '<h1>Ch 1</h1><section id="sec-2">2</section><a name="old">x</a>'
    '<a href="ch01.html#old">old anchor</a><a href="intro.html">back</a>',
    "book/sub/index.html": "<h1>Folder page</h1>",
    "search.html": "<h1>Search</h1>",
}


def test_a_sound_site_passes(check_links, tmp_path):
    site = write_site(tmp_path, GOOD)
    (site / "_images").mkdir()
    (site / "_images" / "fig 1.png").write_bytes(b"png")
    (site / "_static").mkdir()
    (site / "_static" / "style.css").write_text("body{}")
    problems, n_pages, n_refs = check_links.check_site(site)
    assert problems == []
    assert n_pages == 5
    # local references: 1 + (intro: ch01#, #top, search, sub/, img, css) + (ch01: 2)
    assert n_refs == 1 + 6 + 2
    assert check_links.main([str(site)]) == 0


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('<a href="ch02.html">x</a>', "missing file book/ch02.html"),
        ('<a href="intro.html#no-such-id">x</a>', "no id 'no-such-id' in book/intro.html"),
        ('<a href="#nowhere">x</a>', "no id 'nowhere' in book/bad.html"),
        ('<img src="../_images/gone.png" alt="x">', "missing file _images/gone.png"),
        ('<script src="../_static/gone.js"></script>', "missing file _static/gone.js"),
        ('<a href="../../outside.html">x</a>', "points outside the site"),
        ('<a href="empty/">x</a>', "missing file book/empty/index.html"),
    ],
)
def test_each_kind_of_broken_reference_is_reported(check_links, tmp_path, body, why):
    site = write_site(tmp_path / "site", {**GOOD, "book/bad.html": body})
    (site / "_images").mkdir()
    (site / "_images" / "fig 1.png").write_bytes(b"png")
    (site / "_static").mkdir()
    (site / "_static" / "style.css").write_text("body{}")
    (site / "book" / "empty").mkdir()
    problems, _, _ = check_links.check_site(site)
    assert len(problems) == 1, problems
    assert problems[0].startswith("book/bad.html: ") and problems[0].endswith(why), problems
    assert check_links.main([str(site)]) == 1


def test_pages_in_asset_folders_are_not_pages(check_links, tmp_path):
    site = write_site(tmp_path, {"index.html": "ok", "_static/x/broken.html": '<a href="no">'})
    problems, n_pages, _ = check_links.check_site(site)
    assert (problems, n_pages) == ([], 1)


def test_a_missing_site_says_to_build_it(check_links, tmp_path, capsys):
    assert check_links.main([str(tmp_path / "nothing")]) == 2
    assert "build the book first: jupyter-book build ." in capsys.readouterr().err
