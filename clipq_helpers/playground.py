"""Chapter 3 playground: quantize a tensor with chosen settings and draw its grid.

One function, :func:`quantize_with`, covers the settings a learner plays with (bit width,
clipping range, symmetric or asymmetric); :func:`playground_figure` draws the result (a
histogram with the quantization grid overlaid, and the error of every value), and
:func:`playground` wraps that figure in ipywidgets sliders for JupyterLab. The book shows
the static figure; the sliders need a live kernel.

All quantization goes through the course's reference functions in
:mod:`clipq_helpers.quantize`, so the conventions are the course's: round half to even,
``q = round(x / s) + z``, ``x_hat = s * (q - z)``, symmetric codes in the narrow range
``[-(2^(b-1)-1), 2^(b-1)-1]``, asymmetric codes in ``[0, 2^b - 1]`` with 0 always exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._checks import check_bits, check_float_tensor, check_fraction, check_positive_int
from .quantize import (
    asymmetric_params,
    dequantize,
    qrange,
    quantize_asymmetric,
    quantize_symmetric,
    sqnr_db,
    symmetric_scale,
)

__all__ = [
    "DATA_KINDS",
    "SCHEMES",
    "QuantResult",
    "clipped_fraction",
    "draw_error",
    "draw_grid_histogram",
    "levels_used",
    "make_data",
    "playground",
    "playground_figure",
    "quantize_with",
]

#: Quantization schemes: symmetric (signed, zero-point 0) and asymmetric (unsigned, zero-point).
SCHEMES: tuple[str, ...] = ("symmetric", "asymmetric")
#: Synthetic data: Gaussian values (like weights) and GELU of Gaussian values (like activations).
DATA_KINDS: tuple[str, ...] = ("gaussian", "gelu")

_SCHEME_ZH = {"symmetric": "对称量化", "asymmetric": "非对称量化"}
_DATA_ZH = {"gaussian": "高斯分布 (类似权重)", "gelu": "GELU 输出 (类似激活)"}
_MAX_GRID_LINES = 1024  # above this many levels the grid is not drawn line by line


@dataclass(frozen=True)
class QuantResult:
    """A quantized tensor with its parameters.

    Attributes:
        q: integer codes, ``x.shape``; int8/int16 (symmetric) or uint8/int16/int32 (asymmetric).
        x_hat: dequantized values ``scale * (q - zero_point)``, float32, ``x.shape``.
        scale: step between neighbouring levels (real units).
        zero_point: the code of the real value 0 (0 for symmetric).
        qmin, qmax: the integer code range.
    """

    q: torch.Tensor
    x_hat: torch.Tensor
    scale: float
    zero_point: int
    qmin: int
    qmax: int

    @property
    def levels(self) -> int:
        """Number of available integer codes, ``qmax - qmin + 1``."""
        return self.qmax - self.qmin + 1

    @property
    def lo(self) -> float:
        """Smallest representable real value, ``scale * (qmin - zero_point)``."""
        return self.scale * (self.qmin - self.zero_point)

    @property
    def hi(self) -> float:
        """Largest representable real value, ``scale * (qmax - zero_point)``."""
        return self.scale * (self.qmax - self.zero_point)

    def grid(self) -> torch.Tensor:
        """All representable real values (float64, ``(levels,)``), in increasing order."""
        codes = torch.arange(self.qmin, self.qmax + 1, dtype=torch.float64)
        return self.scale * (codes - self.zero_point)


def _check_scheme(scheme: object) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return str(scheme)


def _check_clip(clip: object) -> float:
    clip = check_fraction(clip, "clip", 0.0, 1.0)
    if clip == 0.0:
        raise ValueError("clip must be > 0 (a fraction of the full range, e.g. 0.5); got 0")
    return clip


def quantize_with(
    x: torch.Tensor, bits: int = 8, scheme: str = "symmetric", clip: float = 1.0
) -> QuantResult:
    """Quantize ``x`` per tensor and dequantize it again.

    Args:
        x: float tensor, any shape, finite, non-empty.
        bits: 2..16.
        scheme: ``"symmetric"`` (scale ``clip * max|x| / (2^(b-1)-1)``, narrow signed codes) or
            ``"asymmetric"`` (range ``clip * [min(x, 0), max(x, 0)]``, unsigned codes).
        clip: fraction in (0, 1] of the full (min-max) range kept; values beyond it clip.
    Returns:
        :class:`QuantResult` with codes, dequantized values, scale and zero-point.
    Example: ``quantize_with(torch.tensor([-1.0, 0.5, 2.54]))`` -> scale 0.02, codes
    ``[-50, 25, 127]``.
    """
    x = check_float_tensor(x, "x")
    bits = check_bits(bits)
    scheme = _check_scheme(scheme)
    clip = _check_clip(clip)
    if scheme == "symmetric":
        scale = float(symmetric_scale(x, bits)) * clip
        q = quantize_symmetric(x, scale, bits)
        zero_point = 0
        qmin, qmax = qrange(bits, signed=True)
    else:
        lo = clip * min(float(x.min()), 0.0)
        hi = clip * max(float(x.max()), 0.0)
        scale_t, zero_point = asymmetric_params(torch.tensor([lo, hi]), bits)
        scale = float(scale_t)
        q = quantize_asymmetric(x, scale, zero_point, bits)
        qmin, qmax = qrange(bits, signed=False)
    x_hat = dequantize(q, scale, zero_point)
    return QuantResult(q, x_hat, scale, zero_point, qmin, qmax)


def levels_used(q: torch.Tensor) -> int:
    """Number of distinct integer codes in ``q`` (any shape, integer dtype)."""
    if not isinstance(q, torch.Tensor):
        raise TypeError(f"q: expected a torch.Tensor of integer codes, got {type(q).__name__}")
    if q.is_floating_point() or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(f"q must be an integer tensor of codes, got {q.dtype}")
    if q.numel() == 0:
        raise ValueError("q is empty; expected at least one code")
    return int(torch.unique(q).numel())


def clipped_fraction(x: torch.Tensor, result: QuantResult) -> float:
    """Fraction of the values of ``x`` that are clipped: farther than ``s/2`` beyond the grid.

    A value within ``s/2`` of the grid's ends ``[lo, hi]`` rounds to the end code with an
    ordinary rounding error; a value beyond that saturates with an error larger than ``s/2``.
    """
    x = check_float_tensor(x, "x").detach().double()
    half = result.scale / 2
    outside = (x < result.lo - half) | (x > result.hi + half)
    return float(outside.double().mean())


def make_data(
    kind: str = "gelu", n: int = 4096, outlier: float = 0.0, seed: int = 0
) -> torch.Tensor:
    """A deterministic 1-D float32 tensor for the playground.

    Args:
        kind: ``"gaussian"`` (standard normal, like weights up to a scale) or ``"gelu"``
            (``GELU`` of standard normal values, like post-GELU activations).
        n: number of values.
        outlier: if > 0, the first value is replaced by ``outlier`` times the data's standard
            deviation (one positive outlier); 0 for none.
        seed: seed of the random generator.
    Returns:
        float32 tensor of shape ``(n,)``.
    """
    if kind not in DATA_KINDS:
        raise ValueError(f"kind must be one of {DATA_KINDS}, got {kind!r}")
    n = check_positive_int(n, "n")
    outlier = check_fraction(outlier, "outlier", 0.0, 1e6)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n, generator=g)
    if kind == "gelu":
        x = torch.nn.functional.gelu(x)
    if outlier > 0:
        x[0] = outlier * x.std()
    return x


def draw_grid_histogram(
    ax: Axes, x: torch.Tensor, result: QuantResult, bins: int = 120, title: str = ""
) -> None:
    """Histogram of ``x`` (log counts) with the quantization grid overlaid.

    Every representable value is a vertical line: dark where some value of ``x`` uses that
    code, light where the code is never used; dashed lines mark the ends of the grid.
    """
    x = check_float_tensor(x, "x").detach().double().flatten()
    check_positive_int(bins, "bins")
    left = min(float(x.min()), result.lo)
    right = max(float(x.max()), result.hi)
    pad = 0.03 * (right - left) if right > left else 1.0
    ax.hist(x.numpy(), bins=bins, range=(left - pad, right + pad), color="#0072B2", alpha=0.75)
    ax.set_yscale("log")
    if result.levels <= _MAX_GRID_LINES:
        grid = result.grid()
        used = torch.zeros(result.levels, dtype=torch.bool)
        used[torch.unique(result.q.to(torch.int64)) - result.qmin] = True
        lw = 1.0 if result.levels <= 64 else 0.5
        ax.vlines(
            grid[~used].numpy(),
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="#BBBBBB",
            linewidth=lw,
            label="未使用的等级 (unused level)",
        )
        ax.vlines(
            grid[used].numpy(),
            0,
            1,
            transform=ax.get_xaxis_transform(),
            colors="#D55E00",
            linewidth=lw,
            alpha=0.6,
            label="用到的等级 (used level)",
        )
    for end in (result.lo, result.hi):
        ax.axvline(end, color="#000000", linestyle="--", linewidth=1.0)
    ax.set_xlabel("数值 x (与张量同单位)")
    ax.set_ylabel("个数 (对数坐标)")
    if title:
        ax.set_title(title)


def draw_error(ax: Axes, x: torch.Tensor, result: QuantResult, title: str = "") -> None:
    """Quantization error ``x_hat - x`` of every value against ``x``, with the ``±s/2`` band."""
    x = check_float_tensor(x, "x").detach().double().flatten()
    err = result.x_hat.double().flatten() - x
    order = torch.argsort(x)
    ax.plot(x[order].numpy(), err[order].numpy(), ".", markersize=2, color="#0072B2")
    half = result.scale / 2
    ax.axhline(half, color="#D55E00", linestyle="--", linewidth=1.0, label=r"$\pm s/2$")
    ax.axhline(-half, color="#D55E00", linestyle="--", linewidth=1.0)
    ax.set_xlabel("数值 x (与张量同单位)")
    ax.set_ylabel(r"量化误差 $\hat{x} - x$ (与 x 同单位)")
    ax.legend(loc="lower left", fontsize=8)
    if title:
        ax.set_title(title)


def _db_text(value: float) -> str:
    return "∞" if math.isinf(value) else f"{value:.1f}"


def playground_figure(
    bits: int = 4,
    clip: float = 1.0,
    scheme: str = "symmetric",
    outlier: float = 0.0,
    data: str = "gelu",
    seed: int = 0,
    n: int = 4096,
) -> Figure:
    """Quantize synthetic data and draw it: grid histogram (left) and error (right).

    The title reports the scale, zero-point, codes used, clipped fraction and SQNR; with an
    outlier it also gives the SQNR of the other values (what ordinary values experience).

    Args:
        bits, clip, scheme: as in :func:`quantize_with`.
        outlier, data, seed, n: as ``outlier``, ``kind``, ``seed``, ``n`` of :func:`make_data`.
    Returns:
        the pyplot figure (it shows once in a notebook; close it with ``plt.close(fig)``).
    """
    x = make_data(data, n=n, outlier=outlier, seed=seed)
    result = quantize_with(x, bits=bits, scheme=scheme, clip=clip)
    sqnr = f"SQNR = {_db_text(sqnr_db(x, result.x_hat))} dB"
    if outlier > 0 and n > 1:  # the outlier is x[0]: also report what ordinary values see
        sqnr += f" (除离群值外 {_db_text(sqnr_db(x[1:], result.x_hat[1:]))} dB)"
    fig, (ax_hist, ax_err) = plt.subplots(1, 2, figsize=(8.5, 4.0))
    draw_grid_histogram(ax_hist, x, result, title="直方图与量化网格")
    ax_hist.legend(loc="upper right", fontsize=8)
    draw_error(ax_err, x, result, title="每个值的量化误差")
    fig.suptitle(
        f"{_DATA_ZH[data]}, {_SCHEME_ZH[scheme]} {bits} 位\n缩放因子 s = {result.scale:.3g}, "
        f"零点 z = {result.zero_point}, 用到 {levels_used(result.q)}/{result.levels} 个等级, "
        f"被截断 {clipped_fraction(x, result):.2%}, {sqnr}",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def playground(
    bits: int = 4,
    clip: float = 1.0,
    scheme: str = "symmetric",
    outlier: float = 0.0,
    data: str = "gelu",
) -> Any:
    """ipywidgets sliders around :func:`playground_figure` (needs a live Jupyter kernel).

    Calls :func:`clipq_helpers.plots.use_cjk_font` so that the Chinese labels render.
    Returns an ``ipywidgets.interactive`` widget (display it, or leave it as the cell's last
    expression); every change of a control redraws the figure.
    """
    import ipywidgets as widgets

    from .plots import use_cjk_font

    check_bits(bits)
    _check_clip(clip)
    _check_scheme(scheme)
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {DATA_KINDS}, got {data!r}")
    use_cjk_font()
    style = {"description_width": "initial"}

    def show(bits: int, clip: float, scheme: str, outlier: float, data: str) -> None:
        playground_figure(bits=bits, clip=clip, scheme=scheme, outlier=outlier, data=data)
        plt.show()

    return widgets.interactive(
        show,
        bits=widgets.IntSlider(
            value=bits, min=2, max=8, description="位宽 bits", style=style, continuous_update=False
        ),
        clip=widgets.FloatSlider(
            value=clip,
            min=0.05,
            max=1.0,
            step=0.05,
            description="截断比例 clip",
            style=style,
            continuous_update=False,
        ),
        scheme=widgets.ToggleButtons(
            options=[("对称 symmetric", "symmetric"), ("非对称 asymmetric", "asymmetric")],
            value=scheme,
            description="方案",
            style=style,
        ),
        outlier=widgets.FloatSlider(
            value=outlier,
            min=0.0,
            max=100.0,
            step=1.0,
            description="离群值 (×标准差)",
            style=style,
            continuous_update=False,
        ),
        data=widgets.Dropdown(
            options=[(_DATA_ZH[k], k) for k in DATA_KINDS],
            value=data,
            description="数据",
            style=style,
        ),
    )
