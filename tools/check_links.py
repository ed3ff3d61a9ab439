"""Check every internal link and anchor of the built website (no network, no browser).

    python tools/check_links.py                  # checks _build/html
    python tools/check_links.py /tmp/x/_build/html

Reads every ``*.html`` page of the site (``_static``, ``_sources`` and ``_images`` hold no
pages) and checks each local reference in it: ``<a href>``, ``<link href>`` and the ``src`` of
``<img>``, ``<script>``, ``<source>``, ``<iframe>``, ``<video>``, ``<audio>``. A reference
resolves when its file exists (a folder means its ``index.html``) and, for a ``#fragment``
into an HTML page, when that page has an element with that ``id`` (or an ``<a name>``).
External references (``https:``, ``mailto:``, ``//host`` ...) are not fetched: check them with
``jupyter-book build . --builder linkcheck``. Exit code 1 and one line per broken reference
when anything is broken; the message says which page, which reference and why.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Folders of a Sphinx site that hold assets, not pages.
ASSET_DIRS = frozenset({"_static", "_sources", "_images", "_downloads"})
#: (tag, attribute) pairs that reference another file.
LINK_ATTRS = frozenset(
    {
        ("a", "href"),
        ("link", "href"),
        ("area", "href"),
        ("img", "src"),
        ("script", "src"),
        ("source", "src"),
        ("iframe", "src"),
        ("video", "src"),
        ("audio", "src"),
    }
)


@dataclass
class Page:
    """What one HTML page offers (its anchors) and references (tag, attribute, value)."""

    anchors: set[str] = field(default_factory=set)
    refs: list[tuple[str, str, str]] = field(default_factory=list)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.page.anchors.add(value)
            if (tag, name) in LINK_ATTRS:
                self.page.refs.append((tag, name, value.strip()))

    handle_startendtag = handle_starttag


def parse_page(path: Path) -> Page:
    """Anchors and references of one HTML file."""
    collector = _Collector()
    collector.feed(path.read_text(encoding="utf-8", errors="replace"))
    collector.close()
    return collector.page


def site_pages(site: Path) -> list[Path]:
    """Every HTML page of the site, sorted, without the asset folders."""
    return sorted(
        p for p in site.rglob("*.html") if not (set(p.relative_to(site).parts[:-1]) & ASSET_DIRS)
    )


def is_external(url: str) -> bool:
    """True for references this check does not follow (other hosts, other schemes)."""
    parts = urlsplit(url)
    return bool(parts.scheme) or bool(parts.netloc)


def check_site(site: Path) -> tuple[list[str], int, int]:
    """Check a built site; return (problems, number of pages, number of local references).

    Each problem is one line ``page: <tag attr="value"> why``.
    """
    site = site.resolve()
    pages = site_pages(site)
    parsed: dict[Path, Page] = {}

    def page_at(path: Path) -> Page:
        if path not in parsed:
            parsed[path] = parse_page(path)
        return parsed[path]

    problems: list[str] = []
    checked = 0
    for page_path in pages:
        page = page_at(page_path)
        where = page_path.relative_to(site).as_posix()
        for tag, attr, value in page.refs:
            if value in ("", "#") or is_external(value):
                continue
            checked += 1
            parts = urlsplit(value)
            shown = f'<{tag} {attr}="{value}">'
            if parts.path:
                target = (page_path.parent / unquote(parts.path)).resolve()
            else:
                target = page_path
            if not target.is_relative_to(site):
                problems.append(f"{where}: {shown} points outside the site")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: {shown} -> missing file {target.relative_to(site)}")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".html" and tag in ("a", "area"):
                if fragment not in page_at(target).anchors:
                    problems.append(
                        f"{where}: {shown} -> no id {fragment!r} in {target.relative_to(site)}"
                    )
    return problems, len(pages), checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "site",
        nargs="?",
        default="_build/html",
        type=Path,
        help="the built website (default: _build/html)",
    )
    args = parser.parse_args(argv)
    site: Path = args.site
    if not (site / "index.html").is_file():
        print(
            f"check_links: no website at {site} (no index.html); "
            "build the book first: jupyter-book build .",
            file=sys.stderr,
        )
        return 2
    problems, n_pages, n_refs = check_site(site)
    for line in problems:
        print(line)
    if problems:
        print(f"check_links: {len(problems)} broken internal reference(s) in {site}")
        return 1
    print(f"check_links: {n_refs} internal references in {n_pages} pages, all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main())
