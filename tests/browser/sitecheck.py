"""Helpers of the browser tests: the site's pages, a headless Chromium, facts per page."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SITE_DIR = Path(os.environ.get("CLIPQ_SITE_DIR", REPO / "_build" / "html"))
SCREENSHOT_DIR = Path(os.environ.get("CLIPQ_SCREENSHOT_DIR", SITE_DIR.parent / "screenshots"))
CHROMIUM = Path(os.environ.get("CLIPQ_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CLIPQ_CHROMEDRIVER", "/usr/bin/chromedriver"))
AXE_JS = HERE / "node_modules" / "axe-core" / "axe.min.js"
BUILD_HINT = "build the book first: jupyter-book build ."
INSTALL_HINT = "apt-get install -y chromium chromium-driver fonts-noto-cjk"
#: Folders of a Sphinx site that hold assets, not pages.
ASSET_DIRS = {"_static", "_sources", "_images", "_downloads"}
#: Longest wait for one page (load, MathJax, images), seconds.
PAGE_TIMEOUT = 60

JS_DIR = HERE / "js"


def site_pages(site: Path = SITE_DIR) -> list[str]:
    """Every HTML page of the site as a path relative to it, sorted ([] if not built)."""
    if not site.is_dir():
        return []
    return sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not (set(p.relative_to(site).parts[:-1]) & ASSET_DIRS)
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on a free localhost port from a thread; yield its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def missing_tools() -> list[str]:
    """What the browser tests need and do not find, each with how to get it."""
    missing = [f"{p} ({INSTALL_HINT})" for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if not AXE_JS.is_file():
        missing.append(f"{AXE_JS} (run `npm ci` in {HERE})")
    return missing


def make_driver() -> Any:
    """Headless Chromium driven by Debian's chromedriver, 1280x900, console logs kept.

    The driver's path is given, so Selenium Manager never runs (nothing is downloaded).
    """
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--hide-scrollbars",
        "--lang=en-US",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    driver.set_script_timeout(PAGE_TIMEOUT)
    return driver


def cjk_font_families() -> set[str]:
    """Family names of the installed fonts that cover Chinese (fontconfig, ``:lang=zh``)."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        pytest.fail(f"fc-list (fontconfig) is missing: {INSTALL_HINT}", pytrace=False)
    out = subprocess.run(
        [fc_list, ":lang=zh", "family"], capture_output=True, text=True, check=True
    ).stdout
    return {name.strip() for line in out.splitlines() for name in line.split(",") if name.strip()}


@dataclass
class PageReport:
    """Facts about one page, gathered in one visit."""

    page: str
    url: str
    console: list[dict[str, Any]] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
    cjk_fonts: list[dict[str, Any]] = field(default_factory=list)
    axe: dict[str, Any] = field(default_factory=dict)
    launch_menu_shown: bool | None = None


class SiteBrowser:
    """One headless Chromium; ``visit(page)`` loads a page once and gathers its facts."""

    def __init__(self, driver: Any, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self._reports: dict[str, PageReport] = {}
        self._collect_js = (JS_DIR / "collect.js").read_text(encoding="utf-8")
        self._axe_js = AXE_JS.read_text(encoding="utf-8")

    def load(self, url: str) -> list[dict[str, Any]]:
        """Open a URL, wait for the document, MathJax and images; return console entries."""
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.get_log("browser")  # drop what an earlier page left
        self.driver.get(url)
        wait = WebDriverWait(self.driver, PAGE_TIMEOUT)
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        if self.driver.execute_script(
            "return !!document.querySelector('meta[http-equiv=\"refresh\" i]')"
        ):  # a redirect page (the site's root index.html): follow it
            wait.until(lambda d: d.current_url != url)
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        self.driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            const mj = window.MathJax;
            const ready = mj && mj.startup && mj.startup.promise
                ? mj.startup.promise : Promise.resolve();
            const imgs = Array.from(document.images);
            imgs.forEach(i => { i.loading = "eager"; });
            ready.then(() => Promise.all(imgs.map(i => i.decode().catch(() => null))))
                 .then(() => document.fonts.ready)
                 .then(() => done(true), () => done(false));
            """
        )
        return self.driver.get_log("browser")

    def visit(self, page: str) -> PageReport:
        if page in self._reports:
            return self._reports[page]
        url = self.base_url + page
        console = self.load(url)
        report = PageReport(page=page, url=url, console=console)
        report.facts = self.driver.execute_script(self._collect_js)
        report.cjk_fonts = self._cjk_fonts()
        if report.facts["launch"]["present"]:
            report.launch_menu_shown = self._open_launch_menu()
        report.axe = self.run_axe()
        report.console += self.driver.get_log("browser")
        self._reports[page] = report
        return report

    def _cjk_fonts(self) -> list[dict[str, Any]]:
        """Fonts Chromium really used for the elements ``collect.js`` marked as CJK probes.

        DevTools' ``CSS.getPlatformFontsForNode`` reports the platform fonts (and glyph
        counts) used to draw the text children of a node: the used font, not a CSS wish.
        """
        d = self.driver
        d.execute_cdp_cmd("DOM.enable", {})
        d.execute_cdp_cmd("CSS.enable", {})
        root = d.execute_cdp_cmd("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node_ids = d.execute_cdp_cmd(
            "DOM.querySelectorAll", {"nodeId": root, "selector": "[data-cjk-probe]"}
        )["nodeIds"]
        probes = []
        for node_id in node_ids:
            attrs = d.execute_cdp_cmd("DOM.getAttributes", {"nodeId": node_id})["attributes"]
            index = int(dict(zip(attrs[::2], attrs[1::2], strict=True))["data-cjk-probe"])
            fonts = d.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node_id})
            probes.append({"index": index, "fonts": fonts["fonts"]})
        d.execute_cdp_cmd("CSS.disable", {})
        d.execute_cdp_cmd("DOM.disable", {})
        return sorted(probes, key=lambda p: p["index"])

    def _open_launch_menu(self) -> bool:
        """Click the launch (rocket) button; True when its menu is then shown."""
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        d = self.driver
        toggle = d.find_element(By.CSS_SELECTOR, ".dropdown-launch-buttons > button")
        toggle.click()
        menu = d.find_element(By.CSS_SELECTOR, ".dropdown-launch-buttons .dropdown-menu")
        try:
            WebDriverWait(d, 5).until(lambda _: menu.is_displayed())
        except Exception:  # noqa: BLE001 (a timeout means: not shown)
            return False
        toggle.click()  # close it again, so that it does not cover the page for axe
        return True

    def run_axe(self) -> dict[str, Any]:
        """Run axe-core on the current page (WCAG 2.1 A/AA rules and best practices)."""
        if not self.driver.execute_script("return typeof window.axe === 'object'"):
            self.driver.execute_script(self._axe_js)
        return self.driver.execute_async_script(
            """
            const done = arguments[arguments.length - 1];
            axe.run(document, {
                runOnly: {type: "tag",
                          values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
                resultTypes: ["violations"],
            }).then(r => done({violations: r.violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => ({target: n.target.join(" "),
                                          html: n.html.slice(0, 200),
                                          summary: n.failureSummary}))}))}),
                    e => done({error: String(e)}));
            """
        )

    def screenshot(self, name: str) -> Path:
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path


def dump(obj: Any) -> str:
    """Readable JSON for assertion messages."""
    return json.dumps(obj, ensure_ascii=False, indent=1)[:4000]
