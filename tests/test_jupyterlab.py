"""JupyterLab, as a learner uses it: it opens at the course folder, and ipywidgets 8 work live.

* ``jupyter lab`` started in the course folder serves that folder (README: "with this folder
  in the file browser"), and an exercise notebook opens at ``/lab/tree/exercises/...``.
* In headless Chromium (Debian's ``chromium`` and ``chromium-driver``; nothing downloaded),
  chapter 3's own playground cell shows its sliders and figure, and clicking a control
  redraws the figure through the kernel (the widget round trip works).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = ROOT / "book" / "ch03_quantization_math.ipynb"
CHROMIUM = Path(os.environ.get("CLIPQ_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CLIPQ_CHROMEDRIVER", "/usr/bin/chromedriver"))
JUPYTER = str(Path(sys.executable).parent / "jupyter")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


#: The workshop page's advice for a classroom: no news pop-up, no update check.
QUIET = {"fetchNews": "false", "checkForUpdates": False}


@contextmanager
def jupyter_lab(cwd: Path, log: Path, settings: Path | None = None) -> Iterator[tuple[str, str]]:
    """``jupyter lab`` started in ``cwd`` as the README says; yields (base URL, token).

    ``settings``: a JupyterLab user-settings folder (``JUPYTERLAB_SETTINGS_DIR``) to use.
    """
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    if settings is not None:
        env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    cmd = [JUPYTER, "lab", "--no-browser", f"--port={port}", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root; Jupyter refuses without it
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while _get(f"{url}/api/status?token={token}")[0] != 200:
                assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
                assert time.monotonic() < deadline, "JupyterLab did not start in 120 s"
                time.sleep(0.5)
            yield url, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_jupyter_lab_opens_at_the_course_folder(tmp_path):
    with jupyter_lab(ROOT, tmp_path / "lab.log") as (url, token):
        status, body = _get(f"{url}/api/contents?token={token}")
        assert status == 200
        names = {item["name"] for item in json.loads(body)["content"]}
        assert {"book", "exercises", "solutions", "README.md", "requirements.txt"} <= names
        status, _ = _get(f"{url}/lab/tree/exercises/ch03_quantization.ipynb?token={token}")
        assert status == 200
        status, body = _get(f"{url}/api/kernelspecs?token={token}")
        assert status == 200 and "python3" in json.loads(body)["kernelspecs"]
    assert (
        "Serving notebooks from local directory: " + str(ROOT) in (tmp_path / "lab.log").read_text()
    )


def _playground_notebook(folder: Path) -> Path:
    """A notebook of chapter 3's own cells: its imports and its live playground cell."""
    chapter = nbformat.read(str(CHAPTER), as_version=4)
    code = [c for c in chapter.cells if c.cell_type == "code"]
    imports = next(c for c in code if "from clipq_helpers.playground import" in c.source)
    live = next(c for c in code if c.source.lstrip().startswith("playground()"))
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(imports.source), nbformat.v4.new_code_cell(live.source)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path = folder / "playground.ipynb"
    nbformat.write(nb, str(path))
    return path


def _driver():
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
        "--disable-extensions",
        "--no-first-run",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


@pytest.mark.slow
@pytest.mark.browser
def test_playground_widgets_work_in_jupyterlab(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    if missing:
        pytest.fail(f"missing {missing}: apt-get install chromium chromium-driver", pytrace=False)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    work = tmp_path / "lab"
    work.mkdir()
    _playground_notebook(work)
    shots = Path(os.environ.get("CLIPQ_SCREENSHOT_DIR", ROOT / "_build" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    settings = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps(QUIET))
    with jupyter_lab(work, tmp_path / "lab.log", tmp_path / "settings") as (url, token):
        driver = _driver()
        try:
            driver.get(f"{url}/lab/tree/playground.ipynb?token={token}")
            wait = WebDriverWait(driver, 180)
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-Notebook .jp-Cell")))
            wait.until(ec.element_to_be_clickable((By.XPATH, "//li[@role='menuitem'][.='Run']")))
            driver.find_element(By.XPATH, "//li[@role='menuitem'][.='Run']").click()
            run_all = "li[data-command='runmenu:run-all']"  # Run > Run All Cells
            wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, run_all))).click()
            sliders = wait.until(
                ec.presence_of_all_elements_located((By.CSS_SELECTOR, ".widget-slider"))
            )
            figure = wait.until(
                ec.presence_of_element_located((By.CSS_SELECTOR, ".widget-output img"))
            )
            before = figure.get_attribute("src")
            assert len(sliders) == 3  # bits, clip, outlier
            driver.save_screenshot(str(shots / "jupyterlab_playground.png"))
            buttons = driver.find_elements(By.CSS_SELECTOR, ".widget-toggle-button")
            driver.execute_script("arguments[0].scrollIntoView({block: 'end'})", figure)
            asym = next(b for b in buttons if "asymmetric" in b.text and "非" in b.text)
            asym.click()
            WebDriverWait(driver, 120).until(
                lambda d: (
                    d.find_element(By.CSS_SELECTOR, ".widget-output img").get_attribute("src")
                    != before
                )
            )
            figure = driver.find_element(By.CSS_SELECTOR, ".widget-output img")
            driver.execute_script("arguments[0].scrollIntoView({block: 'end'})", figure)
            driver.save_screenshot(str(shots / "jupyterlab_playground_asymmetric.png"))
            page = driver.page_source
            assert "official Jupyter news" not in page  # the classroom settings took effect
            assert "Error displaying widget" not in page
            assert "Failed to load model class" not in page
        finally:
            driver.quit()
