"""The built website in headless Chromium: every page, as a reader's browser shows it.

Run after a build: ``pytest -m browser`` (the site: ``_build/html`` or ``CLIPQ_SITE_DIR``).
Every HTML page of the site is checked, whatever pages the book has: no console errors,
math typeset by MathJax, Chinese drawn with a Chinese font, images loaded and described,
headings in order, launch and download buttons on notebook pages, axe-core accessibility
rules, nothing loaded from other hosts. Search is checked for an English and a Chinese
term; screenshots of a few key pages go to ``_build/screenshots`` (``CLIPQ_SCREENSHOT_DIR``).
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import sys
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit

import pytest
from sitecheck import REPO, SiteBrowser, cjk_font_families, dump, site_pages

pytestmark = pytest.mark.browser

#: axe-core findings that come from the theme (sphinx-book-theme 1.3 on pydata-sphinx-theme
#: 0.17) or from Sphinx/docutils themselves, not from the course's pages. Each is accepted
#: for the reason given. Matched per node: (rule id, a substring of the node's HTML).
AXE_ALLOWED: dict[tuple[str, str], str] = {
    ("label-content-name-mismatch", "search-button__button"): (
        "theme: the search button shows 'Search' and a Ctrl+K hint while its aria-label is "
        "'Search'; screen readers announce 'Search', which is right"
    ),
    ("label-content-name-mismatch", "theme-switch-button"): (
        "theme: the colour-mode button's visible content is three icons (their titles "
        "'Light', 'Dark', 'System Settings'); its aria-label 'Color mode' names it"
    ),
    ("region", "navbar-brand logo"): (
        "theme: the site title link at the top of the primary sidebar sits outside the "
        "sidebar's landmark; it repeats the home link of the navigation"
    ),
    ("aria-required-children", 'class="citation-list"'): (
        "docutils writes the bibliography (sphinxcontrib-bibtex) as a role=list of "
        "role=doc-biblioentry items; axe no longer counts that deprecated role as a list "
        "item, so it reports the entries' links as stray children of the list"
    ),
    ("aria-allowed-role", 'role="doc-biblioentry"'): (
        "docutils: doc-biblioentry is deprecated in DPUB-ARIA 1.1; browsers still expose it"
    ),
    ("aria-deprecated-role", 'role="doc-biblioentry"'): (
        "docutils: doc-biblioentry is deprecated in DPUB-ARIA 1.1; browsers still expose it"
    ),
}


def _is_allowed(rule: str, node_html: str) -> bool:
    return any(rule == r and part in node_html for (r, part) in AXE_ALLOWED)


# ----------------------------------------------------------------------------- every page


#: Console errors that are not the site's, each with the reason.
CONSOLE_ALLOWED: dict[str, str] = {
    "/favicon.ico - Failed to load resource": (
        "the site has no favicon and the browser asks the server root for one on its own; "
        "no page links to it (on GitHub Pages that URL is not even the site's)"
    ),
}


def test_no_console_errors(report):
    """No JavaScript error, failed resource load or console.error on the page."""
    severe = [
        e
        for e in report.console
        if e.get("level") == "SEVERE" and not any(s in e["message"] for s in CONSOLE_ALLOWED)
    ]
    assert not severe, f"{report.page}: console errors:\n{dump(severe)}"


def test_page_needs_nothing_from_other_hosts(report):
    """Every script, style sheet, font and image comes from the site itself.

    The course is used offline and in classrooms on a weak network; a page that pulls code
    from a CDN half-works there (MathJax, for one, is a local copy for that reason).
    """
    external = report.facts["external"]
    assert not external, f"{report.page}: loads from other hosts:\n{dump(external)}"


def test_math_is_typeset(report):
    """Every math element holds MathJax output, without TeX errors or raw TeX left over."""
    math = report.facts["math"]
    if math["elements"]:
        assert math["mathjax"], f"{report.page}: has math but MathJax did not start"
        assert math["untypesetCount"] == 0, f"{report.page}: math not typeset: {dump(math)}"
        assert math["mjx"] >= math["elements"], dump(math)
    assert not math["errors"], f"{report.page}: MathJax errors: {dump(math['errors'])}"
    assert not math["rawTex"], f"{report.page}: TeX shown as text: {dump(math['rawTex'])}"


#: Pages that show matplotlib's missing-glyph warning on purpose, each with the reason.
GLYPH_WARNINGS_SHOWN: dict[str, str] = {
    "book/troubleshooting.html": (
        "the tofu section prints the warning matplotlib gives without use_cjk_font(), so "
        "that learners can recognise it"
    ),
}


def test_chinese_text_uses_a_chinese_font(report):
    """Chinese characters are drawn by a font that covers Chinese (no tofu boxes).

    For each probed element DevTools reports the fonts Chromium really used and how many
    glyphs each drew; the glyphs from fonts that fontconfig lists for ``:lang=zh`` must
    cover every Han character of the element.
    """
    facts = report.facts
    cjk = cjk_font_families()
    assert cjk, "no font covering Chinese is installed: apt-get install -y fonts-noto-cjk"
    if facts["hanInPage"]:
        assert report.cjk_fonts, f"{report.page}: Chinese text found but no probe measured"
    bad = []
    for probe in report.cjk_fonts:
        meta = facts["probes"][probe["index"]]
        by_cjk = sum(f["glyphCount"] for f in probe["fonts"] if f["familyName"] in cjk)
        if by_cjk < meta["han"]:
            bad.append({**meta, "fonts": probe["fonts"]})
    assert not bad, f"{report.page}: Chinese drawn without a Chinese font:\n{dump(bad)}"
    assert not facts["glyphWarnings"] or report.page in GLYPH_WARNINGS_SHOWN, (
        f"{report.page}: a plot lacked glyphs (matplotlib warning in the output): "
        f"{dump(facts['glyphWarnings'])}"
    )


def test_images_load_and_have_alt_text(report):
    """Every image loads; every image of the page's content has a real description."""
    problems = []
    for img in report.facts["images"]:
        if not (img["complete"] and img["naturalWidth"] > 0):
            problems.append(("does not load", img))
        alt = img["alt"]
        if alt is None:
            problems.append(("no alt attribute", img))
        elif img["inArticle"]:
            name = Path(urlsplit(img["src"] or "").path).name
            if (
                not alt.strip()
                or alt.strip() in (name, img["src"])
                or re.search(r"\.(png|jpe?g|svg|gif|webp)$", alt.strip(), re.I)
            ):
                problems.append(("alt text is empty or a file name", img))
    assert not problems, f"{report.page}:\n{dump(problems)}"


