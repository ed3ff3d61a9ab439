"""Tests of the pre-flight check (``python -m clipq_helpers.preflight``).

It passes in this environment, and each check fails with a clear message when what it
checks is missing or wrong: the paths it reads are passed in (or a lookup is monkeypatched),
nothing real is deleted.
"""

from __future__ import annotations

import io
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch
from safetensors.torch import save_file

from clipq_helpers import models, plots, preflight

ROOT = Path(__file__).resolve().parents[1]
DEJAVU = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"


def _by_name(results: list[preflight.Result]) -> dict[str, preflight.Result]:
    return {r.name: r for r in results}


# --------------------------------------------------------------------------- it passes here


def test_preflight_passes_here(capsys):
    rc = preflight.main([])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in ("python", "packages", "font", "model", "grading", "jupyter"):
        assert f"✓ {name}" in out, out
    assert "✗" not in out and "NOT READY" not in out
    assert out.strip().splitlines()[-1].startswith("READY: all 6 checks passed")


@pytest.mark.slow
def test_command_line_is_fast_and_exits_0():
    """The real command: exit code 0, at most 10 s of CPU (wall time on a busy machine varies)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [sys.executable, "-m", "clipq_helpers.preflight"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "READY" in proc.stdout
    assert cpu < 10, f"pre-flight used {cpu:.1f} s of CPU"


# --------------------------------------------------------------------------- font


def test_missing_font_file_fails_with_fix(tmp_path, capsys):
    missing = tmp_path / "NotoSansCJKsc-Regular.otf"
    rc = preflight.main(["--font", str(missing), "--no-jupyter"])
    out = capsys.readouterr().out
    assert rc == 1
    line = next(x for x in out.splitlines() if "font" in x and "✗" in x)
    assert str(missing) in line
    fix = out.splitlines()[out.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix:") and "pip install -r requirements.txt" in fix
    assert "NOT READY: font failed" in out
    assert "✓ model" in out  # the other checks still ran and passed


def test_font_package_missing(monkeypatch):
    """As if mplfonts were not installed: plots.cjk_font_path raises its install hint."""

    def no_package():
        raise FileNotFoundError("the Python package 'mplfonts' is not installed")

    monkeypatch.setattr(plots, "cjk_font_path", no_package)
    r = preflight.check_font()
    assert not r.ok
    assert "mplfonts" in r.summary and "Chinese font missing" in r.summary
    assert "pip install" in r.fix


def test_font_without_chinese_glyphs_fails():
    r = preflight.check_font(DEJAVU)
    assert not r.ok
    assert "DejaVu Sans" in r.summary and "empty boxes" in r.summary


def test_not_a_font_file_fails(tmp_path):
    bad = tmp_path / "font.otf"
    bad.write_text("not a font")
    r = preflight.check_font(bad)
    assert not r.ok and "cannot read" in r.summary


def test_real_font_passes():
    r = preflight.check_font(plots.cjk_font_path())
    assert r.ok, r.summary


# --------------------------------------------------------------------------- model


def test_missing_model_file_fails_with_fix(tmp_path, capsys):
    rc = preflight.main(["--model-dir", str(tmp_path), "--no-jupyter"])
    out = capsys.readouterr().out
    assert rc == 1
    line = next(x for x in out.splitlines() if "✗ model" in x)
    assert "does not load" in line and str(tmp_path / "model.safetensors") in line
    assert "NOT READY: model failed" in out


def test_pointer_file_instead_of_weights(tmp_path):
    shutil.copy(models.POCKET_DIR / "config.json", tmp_path)
    (tmp_path / "model.safetensors").write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n"
    )
    r = preflight.check_model(tmp_path)
    assert not r.ok and "bytes, not a model" in r.summary


def test_random_weights_fail_the_sanity_check(tmp_path):
    """A checkpoint that loads but holds untrained weights is caught."""
    shutil.copy(models.POCKET_DIR / "config.json", tmp_path)
    torch.manual_seed(0)
    model = models.ChineseCLIPModel(models.ChineseCLIPConfig.from_pretrained(models.POCKET_DIR))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp_path / "model.safetensors"))
    r = preflight.check_model(tmp_path)
    assert not r.ok, r.summary
    assert "loads but matched only" in r.summary and "random weights" in r.summary


def test_shipped_model_passes():
    r = preflight.check_model()
    assert r.ok, r.summary


# --------------------------------------------------------------------------- packages, python


def test_requirements_parsing_skips_options_and_editable():
    text = (
        "# comment\n"
        "--extra-index-url https://download.pytorch.org/whl/cpu\n"
        "torch==2.13.0  # the CPU build\n"
        "numpy==2.4.6\n"
        "-e .\n"
        "\n"
    )
    reqs = preflight.parse_requirements(text)
    assert [str(r) for r in reqs] == ["torch==2.13.0", "numpy==2.4.6"]
    with pytest.raises(ValueError, match="line 2"):
        preflight.parse_requirements("numpy==2.4.6\nthis is not = a requirement\n")


def test_wrong_and_missing_packages_are_listed(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(
        "numpy==0.0.1\nclipq-no-such-package==1.0\njupyter-book==2.0.0\n", encoding="utf-8"
    )
    r = preflight.check_packages(req, modules=("numpy", "clipq_no_such_module"))
    assert not r.ok
    text = "\n".join(r.details)
    assert "numpy" in text and "pins numpy==0.0.1" in text
    assert "clipq-no-such-package is not installed" in text
    assert "import clipq_no_such_module fails: ModuleNotFoundError" in text
    assert "Jupyter Book 2" in r.fix and "pip install 'jupyter-book==2.0.0'" in r.fix
    assert "pip install -r requirements.txt" in r.fix


def test_course_requirements_pass():
    path = preflight.find_requirements()
    assert path == ROOT / "requirements.txt"
    assert preflight.check_packages(path).ok


def test_missing_requirements_file(tmp_path):
    r = preflight.check_packages(tmp_path / "requirements.txt")
    assert not r.ok and "requirements.txt not found" in r.summary


def test_python_version():
    assert preflight.check_python().ok
    old = preflight.check_python(version=(3, 9, 18), requires=">=3.10")
    assert not old.ok
    assert "3.9.18 is not supported" in old.summary and "python3.11 -m venv" in old.fix


# --------------------------------------------------------------------------- grading, report


def test_grading_check_passes_and_rejects():
    r = preflight.check_grading()
    assert r.ok and "cases pass" in r.summary


def test_unexpected_exception_becomes_a_failed_check(monkeypatch):
    def boom():
        raise RuntimeError("surprise")

    monkeypatch.setattr(preflight, "check_grading", boom)
    results = _by_name(preflight.run_checks(jupyter=False))
    assert not results["grading"].ok and "RuntimeError: surprise" in results["grading"].summary
    assert results["python"].ok


def test_jupyter_problems_are_warnings_not_failures():
    results = [
        preflight.Result("python", True, "Python 3.11"),
        preflight.Result("jupyter", False, "no kernel", "install one", required=False),
    ]
    text = preflight.report(results, 1.0, stream=io.StringIO())
    assert "! jupyter" in text and "fix: install one" in text
    assert text.splitlines()[-1].startswith("READY: the required checks passed")


def test_ascii_terminal_gets_ascii_marks():
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    results = [
        preflight.Result("python", True, "ok"),
        preflight.Result("font", False, "missing", "pip install"),
    ]
    text = preflight.report(results, 1.0, stream=stream)
    assert "OK python" in text and "XX font" in text
    text.encode("ascii")
