"""Calibration: choosing the clipping range of a symmetric quantizer (chapter 5).

Contract functions (each returns a *clip value* ``c``; the symmetric scale is
``c / (2^(b-1) - 1)``):

* :func:`percentile_absmax` - the pct-th percentile of ``|x|``;
* :func:`mse_best_clip` - grid search for the clip with the smallest quantization MSE;
* :func:`kl_threshold` - TensorRT-style entropy (KL divergence) calibration on a histogram.

Observers collect statistics over many batches and then give a clip value / scale:
:class:`MinMaxObserver`, :class:`PercentileObserver`, :class:`MSEObserver`,
:class:`EntropyObserver` (``update(x)`` per batch, then ``clip_value(bits)`` / ``scale(bits)``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch

from ._checks import (
    check_bits,
    check_float_tensor,
    check_fraction,
    check_nonempty,
    check_positive_int,
    ensure_tensor,
)
from .quantize import _TINY, _asymmetric_from_range, _compute_dtype, qrange

__all__ = [
    "percentile_absmax",
    "mse_best_clip",
    "kl_threshold",
    "clip_to_scale",
    "Observer",
    "MinMaxObserver",
    "PercentileObserver",
    "MSEObserver",
    "EntropyObserver",
    "make_observer",
]

# torch.quantile refuses inputs with more than 2^24 elements.
_QUANTILE_MAX_NUMEL = 2**24
_KL_EPS = 1e-4


# --------------------------------------------------------------------------- helpers


def clip_to_scale(clip: float | torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Symmetric scale ``clip / (2^(b-1) - 1)`` as a 0-d float32 tensor; 1.0 if ``clip == 0``."""
    _, qmax = qrange(bits, signed=True)
    c = float(clip)
    if not math.isfinite(c) or c < 0:
        raise ValueError(f"clip must be a finite value >= 0, got {c}")
    if c == 0.0:
        return torch.tensor(1.0, dtype=torch.float32)
    return (torch.tensor(c, dtype=torch.float32) / qmax).clamp(min=_TINY)


def _quantile_sorted_fallback(a: torch.Tensor, q: float) -> torch.Tensor:
    """Linear-interpolation quantile of a 1-D tensor via ``kthvalue`` (no size limit).

    Same definition as ``torch.quantile(..., interpolation="linear")``: rank ``q * (n - 1)``
    (computed in float64 here), interpolated between its two neighbouring order statistics.
    """
    n = a.numel()
    rank = q * (n - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, n - 1)
    v_lo = torch.kthvalue(a, lo + 1).values
    v_hi = torch.kthvalue(a, hi + 1).values if hi != lo else v_lo
    w = torch.tensor(rank - lo, dtype=a.dtype)
    return torch.lerp(v_lo, v_hi, w)


# --------------------------------------------------------------------------- contract


def percentile_absmax(x: torch.Tensor, pct: float) -> torch.Tensor:
    """The ``pct``-th percentile of ``|x|`` (over all elements).

    Uses ``torch.quantile`` semantics (linear interpolation between order statistics at rank
    ``pct/100 * (n-1)``). ``torch.quantile`` accepts at most 2^24 (~16.8M) elements; larger
    inputs go through an exact ``kthvalue`` fallback with the same definition.

    Args:
        x: float tensor, any shape.
        pct: percentile in ``[0, 100]`` (e.g. 99.99; 100 gives ``max|x|``).
    Returns:
        0-d float32 tensor.
    """
    x = check_float_tensor(x, "x")
    pct = check_fraction(pct, "pct", 0.0, 100.0)
    a = x.detach().abs().flatten().to(_compute_dtype(x))
    q = pct / 100.0
    if a.numel() <= _QUANTILE_MAX_NUMEL:
        out = torch.quantile(a, q, interpolation="linear")
    else:
        out = _quantile_sorted_fallback(a, q)
    return out.to(torch.float32)