def test_headings_are_in_order(report):
    """One h1 first, then no level skipped going down (h2 -> h4 is a skip)."""
    heads = report.facts["headings"]
    assert heads, f"{report.page}: no heading"
    levels = [h["level"] for h in heads]
    assert levels[0] == 1 and levels.count(1) == 1, f"{report.page}: {dump(heads)}"
    skips = [(a, b) for a, b in zip(heads, heads[1:], strict=False) if b["level"] > a["level"] + 1]
    assert not skips, f"{report.page}: heading levels skipped:\n{dump(skips)}"


def test_notebook_pages_have_launch_and_download_buttons(report, site):
    """A page built from a notebook offers Binder/Colab launch links and its .ipynb.

    A page is a notebook page when the build wrote its notebook to ``_sources/`` (Jupyter
    Book does so for .ipynb chapters and executed MyST notebooks). The launch links must
    name a source file that exists in this repository.
    """
    facts = report.facts
    stem = report.page.removesuffix(".html")
    notebook = site / "_sources" / f"{stem}.ipynb"
    if not notebook.is_file():
        assert facts["codeCells"] == 0, f"{report.page}: code cells but no _sources notebook"
        return
    launch = facts["launch"]
    assert launch["present"] and report.launch_menu_shown, f"{report.page}: {dump(launch)}"
    for host in ("mybinder.org", "colab.research.google.com"):
        links = [u for u in launch["links"] if urlsplit(u).netloc.endswith(host)]
        assert links, f"{report.page}: no {host} launch link in {dump(launch['links'])}"
        for url in links:
            m = re.search(r"/(?:tree|blob/[^/?#]+)/([^?#]+)$", url)
            assert m, f"{report.page}: cannot read the file in {url}"
            assert (REPO / m.group(1)).is_file(), f"{url} names a file not in the repository"
    download = facts["download"]
    assert download["print"], f"{report.page}: no print-to-PDF button"
    ipynb = [u for u in download["links"] if u.endswith(".ipynb")]
    assert ipynb, f"{report.page}: no .ipynb download in {dump(download)}"
    with urllib.request.urlopen(urljoin(report.url, ipynb[0])) as resp:
        nb = json.loads(resp.read())
    assert nb.get("cells"), f"{report.page}: the downloaded notebook has no cells"


def test_axe_accessibility(report):
    """axe-core (WCAG 2.1 A/AA and best practices) finds nothing of ours."""
    assert "error" not in report.axe, report.axe.get("error")
    found = []
    for violation in report.axe["violations"]:
        nodes = [n for n in violation["nodes"] if not _is_allowed(violation["id"], n["html"])]
        if nodes:
            found.append({**violation, "nodes": nodes})
    assert not found, f"{report.page}: axe-core violations:\n{dump(found)}"


# ----------------------------------------------------------------------------- the whole site


