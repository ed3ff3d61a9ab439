"""Tests of clipq_helpers.plots: Chinese labels render with the shipped CJK font."""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from clipq_helpers import plots

CHINESE_TITLE = "量化误差与离群值"
CHINESE_XLABEL = "通道编号"
CHINESE_YLABEL = "最大绝对值"
CHINESE_LEGEND = "逐张量 (per-tensor)"


@pytest.fixture
def rc():
    """Run a test inside an rc_context so that rcParams changes do not leak."""
    with matplotlib.rc_context():
        yield matplotlib.rcParams


def _render(fig: Figure) -> np.ndarray:
    """Draw ``fig`` with Agg, save it as PNG; return the RGBA buffer (H, W, 4) uint8."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    fig.savefig(io.BytesIO(), format="png")
    return np.asarray(canvas.buffer_rgba()).copy()


def _chinese_figure() -> tuple[Figure, list]:
    """A figure with a Chinese title, axis labels, legend and negative tick labels."""
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    x = np.linspace(-2.0, 2.0, 9)
    ax.plot(x, -(x**2), label=CHINESE_LEGEND)
    ax.plot(x, x, label="INT8")
    title = ax.set_title(CHINESE_TITLE)
    xlabel = ax.set_xlabel(CHINESE_XLABEL)
    ylabel = ax.set_ylabel(CHINESE_YLABEL)
    legend = ax.legend()
    return fig, [title, xlabel, ylabel, *legend.get_texts()]


def _render_collecting_font_problems(fig: Figure, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Render ``fig``; return every missing-glyph warning and findfont log message."""
    caplog.clear()
    with (
        caplog.at_level(logging.DEBUG, logger="matplotlib.font_manager"),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        _render(fig)
    problems = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    problems += [
        r.getMessage()
        for r in caplog.records
        if r.name == "matplotlib.font_manager"
        and r.levelno >= logging.WARNING
        and ("findfont" in r.getMessage() or "not found" in r.getMessage())
    ]
    return problems


def test_use_cjk_font_returns_the_noto_font_and_sets_rc(rc):
    name = plots.use_cjk_font()
    assert name == plots.CJK_FONT_NAME == "Noto Sans CJK SC"
    assert rc["font.family"] == ["sans-serif"]
    assert rc["font.sans-serif"][0] == name
    assert "DejaVu Sans" in rc["font.sans-serif"]
    assert rc["axes.unicode_minus"] is False
    assert rc["axes.prop_cycle"].by_key()["color"] == list(plots.OKABE_ITO)
    assert rc["figure.dpi"] >= 100


def test_use_cjk_font_is_idempotent(rc):
    plots.use_cjk_font()
    before = dict(rc)
    n_fonts = len(font_manager.fontManager.ttflist)
    assert plots.use_cjk_font() == plots.CJK_FONT_NAME
    assert len(font_manager.fontManager.ttflist) == n_fonts
    assert dict(rc) == before


def test_font_file_is_the_one_shipped_by_mplfonts():
    path = plots.cjk_font_path()
    assert path.name == "NotoSansCJKsc-Regular.otf"
    assert path.parent.parent.name == "mplfonts"
    assert font_manager.FontProperties(fname=str(path)).get_name() == plots.CJK_FONT_NAME


def test_chinese_figure_renders_without_missing_glyphs(rc, caplog):
    plots.use_cjk_font()
    fig, texts = _chinese_figure()
    assert _render_collecting_font_problems(fig, caplog) == []
    cjk = plots.cjk_font_path().resolve()
    for text in texts:
        used = font_manager.findfont(text.get_fontproperties(), fallback_to_default=False)
        assert Path(used).resolve() == cjk, text.get_text()
    tick_labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any(label.startswith("-") for label in tick_labels), tick_labels  # ASCII minus


def test_without_the_cjk_font_the_check_reports_missing_glyphs(rc, caplog):
    """Control: the glyph check above can fail (DejaVu Sans has no Chinese glyphs)."""
    rc["font.family"] = ["sans-serif"]
    rc["font.sans-serif"] = ["DejaVu Sans"]
    fig, _ = _chinese_figure()
    problems = _render_collecting_font_problems(fig, caplog)
    assert any("missing from font" in p for p in problems), problems


def test_distinct_chinese_characters_render_as_distinct_glyphs(rc):
    """Tofu (the missing-glyph box) would draw every character the same."""
    plots.use_cjk_font()

    def draw(char: str) -> np.ndarray:
        fig = Figure(figsize=(1, 1), dpi=64)
        fig.text(0.5, 0.5, char, fontsize=40, ha="center", va="center")
        return _render(fig)[..., :3]

    a, b, blank = draw("量"), draw("化"), draw(" ")
    assert not np.array_equal(a, blank)  # something was drawn
    assert not np.array_equal(a, b)


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(plots, "FONT_PACKAGE", "mplfonts_is_not_installed_here")
    with pytest.raises(FileNotFoundError, match=r"pip install mplfonts==0\.0\.11"):
        plots.cjk_font_path()
    with pytest.raises(FileNotFoundError, match="not installed"):
        plots.use_cjk_font()


def test_missing_font_file_gives_install_hint(monkeypatch):
    monkeypatch.setattr(plots, "FONT_FILE", "NoSuchFont-Regular.otf")
    with pytest.raises(FileNotFoundError, match=r"NoSuchFont-Regular\.otf.*pip install mplfonts"):
        plots.cjk_font_path()