def _sse_per_clip(
    a: torch.Tensor, clips: torch.Tensor, qmax: int, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Sum of squared symmetric-quantization errors of ``a`` for every clip, float64 ``(G,)``.

    Processed in chunks of rows so memory stays ~ ``2^22`` elements per temporary.
    """
    scales = (clips / qmax).to(a.dtype)
    sse = torch.zeros(clips.numel(), dtype=torch.float64)
    chunk = max(1, 2**22 // clips.numel())
    for start in range(0, a.numel(), chunk):
        xc = a[start : start + chunk, None]
        err = xc - torch.round(xc / scales).clamp(-qmax, qmax) * scales
        sq = (err * err).to(torch.float64)
        if weights is not None:
            sq = sq * weights[start : start + chunk, None]
        sse += sq.sum(dim=0)
    return sse


def mse_best_clip(x: torch.Tensor, bits: int = 8, n_grid: int = 100) -> torch.Tensor:
    """Clip value minimising the MSE of symmetric quantization, by grid search.

    Candidates ``c_k = absmax * k / n_grid`` for ``k = 1..n_grid`` (``absmax = max|x|``); for
    each, ``x`` is quantized with scale ``c_k / (2^(b-1)-1)`` (round half to even, clamp to the
    narrow range) and dequantized; the ``c_k`` with the smallest mean squared error wins, the
    smallest ``k`` on ties. Vectorised over ``k``; ``x`` is processed in chunks, so large
    tensors do not need ``numel * n_grid`` memory. Arithmetic in float32 (float64 for float64
    input), error sums in float64.

    Args:
        x: float tensor, any shape.
        bits: 2..16.
        n_grid: number of candidates.
    Returns:
        0-d float32 tensor ``c`` (<= ``max|x|``); 0.0 for an all-zero ``x`` (use
        :func:`clip_to_scale`, which maps clip 0 to scale 1.0).
    """
    x = check_float_tensor(x, "x")
    _, qmax = qrange(bits, signed=True)
    n_grid = check_positive_int(n_grid, "n_grid")
    dt = _compute_dtype(x)
    a = x.detach().flatten().to(dt)
    absmax = a.abs().max()
    if float(absmax) == 0.0:
        return torch.tensor(0.0, dtype=torch.float32)
    ratio = (
        torch.arange(1, n_grid + 1, dtype=torch.float64) / n_grid
    )  # k / n_grid, exact 1 at the end
    clips = (absmax.to(torch.float64) * ratio).to(dt)  # never above absmax
    sse = _sse_per_clip(a, clips, qmax)
    best = int(torch.argmin(sse))  # first index of the minimum: smallest k on ties
    return clips[best].to(torch.float32)


def _smooth_distribution(p: np.ndarray, eps: float = _KL_EPS) -> np.ndarray | None:
    """Give ``eps`` to each zero bin and take the total evenly from the nonzero bins.

    As ONNX Runtime's ``smooth_distribution``; returns None when that is impossible
    (no nonzero bin, or a nonzero bin would drop to <= 0).
    """
    is_zero = p == 0
    n_zero = int(is_zero.sum())
    n_nonzero = p.size - n_zero
    if n_nonzero == 0:
        return None
    eps1 = eps * n_zero / n_nonzero
    out = p + np.where(is_zero, eps, -eps1)
    if (out <= 0).any():
        return None
    return out


def kl_threshold(hist: torch.Tensor, bin_edges: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """TensorRT-style entropy calibration: the clip threshold minimising KL(P || Q).

    ``hist`` is a histogram of ``|x|`` (counts) with ``len(hist) + 1`` increasing
    ``bin_edges``. With ``nq = 2^(b-1)`` quantized bins, for every ``i`` from ``nq`` to
    ``len(hist)`` (inclusive; ``i = len(hist)`` means no clipping):

    1. ``P = hist[:i]`` with the clipped tail mass ``sum(hist[i:])`` added to bin ``i-1``;
    2. ``Q``: ``hist[:i]`` is split into ``nq`` contiguous chunks with ``numpy.array_split``
       sizes (the first ``i % nq`` chunks one bin longer); each chunk's total mass (of the
       un-clipped ``hist[:i]``) is spread evenly over the bins of that chunk where **P** is
       nonzero (other bins get 0). This is the mask used by ONNX Runtime's and MXNet's
       entropy calibrators (``nonzeros = p != 0`` after the tail is added); it differs from
       the ``hist[:i] != 0`` mask only in bin ``i-1`` when ``hist[i-1] == 0`` and the tail is
       not empty. (ORT merges bins with floor-sized chunks plus a remainder and truncates Q to
       integers; here the chunks follow ``array_split`` and Q stays real-valued.)
    3. ``P`` and ``Q`` are smoothed as in ORT's ``smooth_distribution`` - each zero bin gets
       ``eps = 1e-4`` (in count units), taken evenly from the nonzero bins - then normalised;
       a candidate whose smoothing is impossible gets KL = inf;
    4. ``KL(P || Q) = sum p log(p / q)``.

    Returns ``bin_edges[i]`` of the smallest KL (the first on ties); if every candidate has
    KL = inf, ``bin_edges[-1]``. Computation in float64 (numpy).

    Args:
        hist: 1-D counts (float or integer), >= 0, not all zero, ``len(hist) >= 2^(b-1)``.
        bin_edges: 1-D float, ``len(hist) + 1`` strictly increasing edges.
        bits: 2..16 (``2^(b-1)`` quantized bins: 128 for 8 bits).
    Returns:
        0-d float32 tensor, one of ``bin_edges[2^(b-1)] .. bin_edges[len(hist)]``.
    """
    hist = ensure_tensor(hist, "hist")
    bin_edges = check_float_tensor(bin_edges, "bin_edges")
    bits = check_bits(bits)
    if hist.dim() != 1 or bin_edges.dim() != 1:
        raise ValueError(
            f"hist and bin_edges must be 1-D, got shapes {tuple(hist.shape)} and "
            f"{tuple(bin_edges.shape)}"
        )
    check_nonempty(hist, "hist")
    if hist.dtype == torch.bool or hist.is_complex():
        raise TypeError(f"hist must hold real counts, got {hist.dtype}")
    if hist.is_floating_point():
        check_float_tensor(hist, "hist")
    if bin_edges.numel() != hist.numel() + 1:
        raise ValueError(
            f"shape mismatch: hist has shape {tuple(hist.shape)} and bin_edges has shape "
            f"{tuple(bin_edges.shape)}; expected len(bin_edges) == len(hist) + 1"
        )
    h = hist.detach().cpu().to(torch.float64).numpy()
    edges = bin_edges.detach().cpu()
    if (h < 0).any():
        raise ValueError("hist must be >= 0 (it holds counts)")
    if h.sum() <= 0:
        raise ValueError("hist is all zero; expected a histogram with some mass")
    if not bool((edges[1:] > edges[:-1]).all()):
        raise ValueError("bin_edges must be strictly increasing")
    nq = 2 ** (bits - 1)
    n = h.size
    if n < nq:
        raise ValueError(
            f"hist has {n} bins but {bits}-bit entropy calibration needs at least "
            f"2^(bits-1) = {nq} bins; use more bins (e.g. 2048)"
        )
    tail = np.concatenate([np.cumsum(h[::-1])[::-1], [0.0]])  # tail[i] = sum(h[i:])
    best_kl, best_i = math.inf, n
    for i in range(nq, n + 1):
        sliced = h[:i]
        p = sliced.copy()
        p[i - 1] += tail[i]
        sizes = np.full(nq, i // nq)
        sizes[: i % nq] += 1  # numpy.array_split sizes
        ids = np.repeat(np.arange(nq), sizes)
        nonzero = p != 0
        chunk_mass = np.bincount(ids, weights=sliced, minlength=nq)
        chunk_nnz = np.bincount(ids, weights=nonzero.astype(np.float64), minlength=nq)
        q = np.where(nonzero, chunk_mass[ids] / np.maximum(chunk_nnz[ids], 1.0), 0.0)
        ps = _smooth_distribution(p)
        qs = _smooth_distribution(q)
        if ps is None or qs is None:
            continue
        ps = ps / ps.sum()
        qs = qs / qs.sum()
        kl = float(np.sum(ps * np.log(ps / qs)))
        if kl < best_kl:
            best_kl, best_i = kl, i
    return edges[best_i].to(torch.float32)


# --------------------------------------------------------------------------- observers


class Observer:
    """Base class: ``update(x)`` over calibration batches, then ``clip_value`` / ``scale``.

    ``x`` may have any shape; statistics are over all elements (per-tensor). Inputs are
    validated (float, finite, non-empty) and never modified.
    """

    name = "observer"

    def __init__(self) -> None:
        self.count = 0
        self.absmax = 0.0

    def reset(self) -> None:
        """Forget everything seen so far."""
        self.__init__()  # type: ignore[misc]

    def update(self, x: torch.Tensor) -> None:
        """Add one batch of values."""
        x = check_float_tensor(x, "x")
        xd = x.detach()
        self.count += xd.numel()
        self.absmax = max(self.absmax, float(xd.abs().max()))
        self._update(xd)

    def _update(self, x: torch.Tensor) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _require_data(self) -> None:
        if self.count == 0:
            raise RuntimeError(f"{type(self).__name__} has seen no data; call .update(x) first")

    def clip_value(self, bits: int = 8) -> torch.Tensor:
        """Clip threshold ``c >= 0`` (0-d float32) for ``bits``-bit symmetric quantization."""
        raise NotImplementedError

    def scale(self, bits: int = 8) -> torch.Tensor:
        """Symmetric scale ``clip_value(bits) / (2^(b-1) - 1)``; 1.0 when the clip is 0."""
        return clip_to_scale(self.clip_value(bits), bits)


class MinMaxObserver(Observer):
    """Running min and max: clip = ``max|x|`` seen; also asymmetric ``(scale, zero_point)``."""

    name = "minmax"

    def __init__(self) -> None:
        super().__init__()
        self.min_val = math.inf
        self.max_val = -math.inf

    def _update(self, x: torch.Tensor) -> None:
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))

    def clip_value(self, bits: int = 8) -> torch.Tensor:
        check_bits(bits)
        self._require_data()
        return torch.tensor(self.absmax, dtype=torch.float32)

    def asymmetric_params(self, bits: int = 8) -> tuple[torch.Tensor, int]:
        """``(scale, zero_point)`` for ``[min(min_val, 0), max(max_val, 0)]``, as
        :func:`clipq_helpers.quantize.asymmetric_params` on all data seen."""
        check_bits(bits)
        self._require_data()
        return _asymmetric_from_range(self.min_val, self.max_val, bits)


class _AbsValueObserver(Observer):
    """Keeps ``|x|`` exactly while few values were seen, else a histogram of ``|x|``.

    Exact mode stores every ``|x|`` (float32, CPU) while the total count is at most
    ``max_exact``; then results equal the contract functions applied to all data.
    Histogram mode: ``num_bins`` bins over ``[0, hi]``; when a larger value arrives, ``hi``
    doubles and neighbouring bins are merged pairwise (exact re-binning, fixed bin count;
    ONNX Runtime instead keeps the bin width and appends bins).
    """

    def __init__(self, num_bins: int = 2048, max_exact: int = 2**20) -> None:
        super().__init__()
        num_bins = check_positive_int(num_bins, "num_bins")
        if num_bins % 2:
            raise ValueError(f"num_bins must be even (bins are merged in pairs), got {num_bins}")
        self.num_bins = num_bins
        self.max_exact = check_positive_int(max_exact, "max_exact")
        self._values: list[torch.Tensor] | None = []
        self._hist: torch.Tensor | None = None  # float64 (num_bins,)
        self._hi = 0.0
        self._zeros_pending = 0

    def reset(self) -> None:
        self.__init__(self.num_bins, self.max_exact)

    @property
    def exact(self) -> bool:
        """True while all values are kept (results are exact)."""
        return self._values is not None

    def _update(self, x: torch.Tensor) -> None:
        a = x.abs().flatten().to(torch.float32).cpu()
        if self._values is not None:
            if self.count <= self.max_exact:
                self._values.append(a)
                return
            a = torch.cat([*self._values, a])
            self._values = None
        self._add_to_hist(a)

    def _add_to_hist(self, a: torch.Tensor) -> None:
        m = float(a.max())
        if self._hist is None:
            if m == 0.0:
                self._zeros_pending += a.numel()
                return
            self._hi = m
            self._hist = torch.zeros(self.num_bins, dtype=torch.float64)
            self._hist[0] += self._zeros_pending
            self._zeros_pending = 0
        while m > self._hi:
            merged = self._hist.view(-1, 2).sum(dim=1)
            self._hist = torch.cat([merged, torch.zeros_like(merged)])
            self._hi *= 2.0
        counts = torch.histc(a, bins=self.num_bins, min=0.0, max=self._hi)
        self._hist += counts.to(torch.float64)

    def _all_values(self) -> torch.Tensor:
        assert self._values is not None
        return torch.cat(self._values)

    def histogram(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(hist, bin_edges)`` of ``|x|``: float64 counts ``(num_bins,)``, edges ``(num_bins+1,)``.

        Exact mode bins ``[0, max|x|]``; histogram mode bins ``[0, hi]`` (``hi >= max|x|``).
        Raises ``RuntimeError`` if no data or all data are zero.
        """
        self._require_data()
        if self.absmax == 0.0:
            raise RuntimeError("all values seen are zero; there is no histogram range")
        if self._values is not None:
            hist, edges = torch.histogram(
                self._all_values(), bins=self.num_bins, range=(0.0, self.absmax)
            )
            return hist.to(torch.float64), edges.to(torch.float64)
        assert self._hist is not None
        edges = torch.linspace(0.0, self._hi, self.num_bins + 1, dtype=torch.float64)
        return self._hist.clone(), edges