def test_internal_links_resolve(site):
    """tools/check_links.py finds no broken internal link or anchor."""
    spec = importlib.util.spec_from_file_location("check_links", REPO / "tools" / "check_links.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    problems, n_pages, n_refs = module.check_site(site)
    assert n_pages == len(site_pages(site)) and n_refs > n_pages
    assert not problems, "\n".join(problems)


class _ArticleText(HTMLParser):
    """The text of ``<article class="bd-article">`` of a Sphinx page (no tags, no alt)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.skip = 0
        self.parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        if self.depth:
            self.depth += tag == "article"
            self.skip += tag in ("script", "style")
        elif tag == "article" and "bd-article" in (dict(attrs).get("class") or ""):
            self.depth = 1

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= tag == "article"
            self.skip -= tag in ("script", "style") and self.skip > 0

    def handle_data(self, data):
        if self.depth and not self.skip:
            self.parts.append(data)


def article_text(path: Path) -> str:
    parser = _ArticleText()
    parser.feed(path.read_text(encoding="utf-8"))
    return html.unescape(" ".join(parser.parts))


def search(browser: SiteBrowser, term: str) -> list[str]:
    """Pages (site-relative paths) that the site's own search page lists for ``term``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.load(f"{browser.base_url}search.html?q={quote(term)}")
    summary = WebDriverWait(browser.driver, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "#search-results .search-summary")
    )
    WebDriverWait(browser.driver, 60).until(
        lambda _: re.search(r"found|did not match", summary.text, re.I)
    )
    hrefs = browser.driver.execute_script(
        "return Array.from(document.querySelectorAll('#search-results ul.search li a'))"
        ".map(a => a.href)"
    )
    return sorted({urlsplit(h).path.lstrip("/") for h in hrefs})


@pytest.mark.parametrize(
    ("term", "pattern"),
    [
        # Sphinx stems English words: "quantization" also finds "quantized", "quantizer";
        # a word is a run of letters, digits and "_" (quantize_symmetric is another word)
        ("quantization", re.compile(r"\bquantiz[a-z]*\b", re.I)),
        ("量化", re.compile("量化")),
    ],
    ids=["english", "chinese"],
)
def test_search_finds_every_page_with_the_term(browser, site, term, pattern):
    """The search page lists every page whose text has the term (Chinese needs a segmenter)."""
    expected = sorted(p for p in site_pages(site) if pattern.search(article_text(site / p)))
    expected = [p for p in expected if p not in ("search.html", "genindex.html")]
    assert expected, f"no page of the site contains {term!r}: the test would prove nothing"
    found = search(browser, term)
    missing = sorted(set(expected) - set(found))
    assert not missing, (
        f"searching {term!r} misses {missing} (found {found}); for Chinese the index needs "
        "`html_search_language: zh` and the jieba segmenter"
    )


def _first(pages: list[str], *needles: str) -> str | None:
    return next((p for p in pages if all(n in p for n in needles)), None)


def test_screenshots_of_key_pages(browser, site):
    """Screenshots of the home page, the richest chapter, the glossary and search results.

    The home page is reached through the site's root ``index.html`` (a redirect). The
    chapter is the notebook page with the most math among those with figures.
    """
    from selenium.webdriver.common.by import By

    shots = []
    browser.load(browser.base_url)
    assert browser.driver.find_elements(By.CSS_SELECTOR, "article h1"), "root page: no h1"
    shots.append(browser.screenshot("01-home"))

    pages = site_pages(site)
    richest, best = None, (0, 0)
    for page in pages:
        text = (site / page).read_text(encoding="utf-8")
        n_math, n_img = text.count('class="math'), text.count('src="../_images/')
        if n_img and (n_math, n_img) > best:
            richest, best = page, (n_math, n_img)
    assert richest, "no page has both math and figures"
    browser.load(browser.base_url + richest)
    shots.append(browser.screenshot("02-chapter-top"))
    browser.driver.execute_script(
        "const m = document.querySelector('article div.math');"
        "if (m) m.scrollIntoView({block: 'center'});"
    )
    shots.append(browser.screenshot("03-chapter-math"))
    browser.driver.execute_script(
        "const i = document.querySelector('article img[src*=\"_images/\"]');"
        "i.scrollIntoView({block: 'center'});"
    )
    shots.append(browser.screenshot("04-chapter-figure"))

    glossary = _first(pages, "glossary")
    if glossary:
        browser.load(browser.base_url + glossary)
        shots.append(browser.screenshot("05-glossary"))
    assert search(browser, "量化")
    shots.append(browser.screenshot("06-search-zh"))
    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot}: suspiciously small screenshot"
    print("screenshots:", *shots, sep="\n  ")
