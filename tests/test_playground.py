"""Tests of clipq_helpers.playground: quantize_with, levels_used, data, figures, sliders."""

from __future__ import annotations

import warnings

import matplotlib
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from clipq_helpers.playground import (
    DATA_KINDS,
    SCHEMES,
    QuantResult,
    clipped_fraction,
    draw_error,
    draw_grid_histogram,
    levels_used,
    make_data,
    playground,
    playground_figure,
    quantize_with,
)
from clipq_helpers.quantize import (
    asymmetric_params,
    dequantize,
    quantize_asymmetric,
    quantize_symmetric,
    sqnr_db,
    symmetric_scale,
)

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)


@pytest.fixture(autouse=True)
def _cjk_font_and_cleanup():
    """Chinese labels need the course font (as in the notebooks); restore rcParams after."""
    from clipq_helpers.plots import use_cjk_font

    with matplotlib.rc_context():
        use_cjk_font()
        yield
    plt.close("all")


# ----------------------------------------------------------------------------- quantize_with


def test_symmetric_full_range_matches_reference():
    x = torch.tensor([-1.0, 0.5, 2.54])
    r = quantize_with(x, bits=8, scheme="symmetric")
    assert r.q.dtype == torch.int8
    assert r.q.tolist() == [-50, 25, 127]
    assert r.scale == pytest.approx(2.54 / 127)
    assert r.zero_point == 0 and (r.qmin, r.qmax) == (-127, 127) and r.levels == 255


def test_asymmetric_full_range_matches_reference():
    x = torch.tensor([-1.0, 0.0, 3.0])
    r = quantize_with(x, bits=8, scheme="asymmetric")
    s, z = asymmetric_params(x)
    assert r.zero_point == z == 64
    assert r.scale == pytest.approx(float(s))
    assert torch.equal(r.q, quantize_asymmetric(x, s, z))
    assert (r.qmin, r.qmax, r.levels) == (0, 255, 256)


@given(
    values=st.lists(st.floats(-100, 100, width=32), min_size=1, max_size=40),
    bits=st.integers(2, 12),
    scheme=st.sampled_from(SCHEMES),
    clip=st.floats(0.05, 1.0),
)
def test_dequantized_values_lie_on_the_grid_and_zero_is_exact(values, bits, scheme, clip):
    x = torch.tensor(values, dtype=torch.float32)
    r = quantize_with(x, bits=bits, scheme=scheme, clip=clip)
    assert r.q.shape == x.shape and r.x_hat.dtype == torch.float32
    assert int(r.q.min()) >= r.qmin and int(r.q.max()) <= r.qmax
    assert torch.allclose(r.x_hat, dequantize(r.q, r.scale, r.zero_point))
    # 0 is always a level, so a zero input comes back as exactly 0
    zero_back = dequantize(torch.tensor([r.zero_point]), r.scale, r.zero_point)
    assert float(zero_back) == 0.0
    # inside the grid the error is at most half a step
    inside = (x >= r.lo) & (x <= r.hi)
    err = (r.x_hat.double() - x.double()).abs()[inside]
    if err.numel():
        assert float(err.max()) <= r.scale / 2 * (1 + 1e-5) + 1e-6


def test_clip_shrinks_the_scale_and_clips():
    x = make_data("gaussian", n=2000, seed=3)
    full = quantize_with(x, bits=8, clip=1.0)
    half = quantize_with(x, bits=8, clip=0.5)
    assert half.scale == pytest.approx(full.scale * 0.5, rel=1e-6)
    assert clipped_fraction(x, full) == 0.0
    assert clipped_fraction(x, half) > 0.0
    expected = quantize_symmetric(x, float(symmetric_scale(x)) * 0.5)
    assert torch.equal(half.q, expected)


def test_asymmetric_beats_symmetric_on_gelu_data():
    x = make_data("gelu", n=8192, seed=1)
    sym = quantize_with(x, bits=8, scheme="symmetric")
    asym = quantize_with(x, bits=8, scheme="asymmetric")
    assert levels_used(asym.q) > 1.5 * levels_used(sym.q)
    assert sqnr_db(x, asym.x_hat) > sqnr_db(x, sym.x_hat) + 3.0


def test_grid_has_every_level_in_order():
    r = quantize_with(torch.tensor([-0.3, 1.0]), bits=3, scheme="asymmetric")
    grid = r.grid()
    assert grid.shape == (r.levels,)
    assert torch.all(grid[1:] > grid[:-1])
    assert float(grid[0]) == pytest.approx(r.lo) and float(grid[-1]) == pytest.approx(r.hi)
    assert 0.0 in grid.tolist()


def test_all_zero_tensor():
    for scheme in SCHEMES:
        r = quantize_with(torch.zeros(5), scheme=scheme)
        assert r.scale == 1.0 and r.zero_point == 0
        assert torch.equal(r.x_hat, torch.zeros(5))


def test_quantize_with_does_not_modify_input():
    x = torch.tensor([-1.0, 0.25, 3.0])
    before = x.clone()
    quantize_with(x, scheme="asymmetric", clip=0.3)
    assert torch.equal(x, before)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"scheme": "affine"}, ValueError),
        ({"clip": 0.0}, ValueError),
        ({"clip": 1.5}, ValueError),
        ({"clip": "1"}, TypeError),
        ({"bits": 1}, ValueError),
        ({"bits": 8.0}, TypeError),
    ],
)
def test_quantize_with_rejects_bad_settings(kwargs, error):
    with pytest.raises(error):
        quantize_with(torch.ones(3), **kwargs)


