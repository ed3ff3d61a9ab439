"""Comparing calibration methods on real activations (chapter 5).

The calibrators themselves live in :mod:`clipq_helpers.calibrate`; this module runs them
side by side on the captured inputs of every Linear of a model:

* :func:`shared_inputs` / :func:`capture_activations`: the input ``(rows, C)`` of each
  Linear on a calibration set (padding tokens dropped); q/k/v read one tensor, kept once.
* :func:`clip_table`: the clip value of min-max, percentile, MSE and entropy, per tensor,
  all read from one histogram of ``|x|`` per tensor.
* :func:`fake_quant_sqnr`: SQNR of symmetric fake quantization clipped at a given value.
* :func:`quantized_copy`: a fake-quantized copy (:class:`FastQuantLinear`) whose static
  activation scales come from a table of clip values (no calibration pass per method).
* :func:`kl_curves` / :func:`kl_thresholds` / :func:`kl_candidate`: the entropy calibration
  of :func:`clipq_helpers.calibrate.kl_threshold` for many histograms at once, with every
  intermediate (P, Q, KL(i)) for the figures; tested equal to the reference.
* :func:`ort_clip_values`: ONNX Runtime's own calibrators on the same tensors, through a
  tiny ONNX graph whose inputs are those tensors.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._checks import check_float_tensor
from .calibrate import _KL_EPS, MSEObserver, PercentileObserver, clip_to_scale
from .evaluate import tokenize
from .fakequant import FastQuantLinear, QuantLinear
from .processor import pixels_from_uint8
from .ptq import capture_inputs
from .surgery import iter_linears, replace_linears

__all__ = [
    "METHODS",
    "shared_inputs",
    "capture_activations",
    "clip_table",
    "fake_quant_sqnr",
    "FastQuantLinear",
    "quantized_copy",
    "kl_curves",
    "kl_thresholds",
    "kl_candidate",
    "ort_clip_values",
]

#: The calibration methods compared in chapter 5, in table order.
METHODS = ("min-max", "percentile", "MSE", "entropy (KL)")

_SIBLINGS = re.compile(r"(k_proj|v_proj|key|value)$")
_FIRST = {"k_proj": "q_proj", "v_proj": "q_proj", "key": "query", "value": "query"}


def shared_inputs(model: nn.Module) -> dict[str, list[str]]:
    """{representative Linear name: every Linear name that reads the same input}.

    The key/value projections of an attention block read the same tensor as its query
    projection, so they are grouped under the query's name; every other Linear is alone.
    """
    names = [n for n, _ in iter_linears(model)]
    groups: dict[str, list[str]] = {}
    for n in names:
        rep = _SIBLINGS.sub(lambda m: _FIRST[m.group(1)], n)
        groups.setdefault(rep if rep in names else n, []).append(n)
    return groups


@torch.no_grad()
def capture_activations(
    model: nn.Module,
    tokenizer,
    images: np.ndarray | None,
    captions: Sequence[str] | None,
    names: Sequence[str] | None = None,
    batch_size: int = 128,
) -> dict[str, torch.Tensor]:
    """Input of each representative Linear: {name: float32 (rows, C)}.

    Vision Linears see ``images`` (uint8 ``(N, H, W, 3)``; rows = N x tokens), text Linears
    see ``captions`` (rows = real tokens; padding positions are dropped with the attention
    mask). ``names`` defaults to the keys of :func:`shared_inputs` (q/k/v once); pass
    ``None`` for images or captions to skip that tower.
    """
    names = list(shared_inputs(model) if names is None else names)
    vision = [n for n in names if n.startswith(("vision_model", "visual_projection"))]
    text = [n for n in names if n.startswith(("text_model", "text_projection"))]
    parts: dict[str, list[torch.Tensor]] = {n: [] for n in vision + text}
    if images is not None and len(images) and vision:
        for i in range(0, len(images), batch_size):
            px = pixels_from_uint8(images[i : i + batch_size])
            run = lambda px=px: model.get_image_features(pixel_values=px)  # noqa: E731
            for n, x in capture_inputs(model, run, vision).items():
                parts[n].append(x.reshape(-1, x.shape[-1]))
    if captions is not None and len(captions) and text:
        for i in range(0, len(captions), batch_size):
            enc = tokenize(tokenizer, list(captions[i : i + batch_size]))
            run = lambda enc=enc: model.get_text_features(**enc)  # noqa: E731
            for n, x in capture_inputs(model, run, text, enc["attention_mask"]).items():
                parts[n].append(x.reshape(-1, x.shape[-1]))
    missing = [n for n in names if not parts.get(n)]
    if missing:
        raise ValueError(
            f"no activations captured for {missing[:3]}: pass images for vision Linears and "
            "captions for text Linears (names must start with vision_model, visual_projection, "
            "text_model or text_projection)"
        )
    return {n: torch.cat(parts[n]) for n in names}


def clip_table(
    acts: Mapping[str, torch.Tensor],
    bits: Sequence[int] = (8,),
    pct: float = 99.99,
    num_bins: int = 2048,
    methods: Sequence[str] = METHODS,
) -> dict[int, dict[str, dict[str, float]]]:
    """Clip value of each method of :data:`METHODS`: ``{bits: {tensor name: {method: clip}}}``.

    One histogram of ``|x|`` per tensor (``num_bins`` bins over ``[0, max|x|]``) serves
    the three histogram methods, as in TensorRT and ONNX Runtime: percentile and MSE are the
    :class:`~clipq_helpers.calibrate.PercentileObserver` / ``MSEObserver`` in histogram mode,
    entropy is :func:`kl_thresholds` on the same histogram (all tensors at once; equal to
    :func:`~clipq_helpers.calibrate.kl_threshold`). Min-max is the exact ``max|x|``.
    """
    bits = [int(b) for b in bits]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; expected a subset of {METHODS}")
    names = list(acts)
    hists, edges, rows = [], [], {b: {} for b in bits}
    for name in names:
        obs = PercentileObserver(pct, num_bins=num_bins, max_exact=1)  # histogram mode
        obs.update(acts[name])
        mse = None
        if "MSE" in methods:
            mse = MSEObserver(num_bins=num_bins, max_exact=1)  # builds the same histogram
            mse.update(acts[name])
        h, e = obs.histogram()
        hists.append(h.numpy())
        edges.append(e.numpy())
        for b in bits:
            row = {"min-max": float(obs.absmax), "percentile": float(obs.clip_value(b))}
            if mse is not None:
                row["MSE"] = float(mse.clip_value(b))
            rows[b][name] = row
    if "entropy (KL)" in methods:
        for b in bits:
            best = kl_thresholds(np.stack(hists), np.stack(edges), b)
            for name, t in zip(names, best, strict=True):
                rows[b][name]["entropy (KL)"] = min(float(t), rows[b][name]["min-max"])
    return {b: {n: {m: r[m] for m in methods} for n, r in rows[b].items()} for b in bits}


def fake_quant_sqnr(x: torch.Tensor, clip: float, bits: int = 8) -> float:
    """SQNR (dB) of ``x`` after symmetric fake quantization with scale ``clip / (2^(b-1)-1)``.

    The value of ``sqnr_db(x, fake_quant_symmetric(x, clip_to_scale(clip, bits), bits))``
    (up to float32 rounding of the error; sums in float64) without re-validating ``x`` at
    every step: it is called hundreds of times per chapter.
    """
    x = check_float_tensor(x, "x")
    qmax = 2 ** (bits - 1) - 1
    s = clip_to_scale(clip, bits)
    x = x.detach().float()
    err = torch.round(x / s).clamp_(-qmax, qmax).mul_(s).sub_(x)
    signal = float(torch.sum(x * x, dtype=torch.float64))
    noise = float(torch.sum(err * err, dtype=torch.float64))
    if signal == 0.0:
        raise ValueError("x is all zero: the signal power is 0, so SQNR is undefined")
    return math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)


# --------------------------------------------------------------------------- fast fake quant


def quantized_copy(
    model: nn.Module,
    *,
    w_bits: int | None = 8,
    w_granularity: str = "per_tensor",
    group_size: int = 128,
    a_bits: int | None = 8,
    a_granularity: str = "per_tensor",
    clips: Mapping[str, float] | None = None,
    include: Callable[[str, nn.Linear], bool] | None = None,
) -> nn.Module:
    """Deep copy of ``model`` with Linears replaced by :class:`FastQuantLinear` (symmetric).

    Static per-tensor activations take their scale from ``clips`` (clip / (2^(a_bits-1)-1));
    ``clips`` is keyed by Linear name or by the representative of :func:`shared_inputs` (q/k/v
    share one clip), e.g. a column of :func:`clip_table`. No calibration pass is run.
    Per-token activations (``a_granularity="per_token"``) and weight-only quantization
    (``a_bits=None``) need no clips. ``include(name, linear)`` selects Linears (default all).
    """
    static = a_bits is not None and a_granularity == "per_tensor"
    rep_of = {m: rep for rep, members in shared_inputs(model).items() for m in members}
    if static:
        if clips is None:
            raise ValueError("static per-tensor activations need clips (e.g. from clip_table)")
        missing = sorted(n for n in rep_of if n not in clips and rep_of[n] not in clips)
        if include is not None:
            missing = [n for n in missing if include(n, model.get_submodule(n))]
        if missing:
            raise ValueError(f"no clip value for {len(missing)} Linears, e.g. {missing[:2]}")
    out = copy.deepcopy(model).eval()

    def factory(name: str, lin: nn.Linear) -> QuantLinear:
        q = FastQuantLinear.from_linear(
            lin,
            w_bits=w_bits,
            w_granularity=w_granularity,
            group_size=group_size,
            a_bits=a_bits,
            a_granularity=a_granularity,
        )
        if static:
            clip = clips[name] if name in clips else clips[rep_of[name]]
            q.set_activation_qparams(clip_to_scale(clip, a_bits))
        return q

    replace_linears(out, factory, include or (lambda name, mod: True))
    return out


# --------------------------------------------------------------------------- entropy (KL)


def _kl_step(
    h: np.ndarray, tail: np.ndarray, i: int, nq: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate ``i`` for histograms ``h`` (T, n): smoothed, normalised P and Q (T, i) and a
    (T,) mask of rows where smoothing was possible. Same steps as ``kl_threshold``."""
    sliced = h[:, :i]
    p = sliced.copy()
    p[:, i - 1] += tail[:, i]
    sizes = np.full(nq, i // nq)
    sizes[: i % nq] += 1  # numpy.array_split sizes
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nonzero = p != 0
    mass = np.add.reduceat(sliced, starts, axis=1)
    count = np.add.reduceat(nonzero.astype(np.float64), starts, axis=1)
    per_bin = np.repeat(mass / np.maximum(count, 1.0), sizes, axis=1)
    q = np.where(nonzero, per_bin, 0.0)
    ps, ok_p = _smooth_rows(p)
    qs, ok_q = _smooth_rows(q)
    ok = ok_p & ok_q
    with np.errstate(divide="ignore", invalid="ignore"):
        ps = ps / ps.sum(axis=1, keepdims=True)
        qs = qs / qs.sum(axis=1, keepdims=True)
    return ps, qs, ok


def _smooth_rows(p: np.ndarray, eps: float = _KL_EPS) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``calibrate._smooth_distribution``: (smoothed rows, rows where it was possible)."""
    is_zero = p == 0
    n_zero = is_zero.sum(axis=1)
    n_nonzero = p.shape[1] - n_zero
    with np.errstate(divide="ignore", invalid="ignore"):
        eps1 = eps * n_zero / n_nonzero
    out = p + np.where(is_zero, eps, -eps1[:, None])
    ok = (n_nonzero > 0) & ~(out <= 0).any(axis=1)
    return out, ok


def kl_curves(hists: np.ndarray | torch.Tensor, bits: int = 8) -> np.ndarray:
    """KL(P || Q) of every candidate ``i = 2^(b-1) .. n`` for each histogram: (T, n - 2^(b-1) + 1).

    ``hists``: (T, n) counts of ``|x|`` (or one (n,) histogram, giving (1, n - nq + 1)).
    Candidates whose smoothing is impossible get ``inf``. The same algorithm as
    :func:`~clipq_helpers.calibrate.kl_threshold`, vectorised over histograms (the loop over
    candidates is shared), and it returns every KL value, for figures.
    """
    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    nq = 2 ** (bits - 1)
    n = h.shape[1]
    if n < nq:
        raise ValueError(f"{bits}-bit entropy calibration needs at least {nq} bins, got {n}")
    if (h < 0).any() or not (h.sum(axis=1) > 0).all():
        raise ValueError("hists must hold counts >= 0 with some mass in every histogram")
    tail = np.concatenate([np.cumsum(h[:, ::-1], axis=1)[:, ::-1], np.zeros((len(h), 1))], axis=1)
    out = np.full((len(h), n - nq + 1), np.inf)
    for j, i in enumerate(range(nq, n + 1)):
        ps, qs, ok = _kl_step(h, tail, i, nq)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.sum(ps * np.log(ps / qs), axis=1)
        out[ok, j] = kl[ok]
    return out


def kl_thresholds(
    hists: np.ndarray | torch.Tensor, bin_edges: np.ndarray | torch.Tensor, bits: int = 8
) -> np.ndarray:
    """Entropy-calibration threshold of each histogram: ``bin_edges[t, i*]`` (float64 (T,)).

    ``i*`` is the first candidate with the smallest KL (``bin_edges[t, -1]`` if none is
    finite), exactly as :func:`~clipq_helpers.calibrate.kl_threshold`, for T histograms at
    once. ``bin_edges``: (T, n + 1) (or (n + 1,) shared by all).
    """
    h = np.atleast_2d(np.asarray(hists, dtype=np.float64))
    e = np.asarray(bin_edges, dtype=np.float64)
    if e.ndim == 1 and e.size == h.shape[1] + 1:
        e = np.broadcast_to(e, (len(h), e.size))
    if e.shape != (len(h), h.shape[1] + 1):
        raise ValueError(f"bin_edges must have shape {(len(h), h.shape[1] + 1)}, got {e.shape}")
    kl = kl_curves(h, bits)
    nq = 2 ** (bits - 1)
    best = np.where(np.isfinite(kl).any(axis=1), np.argmin(kl, axis=1) + nq, h.shape[1])
    return e[np.arange(len(h)), best]


def kl_candidate(
    hist: np.ndarray | torch.Tensor, i: int, bits: int = 8
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """The two distributions compared for threshold ``bin_edges[i]``: (P, Q), each sums to 1.

    P: ``hist[:i]`` with the clipped tail added to its last bin; Q: ``hist[:i]`` merged into
    ``2^(b-1)`` chunks and spread back over the bins where P is nonzero; both smoothed and
    normalised as in :func:`~clipq_helpers.calibrate.kl_threshold`. ``(None, None)`` when the
    smoothing is impossible (KL = inf).
    """
    h = np.asarray(hist, dtype=np.float64).reshape(1, -1)
    nq = 2 ** (bits - 1)
    if not nq <= i <= h.shape[1]:
        raise ValueError(f"candidate i must lie in [{nq}, {h.shape[1]}], got {i}")
    tail = np.concatenate([np.cumsum(h[:, ::-1], axis=1)[:, ::-1], np.zeros((1, 1))], axis=1)
    ps, qs, ok = _kl_step(h, tail, i, nq)
    return (ps[0], qs[0]) if ok[0] else (None, None)


# --------------------------------------------------------------------------- ONNX Runtime


def _identity_graph(acts: Mapping[str, np.ndarray]):
    """An ONNX graph with one float input per tensor, each passed through Identity."""
    import onnx
    from onnx import TensorProto, helper

    inputs, outputs, nodes = [], [], []
    for k, a in enumerate(acts.values()):
        inputs.append(helper.make_tensor_value_info(f"x{k}", TensorProto.FLOAT, list(a.shape)))
        outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, list(a.shape)))
        nodes.append(helper.make_node("Identity", [f"x{k}"], [f"y{k}"], name=f"id{k}"))
    graph = helper.make_graph(nodes, "calibration_probe", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def ort_clip_values(
    acts: Mapping[str, torch.Tensor | np.ndarray], method: str, **options
) -> dict[str, float]:
    """Clip values that ONNX Runtime's calibrator ``method`` chooses for each tensor.

    The tensors are fed (as one batch) into a tiny ONNX graph of Identity nodes, and ORT's
    calibrator class is run on it exactly as ``quantize_static`` does
    (``augment_graph``, ``collect_data``, ``compute_data``). The returned clip is
    ``max(|low|, |high|)`` of ORT's range, the value a symmetric quantizer would use.

    Args:
        method: ``"minmax"`` (``MinMaxCalibrater``), ``"percentile"``
            (``PercentileCalibrater``) or ``"entropy"`` (``EntropyCalibrater``).
        options: keyword arguments of that class (e.g. ``symmetric=True``,
            ``num_bins=2048``, ``percentile=99.99``); its own defaults otherwise.
    """
    import onnx
    from onnxruntime.quantization.calibrate import (
        CalibrationDataReader,
        EntropyCalibrater,
        MinMaxCalibrater,
        PercentileCalibrater,
    )

    classes = {
        "minmax": MinMaxCalibrater,
        "percentile": PercentileCalibrater,
        "entropy": EntropyCalibrater,
    }
    if method not in classes:
        raise ValueError(f"method must be one of {sorted(classes)}, got {method!r}")
    arrays = {n: np.ascontiguousarray(torch.as_tensor(a).float().numpy()) for n, a in acts.items()}
    if not arrays:
        raise ValueError("acts is empty")
    feed = {f"x{k}": a for k, a in enumerate(arrays.values())}

    class _Once(CalibrationDataReader):
        def __init__(self) -> None:
            self.done = False

        def get_next(self):
            if self.done:
                return None
            self.done = True
            return feed

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "probe.onnx"
        onnx.save(_identity_graph(arrays), str(path))
        calib = classes[method](
            path, augmented_model_path=str(Path(tmp) / "augmented.onnx"), **options
        )
        calib.augment_graph()
        calib.create_inference_session()
        with contextlib.redirect_stdout(io.StringIO()):  # ORT prints progress lines
            calib.collect_data(_Once())
            ranges = calib.compute_data()
        del calib  # release the session before the folder goes
    out = {}
    for k, name in enumerate(arrays):
        lo, hi = ranges[f"x{k}"].range_value
        out[name] = float(max(np.abs(lo).max(), np.abs(hi).max()))
    return out