class PercentileObserver(_AbsValueObserver):
    """Clip = the ``pct``-th percentile of ``|x|`` over all batches.

    Exact (equal to :func:`percentile_absmax` on all data) while at most ``max_exact`` values
    were seen; afterwards read from the histogram with linear interpolation inside the bin
    (error below one bin width, ``<= 2 max|x| / num_bins``).
    """

    name = "percentile"

    def __init__(self, pct: float = 99.99, num_bins: int = 2048, max_exact: int = 2**20) -> None:
        self.pct = check_fraction(pct, "pct", 0.0, 100.0)
        super().__init__(num_bins, max_exact)

    def reset(self) -> None:
        self.__init__(self.pct, self.num_bins, self.max_exact)

    def clip_value(self, bits: int = 8) -> torch.Tensor:
        check_bits(bits)
        self._require_data()
        if self._values is not None:
            return percentile_absmax(self._all_values(), self.pct)
        if self.absmax == 0.0:
            return torch.tensor(0.0, dtype=torch.float32)
        hist, edges = self.histogram()
        cum = torch.cumsum(hist, 0)
        target = self.pct / 100.0 * float(cum[-1])
        j = int(torch.searchsorted(cum, torch.tensor([target], dtype=torch.float64))[0])
        j = min(j, hist.numel() - 1)
        before = float(cum[j - 1]) if j > 0 else 0.0
        frac = (target - before) / float(hist[j]) if float(hist[j]) > 0 else 0.0
        value = float(edges[j]) + frac * float(edges[j + 1] - edges[j])
        return torch.tensor(min(value, self.absmax), dtype=torch.float32)


