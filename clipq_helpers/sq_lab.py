"""SmoothQuant on a whole Chinese-CLIP model, and the measurements of chapter 7.

The contract functions (:func:`~clipq_helpers.smoothquant.smooth_scales`,
:func:`~clipq_helpers.smoothquant.smooth_layernorm_linears`) smooth one LayerNorm and the
Linears it feeds. This module finds *where* that is allowed in the two towers and what has
to be done where it is not:

* :func:`smooth_groups`: every place a per-channel factor can be moved from an activation
  into the weights that read it (a :class:`SmoothGroup`): the pre-LN vision LayerNorms
  (exact), the post-LN text LayerNorms (their output is also the next residual stream, so
  the residual needs a compensating multiply), and the value projections, whose output
  rows can absorb ``1/s`` for the attention output projection (exact: attention is linear
  in V).
* :func:`smoothed_copy`: a deep copy with SmoothQuant applied to chosen groups, with one of
  the post-LN options (``residual="compensate"`` exact, ``"ignore"`` the tempting mistake).
* :class:`ResidualScale`: the explicit per-channel multiply that compensates the residual.
* :func:`smoothed_inputs`: the Linear inputs of the smoothed model, computed from the FP32
  model's captured inputs (``x / s``), for calibration without another forward pass.
* :func:`layer_difficulty` / :func:`alpha_sweep`: per-layer "difficulty" of activations and
  weights (max/median channel ratio, quantization SQNR) before and after smoothing.
* :func:`alpha_figure` / :func:`alpha_playground`: the alpha trade-off on one layer, as a
  static figure and as an ipywidgets slider.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import ticker
from matplotlib.figure import Figure
from torch import nn

from ._checks import check_bits, check_float_tensor, check_fraction
from .calib_compare import clip_table, quantized_copy
from .evaluate import encode_texts, tokenize
from .models import image_embeddings, text_embeddings
from .outlier_math import channel_absmax
from .plots import OKABE_ITO
from .processor import pixels_from_uint8
from .ptq import quick_metrics
from .smoothquant import smooth_layernorm_linears, smooth_scales, weight_column_absmax

__all__ = [
    "RESIDUAL_MODES",
    "SmoothGroup",
    "ResidualScale",
    "add_residual_scale",
    "smooth_groups",
    "group_scales",
    "apply_smoothing",
    "smoothed_copy",
    "smoothed_inputs",
    "group_label",
    "group_weight",
    "raw_embeddings",
    "embedding_gap",
    "calibration_clips",
    "quantized_metrics",
    "text_embedding_error",
    "layer_difficulty",
    "alpha_sweep",
    "group_sweeps",
    "smoothing_figure",
    "difficulty_figure",
    "alpha_tradeoff_figure",
    "alpha_figure",
    "alpha_playground",
]

#: What to do with the residual stream when a post-LN LayerNorm is smoothed.
RESIDUAL_MODES = ("compensate", "ignore")


@dataclass(frozen=True)
class SmoothGroup:
    """One place where a per-channel factor ``s`` moves from an activation into weights.

    Attributes:
        key: name of the first consuming Linear; the key of its input in
            :func:`clipq_helpers.calib_compare.capture_activations` (q/k/v under q).
        source: module whose output is divided by ``s``: a LayerNorm (``kind="layernorm"``)
            or the value projection (``kind="value"``, its output rows and bias).
        linears: names of the Linears that read that output (input columns times ``s``).
        residual: for a post-LN LayerNorm, the module whose second input (the residual)
            is that same output: it must be multiplied back by ``s``. None when nothing
            else reads the output (pre-LN blocks, a final LayerNorm, value projections).
        tower: ``"vision"`` or ``"text"``.
        kind: ``"layernorm"`` or ``"value"``.
    """

    key: str
    source: str
    linears: tuple[str, ...]
    residual: str | None
    tower: str
    kind: str = "layernorm"

    @property
    def exact_without_residual(self) -> bool:
        """True if smoothing this group alone keeps the function (no residual reads it)."""
        return self.residual is None


# --------------------------------------------------------------------------- groups


def _vision_groups(model: nn.Module, values: bool) -> list[SmoothGroup]:
    groups = []
    for i, _ in enumerate(model.vision_model.encoder.layers):
        p = f"vision_model.encoder.layers.{i}"
        qkv = tuple(f"{p}.self_attn.{x}_proj" for x in "qkv")
        groups.append(SmoothGroup(qkv[0], f"{p}.layer_norm1", qkv, None, "vision"))
        if values:
            groups.append(
                SmoothGroup(
                    f"{p}.self_attn.out_proj",
                    f"{p}.self_attn.v_proj",
                    (f"{p}.self_attn.out_proj",),
                    None,
                    "vision",
                    "value",
                )
            )
        groups.append(
            SmoothGroup(f"{p}.mlp.fc1", f"{p}.layer_norm2", (f"{p}.mlp.fc1",), None, "vision")
        )
    # the pooled [CLS] passes post_layernorm, read only by the projection
    groups.append(
        SmoothGroup(
            "visual_projection",
            "vision_model.post_layernorm",
            ("visual_projection",),
            None,
            "vision",
        )
    )
    return groups


def _text_groups(model: nn.Module, values: bool) -> list[SmoothGroup]:
    groups = []
    n = len(model.text_model.encoder.layer)
    prev_ln = "text_model.embeddings.LayerNorm"
    for i in range(n):
        p = f"text_model.encoder.layer.{i}"
        qkv = tuple(f"{p}.attention.self.{x}" for x in ("query", "key", "value"))
        # post-LN: the LayerNorm output feeding q/k/v is also the residual of attention.output
        groups.append(SmoothGroup(qkv[0], prev_ln, qkv, f"{p}.attention.output", "text"))
        if values:
            groups.append(
                SmoothGroup(
                    f"{p}.attention.output.dense",
                    f"{p}.attention.self.value",
                    (f"{p}.attention.output.dense",),
                    None,
                    "text",
                    "value",
                )
            )
        groups.append(
            SmoothGroup(
                f"{p}.intermediate.dense",
                f"{p}.attention.output.LayerNorm",
                (f"{p}.intermediate.dense",),
                f"{p}.output",
                "text",
            )
        )
        prev_ln = f"{p}.output.LayerNorm"
    # the last LayerNorm's [CLS] row goes only to the projection (get_text_features)
    groups.append(SmoothGroup("text_projection", prev_ln, ("text_projection",), None, "text"))
    return groups


def smooth_groups(
    model: nn.Module,
    towers: Sequence[str] = ("vision", "text"),
    values: bool = False,
) -> list[SmoothGroup]:
    """Every :class:`SmoothGroup` of a Chinese-CLIP model's chosen towers.

    Vision (pre-LN ViT): ``layer_norm1`` -> q/k/v, ``layer_norm2`` -> fc1,
    ``post_layernorm`` -> ``visual_projection``. Text (post-LN BERT): the embedding LayerNorm
    and each ``output.LayerNorm`` -> the next q/k/v (residual: that layer's
    ``attention.output``), each ``attention.output.LayerNorm`` -> ``intermediate.dense``
    (residual: that layer's ``output``), the last LayerNorm -> ``text_projection``.
    With ``values=True`` also value projection -> attention output projection.
    """
    towers = tuple(towers)
    if not towers or any(t not in ("vision", "text") for t in towers):
        raise ValueError(f"towers must name 'vision' and/or 'text', got {towers!r}")
    for attr in ("vision_model", "text_model"):
        if not hasattr(model, attr):
            raise TypeError(
                f"expected a transformers ChineseCLIPModel (with .{attr}), got {type(model).__name__}"
            )
    out: list[SmoothGroup] = []
    if "vision" in towers:
        out += _vision_groups(model, values)
    if "text" in towers:
        out += _text_groups(model, values)
    return out


def group_scales(
    model: nn.Module,
    groups: Iterable[SmoothGroup],
    act_absmax: Mapping[str, torch.Tensor],
    alpha: float = 0.5,
) -> dict[str, torch.Tensor]:
    """``smooth_scales`` of every group: ``{group.key: float32 (C,)}``.

    ``act_absmax[group.key]``: per-channel max |input| of the group's Linears, from
    calibration (e.g. ``channel_absmax`` of ``capture_activations(...)[key]``).
    """
    alpha = check_fraction(alpha, "alpha", 0.0, 1.0)
    scales = {}
    for g in groups:
        if g.key not in act_absmax:
            raise KeyError(
                f"no activation maxima for {g.key!r}; capture the inputs of the model's "
                "Linears first (clipq_helpers.calib_compare.capture_activations)"
            )
        lins = [model.get_submodule(n) for n in g.linears]
        scales[g.key] = smooth_scales(act_absmax[g.key], weight_column_absmax(lins), alpha)
    return scales


# --------------------------------------------------------------------------- applying


class ResidualScale(nn.Module):
    """Multiplies the residual input of a post-LN block by ``s`` (the compensation).

    Attached as ``residual_scale`` to a BERT ``SelfOutput``/``Output`` module, whose
    ``forward(hidden_states, input_tensor)`` computes ``LayerNorm(dense(hidden) + input)``;
    a forward pre-hook replaces ``input_tensor`` by ``input_tensor * s``. float32 ``(C,)``.
    """

    def __init__(self, s: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("scale", s.detach().to(torch.float32).clone())

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return r * self.scale.to(r.dtype)

    def extra_repr(self) -> str:
        return f"channels={self.scale.numel()}"


def _scale_residual_hook(module: nn.Module, args: tuple) -> tuple:
    if len(args) < 2:
        raise RuntimeError(
            f"{type(module).__name__} was called without a positional residual input; "
            "residual compensation expects forward(hidden_states, input_tensor)"
        )
    return (args[0], module.residual_scale(args[1]), *args[2:])


def add_residual_scale(block: nn.Module, s: torch.Tensor) -> None:
    """Make ``block(hidden, residual)`` use ``residual * s``, **in place** (composes if repeated).

    ``block``: a BERT ``SelfOutput``/``Output`` module; ``s``: float ``(C,)``. Attaches a
    :class:`ResidualScale` as ``block.residual_scale`` and a forward pre-hook.
    """
    s = check_float_tensor(s, "s")
    if s.dim() != 1 or bool((s <= 0).any()):
        raise ValueError(f"s must be a 1-D tensor of positive factors, got shape {tuple(s.shape)}")
    existing = getattr(block, "residual_scale", None)
    if isinstance(existing, ResidualScale):
        existing.scale.mul_(s.to(existing.scale.dtype))
        return
    block.residual_scale = ResidualScale(s)
    block.register_forward_pre_hook(_scale_residual_hook)


@torch.no_grad()
def apply_smoothing(
    model: nn.Module,
    groups: Iterable[SmoothGroup],
    scales: Mapping[str, torch.Tensor],
    residual: str = "compensate",
) -> None:
    """Apply SmoothQuant to ``groups`` of ``model``, **in place**.

    LayerNorm groups: ``smooth_layernorm_linears``. Value groups: the value projection's
    output rows (weight rows and bias) divided by ``s``, the output projection's input
    columns multiplied by ``s``. Groups with a ``residual``: ``"compensate"`` attaches a
    :class:`ResidualScale` (exact); ``"ignore"`` does not (the function changes).
    """
    if residual not in RESIDUAL_MODES:
        raise ValueError(f"residual must be one of {RESIDUAL_MODES}, got {residual!r}")
    groups = list(groups)
    for g in groups:
        if g.key not in scales:
            raise KeyError(f"no smoothing scale for group {g.key!r}")
    for g in groups:
        s = scales[g.key]
        lins = [model.get_submodule(n) for n in g.linears]
        src = model.get_submodule(g.source)
        if g.kind == "layernorm":
            smooth_layernorm_linears(src, lins, s)
        elif g.kind == "value":
            if src.weight.shape[0] != s.numel():
                raise ValueError(f"{g.source} has {src.weight.shape[0]} outputs, s has {s.numel()}")
            src.weight.div_(s[:, None].to(src.weight.dtype))
            if src.bias is not None:
                src.bias.div_(s.to(src.bias.dtype))
            for lin in lins:
                lin.weight.mul_(s.to(lin.weight.dtype))
        else:
            raise ValueError(f"unknown group kind {g.kind!r}")
        if g.residual is not None and residual == "compensate":
            add_residual_scale(model.get_submodule(g.residual), s)


def smoothed_copy(
    model: nn.Module,
    groups: Iterable[SmoothGroup],
    act_absmax: Mapping[str, torch.Tensor],
    alpha: float = 0.5,
    residual: str = "compensate",
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A smoothed **deep copy** of ``model`` and its scales ``{group.key: s}``.

    The scales are computed on the original weights (:func:`group_scales`), then applied to
    the copy with :func:`apply_smoothing`; ``model`` is unchanged.
    """
    groups = list(groups)
    scales = group_scales(model, groups, act_absmax, alpha)
    out = copy.deepcopy(model).eval()
    apply_smoothing(out, groups, scales, residual)
    return out, scales


def smoothed_inputs(
    acts: Mapping[str, torch.Tensor], scales: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Linear inputs of the smoothed model from the FP32 model's: ``x / s`` where smoothed.

    Exact (up to float rounding) when every smoothed group keeps the function, i.e. with
    ``residual="compensate"``: every other Linear input is unchanged. ``acts`` and the result
    are ``{name: float32 (rows, C)}``.
    """
    out = {}
    for name, x in acts.items():
        s = scales.get(name)
        out[name] = x if s is None else x / s.to(x.dtype)
    return out


def group_label(group: SmoothGroup) -> str:
    """Short name of a group's input, e.g. ``"T1 fc1"``, ``"V0 qkv"``, ``"T2 out"``, ``"T proj"``."""
    tower = "T" if group.tower == "text" else "V"
    parts = group.key.split(".")
    layer = next((parts[i + 1] for i, p in enumerate(parts) if p in ("layer", "layers")), "")
    if group.key.endswith(("query", "q_proj")):
        role = "qkv"
    elif group.key.endswith(("intermediate.dense", "fc1")):
        role = "fc1"
    elif group.key.endswith(("attention.output.dense", "out_proj")):
        role = "out"
    else:
        role = "proj"
    return f"{tower}{layer} {role}"


def group_weight(model: nn.Module, group: SmoothGroup) -> torch.Tensor:
    """The weights of a group's Linears stacked by rows: float32 ``(sum of out, C)``."""
    return torch.cat([model.get_submodule(n).weight.detach().float() for n in group.linears])


# --------------------------------------------------------------------------- FP32 checks


@torch.no_grad()
def raw_embeddings(
    model: nn.Module,
    tokenizer=None,
    images: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Projected, **not** normalised embeddings: ``{"image": (N, D), "text": (M, D)}``.

    Args:
        images: uint8 ``(N, H, W, 3)`` or None; captions: texts or None (needs ``tokenizer``).
    Only the towers given appear in the result.
    """
    out: dict[str, torch.Tensor] = {}
    if images is not None and len(images):
        out["image"] = image_embeddings(model.eval(), pixels_from_uint8(images)).float()
    if captions is not None and len(captions):
        if tokenizer is None:
            raise ValueError("captions need a tokenizer (e.g. models.load_tokenizer('pocket'))")
        out["text"] = text_embeddings(model.eval(), **tokenize(tokenizer, list(captions))).float()
    if not out:
        raise ValueError("give images and/or captions to embed")
    return out


def embedding_gap(
    reference: Mapping[str, torch.Tensor], other: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """How far two sets of :func:`raw_embeddings` are apart, per tower both contain.

    Returns ``{tower}_max_abs`` (max |difference|), ``{tower}_scale`` (max |reference|) and
    ``{tower}_cos_min`` (smallest cosine between matching rows).
    """
    towers = [t for t in ("image", "text") if t in reference and t in other]
    if not towers:
        raise ValueError("the two embedding sets share no tower ('image' or 'text')")
    out: dict[str, float] = {}
    for tower in towers:
        ref, got = reference[tower], other[tower]
        if ref.shape != got.shape:
            raise ValueError(f"{tower}: shapes differ, {tuple(ref.shape)} vs {tuple(got.shape)}")
        out[f"{tower}_max_abs"] = float((got - ref).abs().max())
        out[f"{tower}_scale"] = float(ref.abs().max())
        out[f"{tower}_cos_min"] = float(torch.nn.functional.cosine_similarity(got, ref).min())
    return out


# --------------------------------------------------------------------------- quantized metrics


def calibration_clips(
    acts: Mapping[str, torch.Tensor], pct: float = 99.99
) -> dict[str, dict[str, float]]:
    """Static clip values per Linear input: ``{"min-max": {name: c}, "percentile": {name: c}}``.

    Min-max is ``max|x|``; percentile is the ``pct``-th percentile of ``|x|`` read from a
    2048-bin histogram, as in chapter 5 (:func:`~clipq_helpers.calib_compare.clip_table`).
    """
    table = clip_table(acts, bits=(8,), pct=pct, methods=("min-max", "percentile"))[8]
    return {m: {n: row[m] for n, row in table.items()} for m in ("min-max", "percentile")}


def quantized_metrics(
    fp32_model: nn.Module,
    model: nn.Module,
    tokenizer,
    clips: Mapping[str, float],
    a_bits: int,
    n: int = 64,
    include=None,
    towers: tuple[str, ...] = ("image", "text"),
) -> dict:
    """:func:`~clipq_helpers.ptq.quick_metrics` of ``model`` quantized the NPU way.

    W8 per-channel symmetric weights, per-tensor static symmetric ``a_bits`` activations with
    the given clips, on the Linears selected by ``include(name, module)`` (default all), via
    :func:`~clipq_helpers.calib_compare.quantized_copy`. ``model`` may be a smoothed copy of
    ``fp32_model``: the metrics compare with ``fp32_model``'s embeddings.
    """
    q = quantized_copy(
        model, w_bits=8, w_granularity="per_channel", a_bits=a_bits, clips=clips, include=include
    )
    return quick_metrics(fp32_model, q, tokenizer, n=n, towers=towers)


def text_embedding_error(
    reference: torch.Tensor,
    model: nn.Module,
    tokenizer,
    captions: Sequence[str],
    clips: Mapping[str, float],
    a_bits: int,
    include=None,
) -> float:
    """``1 - mean cosine`` of ``model``'s quantized text embeddings to ``reference``.

    A cheaper probe than :func:`quantized_metrics` for sweeps (captions only, no prompts):
    ``model`` is quantized as there (W8 per-channel, static per-tensor ``a_bits``, ``clips``,
    Linears chosen by ``include``), ``reference`` is the L2-normalised FP32 embedding
    ``(N, D)`` of ``captions`` (e.g. ``evaluate.encode_texts(fp32_model, tok, captions)``).
    """
    if reference.shape[0] != len(captions):
        raise ValueError(
            f"reference has {reference.shape[0]} rows but there are {len(captions)} captions"
        )
    q = quantized_copy(
        model, w_bits=8, w_granularity="per_channel", a_bits=a_bits, clips=clips, include=include
    )
    emb = encode_texts(q, tokenizer, list(captions))
    return float(1.0 - (emb * reference).sum(dim=-1).mean())


# --------------------------------------------------------------------------- difficulty


def _ratio(m: torch.Tensor) -> float:
    med = float(m.median())
    return float(m.max()) / med if med > 0 else math.inf


def _sqnr(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    signal = float(torch.sum(x.double() ** 2))
    noise = float(torch.sum((x - x_hat).double() ** 2))
    return math.inf if noise == 0.0 else 10.0 * math.log10(signal / noise)


def _fq_tensor(x: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    s = x.abs().max().clamp(min=1e-12) / qmax
    return torch.round(x / s).clamp(-qmax, qmax) * s


def _fq_rows(w: torch.Tensor, bits: int) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    s = w.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / qmax
    return torch.round(w / s).clamp(-qmax, qmax) * s


@torch.no_grad()
def layer_difficulty(
    x: torch.Tensor,
    w: torch.Tensor,
    s: torch.Tensor | None = None,
    a_bits: int = 8,
    w_bits: int = 8,
) -> dict[str, float]:
    """How hard ``X / s`` and ``W diag(s)`` are to quantize, and what the layer output loses.

    Activations: symmetric per-tensor, min-max scale over ``x`` itself; weights: symmetric
    per-channel (one scale per output row). No bias (it cancels in the error).

    Args:
        x: float ``(rows, C)`` Linear inputs; w: float ``(out, C)`` weight;
        s: float ``(C,)`` smoothing factors (None: no smoothing, ``s = 1``).
    Returns:
        ``act_ratio`` / ``w_ratio``: max / median of the per-input-channel max |value| of
        ``X / s`` and of ``W diag(s)`` (columns); ``act_sqnr`` / ``w_sqnr``: SQNR (dB) of the
        quantized activation / weight; ``out_sqnr``: SQNR (dB) of ``Q(X/s) Q(W s)^T``
        against ``X W^T``.
    """
    x = check_float_tensor(x, "x").detach().float()
    w = check_float_tensor(w, "w").detach().float()
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"expected x (rows, C) and w (out, C); got {tuple(x.shape)} and {tuple(w.shape)}"
        )
    a_bits, w_bits = check_bits(a_bits, "a_bits"), check_bits(w_bits, "w_bits")
    if s is not None:
        s = check_float_tensor(s, "s").detach().float()
        if s.shape != (x.shape[1],):
            raise ValueError(f"s must have shape ({x.shape[1]},), got {tuple(s.shape)}")
        xs, ws = x / s, w * s
    else:
        xs, ws = x, w
    xq, wq = _fq_tensor(xs, a_bits), _fq_rows(ws, w_bits)
    return {
        "act_ratio": _ratio(channel_absmax(xs)),
        "w_ratio": _ratio(ws.abs().amax(dim=0)),
        "act_sqnr": _sqnr(xs, xq),
        "w_sqnr": _sqnr(ws, wq),
        "out_sqnr": _sqnr(x @ w.T, xq @ wq.T),
    }


def alpha_sweep(
    x: torch.Tensor,
    w: torch.Tensor,
    alphas: Sequence[float],
    a_bits: int = 8,
    w_bits: int = 8,
) -> list[dict[str, float]]:
    """:func:`layer_difficulty` at each ``alpha`` (``s`` from the maxima of ``x`` and ``w``).

    One dict per alpha, with the key ``alpha`` added. ``x``: ``(rows, C)``, ``w``: ``(out, C)``.
    """
    x = check_float_tensor(x, "x").detach().float()
    w = check_float_tensor(w, "w").detach().float()
    act, wmax = channel_absmax(x), w.abs().amax(dim=0)
    rows = []
    for a in alphas:
        s = smooth_scales(act, wmax, float(a))
        rows.append({"alpha": float(a), **layer_difficulty(x, w, s, a_bits, w_bits)})
    return rows


def group_sweeps(
    model: nn.Module,
    groups: Sequence[SmoothGroup],
    acts: Mapping[str, torch.Tensor],
    alphas: Sequence[float],
    a_bits: int = 8,
    max_rows: int = 512,
    max_out: int = 256,
) -> np.ndarray:
    """Layer-output SQNR (dB) of every group at every alpha: float ``(groups, alphas)``.

    For speed, each group uses the first ``max_rows`` rows of its input and an evenly spaced
    subset of at most ``max_out`` output rows of its stacked weights (per-channel weight
    scales are per row, so a row subset is quantized exactly as in the full layer). The
    smoothing factors use the full input's channel maxima.
    """
    out = np.empty((len(groups), len(alphas)))
    for i, g in enumerate(groups):
        x = acts[g.key]
        w = group_weight(model, g)
        act, wmax = channel_absmax(x), w.abs().amax(dim=0)
        idx = torch.linspace(0, w.shape[0] - 1, min(max_out, w.shape[0])).round().long()
        xs, ws = x[:max_rows], w[idx]
        for j, a in enumerate(alphas):
            s = smooth_scales(act, wmax, float(a))
            out[i, j] = layer_difficulty(xs, ws, s, a_bits, 8)["out_sqnr"]
    return out


# --------------------------------------------------------------------------- figures


def _log_axis(ax) -> None:
    """Log-scale y axis with plain tick labels at 1, 2, 5 x 10^k (0.5, 2, 10, ...)."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def smoothing_figure(x: torch.Tensor, w: torch.Tensor, s: torch.Tensor, title: str = "") -> Figure:
    """Per-input-channel max |X| and max |W| (columns) before and after smoothing by ``s``.

    x: float ``(rows, C)``; w: float ``(out, C)``; s: float ``(C,)``. Log-scale y axes.
    """
    x = check_float_tensor(x, "x").detach().float()
    w = check_float_tensor(w, "w").detach().float()
    act, wmax = channel_absmax(x), w.abs().amax(dim=0)
    ch = np.arange(act.numel())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    for ax, before, after, what in (
        (axes[0], act, act / s, "激活 X: max|X_j|"),
        (axes[1], wmax, wmax * s, "权重 W: max|W_j| (列)"),
    ):
        ax.plot(ch, before.numpy(), color=OKABE_ITO[7], lw=0.8, alpha=0.6, label="平滑前")
        ax.plot(ch, after.numpy(), color=OKABE_ITO[0], lw=1, label="平滑后")
        _log_axis(ax)
        ax.set_xlabel("输入通道 j")
        ax.set_title(f"{what}: 离群比 {_ratio(before):.1f} → {_ratio(after):.1f}", fontsize=10)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("通道最大绝对值 (对数)")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def difficulty_figure(
    labels: Sequence[str],
    before: Sequence[Mapping[str, float]],
    after: Sequence[Mapping[str, float]],
    alpha: float,
    setting: str = "W8A8",
) -> Figure:
    """Per-group difficulty before/after smoothing: outlier ratios (top), SQNRs (bottom).

    ``before`` / ``after``: one :func:`layer_difficulty` dict per label; ``setting`` names
    their bit widths on the SQNR axis.
    """
    if not (len(labels) == len(before) == len(after)) or not labels:
        raise ValueError("labels, before and after must be non-empty and of equal length")
    pos = np.arange(len(labels))
    fig, (ax_r, ax_s) = plt.subplots(2, 1, figsize=(11, 5.6), sharex=True)
    # (row key, axis, colour, name): activation and weight on both axes, layer output on SQNR
    series = [
        (f"{key}_{metric}", ax, colour, name)
        for key, colour, name in (("act", OKABE_ITO[0], "激活"), ("w", OKABE_ITO[1], "权重"))
        for metric, ax in (("ratio", ax_r), ("sqnr", ax_s))
    ] + [("out_sqnr", ax_s, OKABE_ITO[2], "层输出")]
    stages = (
        (before, {"ls": ":", "marker": "o"}, "平滑前"),
        (after, {"marker": "s"}, f"α = {alpha:.2f}"),
    )
    for row_key, ax, colour, name in series:
        for rows, style, stage in stages:
            ax.plot(
                pos,
                [r[row_key] for r in rows],
                color=colour,
                ms=3,
                label=f"{name}, {stage}",
                **style,
            )
    _log_axis(ax_r)
    ax_r.set_ylabel("离群比 max/median")
    ax_r.legend(fontsize=7, ncol=2)
    ax_s.set_ylabel(f"SQNR (dB), {setting}")
    ax_s.legend(fontsize=7, ncol=3)
    ax_s.set_xticks(pos)
    ax_s.set_xticklabels(labels, rotation=90, fontsize=7)
    fig.tight_layout()
    return fig


def alpha_tradeoff_figure(
    alphas: Sequence[float],
    layer_sqnr: Mapping[str, np.ndarray],
    end_alphas: Sequence[float],
    end_error: Mapping[int, Sequence[float]],
    end_baseline: Mapping[int, float],
    chosen: float,
    a_bits: int = 8,
) -> Figure:
    """The alpha trade-off over a whole tower: per-layer SQNR (left), end metric (right).

    Args:
        alphas: the alpha grid of ``layer_sqnr``.
        layer_sqnr: ``{tower label: (groups, alphas) array}`` of layer-output SQNR (dB), e.g.
            from :func:`group_sweeps`; the median and the minimum over groups are drawn.
        end_alphas: the alpha grid of ``end_error``.
        end_error: ``{a_bits: [1 - cosine per alpha]}`` (text embeddings against FP32).
        end_baseline: ``{a_bits: 1 - cosine without smoothing}`` (dashed lines).
        chosen: the alpha chosen (vertical line).
        a_bits: activation bits of ``layer_sqnr`` (for the title).
    """
    fig, (ax_l, ax_e) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    for i, (label, arr) in enumerate(layer_sqnr.items()):
        arr = np.asarray(arr)
        colour = OKABE_ITO[i % len(OKABE_ITO)]
        ax_l.plot(
            alphas, np.median(arr, axis=0), color=colour, marker="o", ms=3, label=f"{label} 中位数"
        )
        ax_l.plot(
            alphas,
            arr.min(axis=0),
            color=colour,
            ls="--",
            marker=".",
            ms=3,
            label=f"{label} 最差层",
        )
    ax_l.axvline(chosen, color="0.4", ls=":", lw=1)
    ax_l.set_xlabel("迁移强度 α")
    ax_l.set_ylabel(f"层输出 SQNR (dB), W8A{a_bits}")
    ax_l.set_title("逐层 (校准数据)", fontsize=10)
    ax_l.legend(fontsize=7)
    for i, (bits, errs) in enumerate(end_error.items()):
        colour = OKABE_ITO[(i + 3) % len(OKABE_ITO)]
        ax_e.plot(end_alphas, errs, color=colour, marker="o", ms=4, label=f"W8A{bits}, 平滑")
        ax_e.axhline(end_baseline[bits], color=colour, ls="--", lw=1, label=f"W8A{bits}, 不平滑")
    ax_e.axvline(chosen, color="0.4", ls=":", lw=1)
    ax_e.set_yscale("log")
    ax_e.set_xlabel("迁移强度 α")
    ax_e.set_ylabel("1 − 余弦相似度 (文本嵌入, 对数)")
    ax_e.set_title("端到端 (评测数据)", fontsize=10)
    ax_e.legend(fontsize=7)
    fig.tight_layout()
    return fig


def alpha_figure(
    x: torch.Tensor,
    w: torch.Tensor,
    alpha: float = 0.5,
    a_bits: int = 8,
    w_bits: int = 8,
    title: str = "",
    sweep: Sequence[dict[str, float]] | None = None,
) -> Figure:
    """The alpha trade-off on one layer: channel maxima after smoothing, and SQNR vs alpha.

    Left: per-input-channel max |X/s| and max |W s| (columns), channels in their order.
    Right: activation, weight and output SQNR (dB) over alpha (from ``sweep``, or a
    21-point :func:`alpha_sweep`), with the chosen ``alpha`` marked.
    """
    alpha = check_fraction(alpha, "alpha", 0.0, 1.0)
    x = check_float_tensor(x, "x").detach().float()
    w = check_float_tensor(w, "w").detach().float()
    act, wmax = channel_absmax(x), w.abs().amax(dim=0)
    s = smooth_scales(act, wmax, alpha)
    if sweep is None:
        sweep = alpha_sweep(x, w, np.linspace(0.0, 1.0, 21), a_bits, w_bits)
    here = layer_difficulty(x, w, s, a_bits, w_bits)
    fig, (ax_c, ax_s) = plt.subplots(1, 2, figsize=(10, 3.6))
    ch = np.arange(act.numel())
    ax_c.plot(ch, (act / s).numpy(), color=OKABE_ITO[0], lw=2.2, label="激活 max|X/s|")
    ax_c.plot(
        ch, (wmax * s).numpy(), color=OKABE_ITO[1], lw=0.9, ls="--", label="权重 max|W·s| (列)"
    )
    _log_axis(ax_c)
    ax_c.set_xlabel("输入通道 j")
    ax_c.set_ylabel("通道最大绝对值 (对数)")
    ax_c.set_title(
        f"α = {alpha:.2f}: 激活离群比 {here['act_ratio']:.1f}, 权重 {here['w_ratio']:.1f}",
        fontsize=10,
    )
    ax_c.legend(fontsize=8, loc="upper right")
    a = [r["alpha"] for r in sweep]
    for key, colour, label in (
        ("act_sqnr", OKABE_ITO[0], f"激活 A{a_bits} 逐张量"),
        ("w_sqnr", OKABE_ITO[1], f"权重 W{w_bits} 逐通道"),
        ("out_sqnr", OKABE_ITO[2], "层输出 Y"),
    ):
        ax_s.plot(a, [r[key] for r in sweep], color=colour, marker="o", ms=3, label=label)
    ax_s.axvline(alpha, color="0.4", ls="--", lw=1)
    ax_s.set_xlabel("迁移强度 α")
    ax_s.set_ylabel("SQNR (dB)")
    ax_s.set_title(f"输出 SQNR 在 α = {alpha:.2f}: {here['out_sqnr']:.1f} dB", fontsize=10)
    ax_s.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def alpha_playground(
    x: torch.Tensor,
    w: torch.Tensor,
    alpha: float = 0.5,
    a_bits: int = 8,
    title: str = "",
) -> Any:
    """ipywidgets sliders (alpha, activation bits) around :func:`alpha_figure`.

    Needs a live Jupyter kernel. Weights stay at 8 bits. Returns an
    ``ipywidgets.interactive``; each change redraws the figure.
    """
    import ipywidgets as widgets

    from .plots import use_cjk_font

    check_fraction(alpha, "alpha", 0.0, 1.0)
    check_bits(a_bits, "a_bits")
    use_cjk_font()
    x = check_float_tensor(x, "x").detach().float()
    w = check_float_tensor(w, "w").detach().float()
    sweeps: dict[int, list[dict[str, float]]] = {}
    style = {"description_width": "initial"}

    def show(alpha: float, a_bits: int) -> None:
        if a_bits not in sweeps:
            sweeps[a_bits] = alpha_sweep(x, w, np.linspace(0.0, 1.0, 21), a_bits, 8)
        alpha_figure(x, w, alpha, a_bits, 8, title, sweeps[a_bits])
        plt.show()

    return widgets.interactive(
        show,
        alpha=widgets.FloatSlider(
            value=alpha,
            min=0.0,
            max=1.0,
            step=0.05,
            description="迁移强度 α",
            style=style,
            continuous_update=False,
        ),
        a_bits=widgets.IntSlider(
            value=a_bits,
            min=4,
            max=8,
            description="激活位宽 bits",
            style=style,
            continuous_update=False,
        ),
    )
