"""Outlier arithmetic (chapter 4): how far channels stick out and what that costs a per-tensor scale.

Contract functions (graded, see ``clipq_helpers.grading``):

* :func:`outlier_ratio` (``ch04.outlier_ratio``): max / median of the per-channel max |x|.
* :func:`levels_used` (``ch04.levels_used``): distinct symmetric codes per channel.

Helpers used by the chapter (not graded): :func:`channel_absmax`, :func:`outlier_channels`,
:func:`split_sqnr`. Channels are always the **last** dimension of ``x`` (the input features
of a Linear: ``(..., C)``). No function modifies its inputs.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_bits, check_float_tensor
from .quantize import quantize_symmetric

__all__ = ["channel_absmax", "outlier_ratio", "levels_used", "outlier_channels", "split_sqnr"]


def channel_absmax(x: torch.Tensor) -> torch.Tensor:
    """Per-channel max |x|: float32 ``(C,)`` for ``x`` of shape ``(..., C)``.

    Reduces over every dimension except the last; a 1-D ``x`` is one row, so the result is
    ``|x|`` itself (a vector of per-channel maxima passes through unchanged).
    """
    x = check_float_tensor(x, "x")
    return x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0).to(torch.float32)


def outlier_ratio(x: torch.Tensor) -> float:
    """How far the tallest channel sticks out: ``max_c m_c / median_c m_c``, ``m_c = max |x[..., c]|``.

    Args:
        x: float ``(..., C)`` activations (channels last), or a ``(C,)`` vector of
            per-channel maxima (treated as one row: ``m = |x|``).
    Returns:
        a Python float >= 1. The median is ``torch.median``: for an even number of channels
        the *lower* of the two middle values (``numpy.median`` would average them). An
        all-zero ``x`` gives 1.0 (nothing sticks out); a zero median with a nonzero max gives
        ``math.inf``.
    Example: per-channel maxima ``[1, 2, 3, 40]`` -> median 2 (lower middle) -> ratio 20.0.
    """
    m = channel_absmax(x).to(torch.float64)
    top, med = float(m.max()), float(m.median())
    if top == 0.0:
        return 1.0
    if med == 0.0:
        return math.inf
    return top / med


def levels_used(x: torch.Tensor, scale: float | torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Number of distinct symmetric codes each channel uses: int64 ``(C,)``.

    The codes are ``quantize_symmetric(x, scale, bits)`` (round half to even, narrow range
    ``[-(2^(b-1)-1), 2^(b-1)-1]``, at most ``2^b - 1`` levels); channel ``c`` is
    ``x[..., c]``. ``scale`` is one per-tensor scale (float or 0-d tensor) or a ``(C,)``
    tensor of per-channel scales (broadcast over the last dimension). A 1-D ``x`` is one
    row: every channel then uses exactly 1 level. For the whole tensor's count, pass
    ``x.reshape(-1, 1)``.
    Example: ``x = [[0.0, 1.0], [0.1, -1.0], [0.2, 0.5]]``, scale 0.1 -> ``[3, 3]``.
    """
    x = check_float_tensor(x, "x")
    bits = check_bits(bits)
    q = quantize_symmetric(x, scale, bits).reshape(-1, x.shape[-1])
    q = torch.sort(q.to(torch.int64), dim=0).values
    return 1 + (q[1:] != q[:-1]).sum(dim=0).to(torch.int64)


def outlier_channels(x: torch.Tensor, factor: float = 6.0) -> torch.Tensor:
    """Channels whose max |x| exceeds ``factor`` times the median channel max: int64 indices.

    ``x`` as in :func:`outlier_ratio`; the indices are sorted by decreasing channel max.
    """
    return _outliers_from_absmax(channel_absmax(x), _check_factor(factor))


def _check_factor(factor: float) -> float:
    if not isinstance(factor, int | float) or isinstance(factor, bool) or not factor > 0:
        raise ValueError(f"factor must be a positive number, got {factor!r}")
    return float(factor)


def _outliers_from_absmax(m: torch.Tensor, factor: float) -> torch.Tensor:
    idx = torch.nonzero(m > factor * m.median()).flatten()
    return idx[torch.argsort(m[idx], descending=True, stable=True)]


def split_sqnr(x: torch.Tensor, channels: torch.Tensor | list[int], bits: int = 8) -> dict:
    """What one per-tensor symmetric scale costs the *other* channels, in dB.

    ``x`` is ``(..., C)``; ``channels`` are the outlier channels set aside. All scales are
    max |.| / (2^(b-1)-1) of the data they quantize (min-max, no clipping; 1.0 for all
    zeros); SQNR as :func:`~clipq_helpers.quantize.sqnr_db` (NaN for an all-zero part).
    Returns floats:

    * ``all``: SQNR of the whole tensor with one scale (what a per-tensor quantizer does);
    * ``rest_shared``: SQNR of the other channels alone, still with that shared scale;
    * ``rest_own``: SQNR of the other channels with a scale from their own max;
    * ``split``: SQNR of the whole tensor when the outlier channels get their own scale and
      the rest theirs (the outliers "quantized separately");
    * ``scale_all``, ``scale_rest``: the two scales; ``inflation``: their ratio.
    """
    x = check_float_tensor(x, "x")
    bits = check_bits(bits)
    c = x.shape[-1]
    idx = torch.as_tensor(channels, dtype=torch.int64).reshape(-1)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= c):
        raise ValueError(f"channels must lie in [0, {c}), got {idx.tolist()}")
    keep = torch.ones(c, dtype=torch.bool)
    keep[idx] = False
    if not bool(keep.any()):
        raise ValueError("channels covers every channel; leave at least one channel in the rest")
    return _split_sqnr(x, keep, bits)


def _split_sqnr(x: torch.Tensor, keep: torch.Tensor, bits: int) -> dict:
    """:func:`split_sqnr` on validated input; ``keep`` marks the non-outlier channels."""
    qmax = 2 ** (bits - 1) - 1
    rows = x.detach().reshape(-1, x.shape[-1]).to(torch.float32)
    m = rows.abs().amax(dim=0)

    def scale(amax: torch.Tensor) -> torch.Tensor:  # symmetric_scale from a max
        return amax / qmax if float(amax) > 0 else torch.tensor(1.0)

    s_all, s_rest = scale(m.max()), scale(m[keep].max())
    s_out = scale(m[~keep].max()) if bool((~keep).any()) else s_rest

    def noise(s: torch.Tensor) -> torch.Tensor:  # per-channel squared error, float64
        err = rows - torch.round(rows / s).clamp_(-qmax, qmax).mul_(s)
        return err.square().sum(dim=0, dtype=torch.float64)

    sig = rows.square().sum(dim=0, dtype=torch.float64)
    n_shared = noise(s_all)
    n_split = noise(torch.where(keep, s_rest, s_out))

    def db(signal: torch.Tensor, err: torch.Tensor) -> float:
        p, e = float(signal.sum()), float(err.sum())
        if p == 0.0:
            return math.nan
        return math.inf if e == 0.0 else 10.0 * math.log10(p / e)

    return {
        "all": db(sig, n_shared),
        "rest_shared": db(sig[keep], n_shared[keep]),
        "rest_own": db(sig[keep], n_split[keep]),
        "split": db(sig, n_split),
        "scale_all": float(s_all),
        "scale_rest": float(s_rest),
        "inflation": float(s_all / s_rest),
    }