class MSEObserver(_AbsValueObserver):
    """Clip = :func:`mse_best_clip` over all batches (grid ``absmax * k / n_grid``).

    Exact while at most ``max_exact`` values were seen (default 2^18: the exact search costs
    ~``numel * n_grid`` operations; the symmetric quantization error of ``x`` equals that of
    ``|x|``); afterwards the MSE is computed on the histogram's bin
    centres weighted by their counts.
    """

    name = "mse"

    def __init__(self, n_grid: int = 100, num_bins: int = 2048, max_exact: int = 2**18) -> None:
        self.n_grid = check_positive_int(n_grid, "n_grid")
        super().__init__(num_bins, max_exact)

    def reset(self) -> None:
        self.__init__(self.n_grid, self.num_bins, self.max_exact)

    def clip_value(self, bits: int = 8) -> torch.Tensor:
        _, qmax = qrange(bits, signed=True)
        self._require_data()
        if self._values is not None:
            return mse_best_clip(self._all_values(), bits, self.n_grid)
        if self.absmax == 0.0:
            return torch.tensor(0.0, dtype=torch.float32)
        hist, edges = self.histogram()
        centres = ((edges[:-1] + edges[1:]) / 2).clamp(max=self.absmax)
        keep = hist > 0
        clips = self.absmax * (torch.arange(1, self.n_grid + 1, dtype=torch.float64) / self.n_grid)
        sse = _sse_per_clip(centres[keep], clips, qmax, weights=hist[keep])
        return clips[int(torch.argmin(sse))].to(torch.float32)