def test_quantize_with_rejects_bad_tensors():
    with pytest.raises(TypeError):
        quantize_with([1.0, 2.0])
    with pytest.raises(TypeError):
        quantize_with(torch.arange(3))
    with pytest.raises(ValueError):
        quantize_with(torch.tensor([1.0, float("nan")]))


# ----------------------------------------------------------------------------- levels_used


def test_levels_used_counts_distinct_codes():
    assert levels_used(torch.tensor([3, 3, -1, 0, 3], dtype=torch.int8)) == 3
    assert levels_used(torch.tensor([[7]], dtype=torch.uint8)) == 1


def test_levels_used_rejects_bad_input():
    with pytest.raises(TypeError):
        levels_used(torch.tensor([1.0]))
    with pytest.raises(TypeError):
        levels_used([1, 2])
    with pytest.raises(ValueError):
        levels_used(torch.tensor([], dtype=torch.int8))


def test_clipped_fraction_ignores_values_within_half_a_step():
    r = quantize_with(torch.tensor([-1.0, 1.0]), bits=8)  # grid ends at +-1
    x = torch.tensor([1.0 + 0.4 * r.scale, 1.0 + 0.6 * r.scale, 0.0, -5.0])
    assert clipped_fraction(x, r) == pytest.approx(0.5)


# ----------------------------------------------------------------------------- data


def test_make_data_is_deterministic_and_has_the_outlier():
    a = make_data("gelu", n=100, seed=7)
    b = make_data("gelu", n=100, seed=7)
    c = make_data("gelu", n=100, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.dtype == torch.float32 and a.shape == (100,)
    assert float(a.min()) >= -0.2  # GELU never goes below about -0.17
    o = make_data("gaussian", n=100, outlier=30.0, seed=7)
    rest = make_data("gaussian", n=100, seed=7)
    assert torch.equal(o[1:], rest[1:])
    assert float(o[0]) == pytest.approx(30.0 * float(rest.std()), rel=1e-5)  # std before


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"kind": "uniform"}, ValueError), ({"n": 0}, ValueError), ({"outlier": -1.0}, ValueError)],
)
def test_make_data_rejects_bad_input(kwargs, error):
    with pytest.raises(error):
        make_data(**kwargs)


# ----------------------------------------------------------------------------- figures


def _texts(fig) -> str:
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return " ".join(parts)


@pytest.mark.parametrize("data", DATA_KINDS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_playground_figure_reports_the_numbers(data, scheme):
    fig = playground_figure(bits=4, scheme=scheme, data=data, outlier=20.0, n=1000)
    assert len(fig.axes) == 2
    x = make_data(data, n=1000, outlier=20.0)
    r = quantize_with(x, bits=4, scheme=scheme)
    text = _texts(fig)
    assert f"{levels_used(r.q)}/{r.levels}" in text
    assert f"SQNR = {sqnr_db(x, r.x_hat):.1f} dB" in text
    assert f"除离群值外 {sqnr_db(x[1:], r.x_hat[1:]):.1f} dB" in text
    assert "量化误差" in text and "个数" in text


def test_playground_figure_draws_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = playground_figure(bits=8, scheme="asymmetric", outlier=50.0)
        fig.canvas.draw()


def test_grid_histogram_marks_used_and_unused_levels():
    x = make_data("gelu", n=2000)
    r = quantize_with(x, bits=3, scheme="symmetric")
    fig, ax = plt.subplots()
    draw_grid_histogram(ax, x, r, title="t")
    labels = [h.get_label() for h in ax.collections]
    assert any("unused" in label for label in labels) and any("(used" in label for label in labels)
    n_lines = sum(len(c.get_segments()) for c in ax.collections)
    assert n_lines == r.levels  # one line per level, used or not
    fig2, ax2 = plt.subplots()
    draw_error(ax2, x, r)
    assert ax2.get_legend() is not None


# ----------------------------------------------------------------------------- sliders


def test_playground_builds_the_controls_and_redraws():
    ipywidgets = pytest.importorskip("ipywidgets")
    w = playground(bits=5, scheme="asymmetric")
    assert isinstance(w, ipywidgets.interactive)
    controls = {c.description: c for c in w.children[:-1]}
    assert set(controls) == {"位宽 bits", "截断比例 clip", "方案", "离群值 (×标准差)", "数据"}
    assert controls["位宽 bits"].value == 5
    assert w.kwargs == {
        "bits": 5,
        "clip": 1.0,
        "scheme": "asymmetric",
        "outlier": 0.0,
        "data": "gelu",
    }
    controls["离群值 (×标准差)"].value = 40.0  # triggers a redraw without error
    assert w.kwargs["outlier"] == 40.0


def test_playground_rejects_bad_defaults():
    with pytest.raises(ValueError):
        playground(scheme="affine")
    with pytest.raises(ValueError):
        playground(data="uniform")


def test_quant_result_is_frozen():
    r = quantize_with(torch.ones(2))
    assert isinstance(r, QuantResult)
    with pytest.raises(AttributeError):
        r.scale = 2.0
