"""Fixtures of the browser tests: the built website served on localhost, headless Chromium.

The site is ``_build/html`` of the repository, or the folder named by ``CLIPQ_SITE_DIR``.
Chromium and its driver are Debian's (``apt-get install chromium chromium-driver
fonts-noto-cjk``; other paths via ``CLIPQ_CHROMIUM`` and ``CLIPQ_CHROMEDRIVER``). Nothing is
downloaded: Selenium is given the driver's path, so Selenium Manager never runs. axe-core
comes from ``npm ci`` in this folder. Each page is loaded once per session
(:meth:`sitecheck.SiteBrowser.visit`); the tests check the facts gathered in that visit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sitecheck import (
    BUILD_HINT,
    SITE_DIR,
    PageReport,
    SiteBrowser,
    make_driver,
    missing_tools,
    serve,
    site_pages,
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``page`` with every page of the site, found at collection time."""
    if "page" in metafunc.fixturenames:
        metafunc.parametrize("page", site_pages() or [f"<no website at {SITE_DIR}>"])


@pytest.fixture(scope="session")
def site() -> Path:
    """The built website; fails with the build command when it is missing."""
    if not (SITE_DIR / "index.html").is_file():
        pytest.fail(f"no website at {SITE_DIR} (no index.html): {BUILD_HINT}", pytrace=False)
    return SITE_DIR


@pytest.fixture(scope="session")
def base_url(site: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/`` serving the site."""
    with serve(site) as url:
        yield url


@pytest.fixture(scope="session")
def browser(base_url: str) -> Iterator[SiteBrowser]:
    """One headless Chromium for the whole session."""
    missing = missing_tools()
    if missing:
        pytest.fail("the browser tests need: " + "; ".join(missing), pytrace=False)
    driver = make_driver()
    try:
        yield SiteBrowser(driver, base_url)
    finally:
        driver.quit()


@pytest.fixture
def report(browser: SiteBrowser, page: str) -> PageReport:
    """The facts of ``page`` (visited once per session)."""
    return browser.visit(page)