class EntropyObserver(_AbsValueObserver):
    """Clip = :func:`kl_threshold` on the histogram of ``|x|`` over all batches.

    ``num_bins`` (default 2048, as TensorRT) must be >= ``2^(bits-1)``. In histogram mode,
    empty bins above the largest value are dropped first (keeping at least ``2^(bits-1)``
    bins); the result is capped at ``max|x|``.
    """

    name = "entropy"

    def clip_value(self, bits: int = 8) -> torch.Tensor:
        bits = check_bits(bits)
        self._require_data()
        if self.absmax == 0.0:
            return torch.tensor(0.0, dtype=torch.float32)
        hist, edges = self.histogram()
        nq = 2 ** (bits - 1)
        if self._values is None:
            nonzero = torch.nonzero(hist).flatten()
            n_keep = max(nq, int(nonzero[-1]) + 1)
            hist, edges = hist[:n_keep], edges[: n_keep + 1]
        threshold = kl_threshold(hist, edges, bits)
        return threshold.clamp(max=self.absmax)


_OBSERVERS: dict[str, type[Observer]] = {
    "minmax": MinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}


def make_observer(spec: str | Observer | Callable[[], Observer] = "minmax") -> Observer:
    """A fresh observer from a name, an instance (deep-copied) or a zero-argument factory.

    Names: ``"minmax"``, ``"percentile"`` (99.99), ``"mse"`` (100-point grid), ``"entropy"``
    (2048 bins). Passing an instance copies it, so each layer gets its own state.
    """
    if isinstance(spec, str):
        try:
            return _OBSERVERS[spec]()
        except KeyError:
            raise ValueError(
                f"unknown observer {spec!r}; expected one of {sorted(_OBSERVERS)} "
                f"or an Observer instance"
            ) from None
    if isinstance(spec, Observer):
        return copy.deepcopy(spec)
    if callable(spec):
        obs = spec()
        if not isinstance(obs, Observer):
            raise TypeError(f"observer factory returned {type(obs).__name__}, not an Observer")
        return obs
    raise TypeError(
        f"observer must be a name {sorted(_OBSERVERS)}, an Observer or a factory, "
        f"got {type(spec).__name__}"
    )
