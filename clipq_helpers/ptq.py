"""Post-training quantization of a whole Chinese-CLIP model, and quick end metrics (chapters 4-7).

* :func:`quantize_model`: a fake-quantized deep copy (every selected ``nn.Linear`` becomes a
  :class:`~clipq_helpers.fakequant.QuantLinear`), calibrated on images and captions.
* :func:`quick_metrics`: zero-shot accuracy, retrieval R@1 and embedding cosine to FP32 on
  small subsets (seconds on a CPU), for comparing many configurations in one notebook.
* :func:`capture_inputs`: the full input tensors of chosen Linears (forward pre-hooks).
* :func:`layer_sqnr_table`: per-layer SQNR of per-tensor symmetric activations with and
  without the outlier channels.
* :func:`rescaled_variant`: the "what-if" model of chapter 4: LayerNorm channels of the
  pre-LN vision tower scaled by ``k`` and the consuming Linears' input columns by ``1/k``
  (the exact inverse of SmoothQuant). Same function in exact arithmetic, planted outliers.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from . import shapes
from ._checks import check_bits
from .evaluate import (
    ZERO_SHOT_TEMPLATE,
    class_names,
    encode_images,
    encode_texts,
    recall_at_k,
    tokenize,
)
from .fakequant import FastQuantLinear, QuantLinear
from .outlier_math import _check_factor, _outliers_from_absmax, _split_sqnr, channel_absmax
from .processor import pixels_from_uint8
from .smoothquant import smooth_layernorm_linears
from .surgery import iter_linears, linear_role, replace_linears

__all__ = [
    "quantize_model",
    "calibrate",
    "set_activation_bits",
    "quick_metrics",
    "capture_inputs",
    "layer_sqnr_table",
    "rescaled_variant",
    "vision_layernorm_groups",
]

Include = Callable[[str, nn.Linear], bool]


def _all_linears(name: str, mod: nn.Linear) -> bool:
    return True


# --------------------------------------------------------------------------- quantize


@torch.no_grad()
def calibrate(
    model: nn.Module,
    images: np.ndarray,
    captions: Sequence[str],
    tokenizer,
    batch_size: int = 128,
) -> None:
    """Run calibration passes through every :class:`QuantLinear` of ``model``, then freeze them.

    Args:
        images: uint8 ``(N, H, W, 3)`` at the model's image size (may be empty: ``N = 0``).
        captions: Chinese captions (may be empty).
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLinear)]
    if not named:
        raise ValueError("model has no QuantLinear modules; build it with quantize_model()")
    qls = [m for _, m in named]
    vision = any(n.startswith(("vision_model", "visual_projection")) for n, _ in named)
    text = any(n.startswith(("text_model", "text_projection")) for n, _ in named)
    for q in qls:
        q.start_calibration()
    model.eval()
    try:
        for i in range(0, len(images) if vision else 0, batch_size):
            model.get_image_features(pixel_values=pixels_from_uint8(images[i : i + batch_size]))
        for i in range(0, len(captions) if text else 0, batch_size):
            model.get_text_features(**tokenize(tokenizer, list(captions[i : i + batch_size])))
    finally:
        for q in qls:
            q.calibrating = False
    for q in qls:
        if q.needs_calibration and q.observer is not None and q.observer.count == 0:
            raise ValueError(
                "a quantized Linear saw no calibration data; pass calibration images for the "
                "vision tower and captions for the text tower (or exclude that tower)"
            )
        q.freeze()


def quantize_model(
    model: nn.Module,
    calib_images: np.ndarray,
    calib_captions: Sequence[str],
    *,
    tokenizer=None,
    w_bits: int | None = 8,
    a_bits: int | None = 8,
    w_granularity: str = "per_tensor",
    a_granularity: str = "per_tensor",
    a_observer="minmax",
    a_symmetric: bool = True,
    group_size: int = 128,
    include: Include | None = None,
    batch_size: int = 128,
) -> nn.Module:
    """A calibrated fake-quantized **deep copy** of ``model`` (the original is untouched).

    Every ``nn.Linear`` for which ``include(name, module)`` is true (default: all of them,
    both towers and both projections) becomes a ``QuantLinear`` with the given settings
    (see :class:`~clipq_helpers.fakequant.QuantLinear`); static activation scales are
    calibrated on ``calib_images`` (uint8 ``(N, H, W, 3)``) and ``calib_captions``.
    Attention's two matrix products, LayerNorm, GELU and softmax stay in floating point.

    ``tokenizer`` defaults to the pocket model's. The defaults are the "naive" setting of
    chapter 4: symmetric per-tensor W8A8, min-max calibration.
    """
    if tokenizer is None:
        from .models import load_tokenizer

        tokenizer = load_tokenizer("pocket")
    cfg = dict(
        w_bits=w_bits,
        a_bits=a_bits,
        w_granularity=w_granularity,
        a_granularity=a_granularity,
        a_observer=a_observer,
        a_symmetric=a_symmetric,
        group_size=group_size,
    )
    q = copy.deepcopy(model).eval()
    names = replace_linears(
        q, lambda name, lin: FastQuantLinear.from_linear(lin, **cfg), include or _all_linears
    )
    if not names:
        raise ValueError("include() selected no nn.Linear: nothing to quantize")
    if a_bits is not None and a_granularity == "per_tensor":
        calibrate(q, calib_images, calib_captions, tokenizer, batch_size)
    return q


def set_activation_bits(q_model: nn.Module, a_bits: int) -> nn.Module:
    """Re-freeze every calibrated static ``QuantLinear`` of ``q_model`` at ``a_bits``, **in place**.

    The observers keep their calibration statistics, so no new calibration pass is needed:
    e.g. a min-max scale becomes ``absmax / (2^(a_bits-1) - 1)``. Returns ``q_model``.
    """
    bits = check_bits(a_bits, "a_bits")
    qls = [
        m
        for m in q_model.modules()
        if isinstance(m, QuantLinear) and m.needs_calibration and m.calibrated
    ]
    if not qls:
        raise ValueError("q_model has no calibrated static QuantLinear; use quantize_model() first")
    for m in qls:
        m.a_bits = bits
        m.freeze()
    return q_model


# --------------------------------------------------------------------------- metrics


@lru_cache(maxsize=8)
def _subset(split: str, n: int) -> shapes.Split:
    return shapes.make_split(split, n)


def _fingerprint(model: nn.Module) -> tuple:
    return tuple(
        (t.data_ptr(), t._version) for t in list(model.parameters()) + list(model.buffers())
    )


_REF_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


_TEXT = ("text_model", "text_projection")
_VISION = ("vision_model", "visual_projection")


@torch.no_grad()
def _embed(
    model: nn.Module, tokenizer, n: int, towers: tuple[str, ...] = ("image", "text")
) -> dict[str, torch.Tensor]:
    ev, zs = _subset("eval", n), _subset("zeroshot", n)
    out = {}
    if "image" in towers:
        out["img"] = encode_images(model, ev.images)
        out["zs_img"] = encode_images(model, zs.images)
    if "text" in towers:
        prompts = [shapes.prompt(c, h, ZERO_SHOT_TEMPLATE) for c, h in class_names()]
        out["txt"] = encode_texts(model, tokenizer, ev.captions)
        out["prompts"] = encode_texts(model, tokenizer, prompts)
    return out


def _reference(model: nn.Module, tokenizer, n: int) -> dict[str, torch.Tensor]:
    """FP32 embeddings, cached per (model, tokenizer, n) while the model's tensors are unchanged."""
    key = (id(tokenizer), n, _fingerprint(model))
    per_model = _REF_CACHE.setdefault(model, {})
    if key not in per_model:
        per_model.clear()
        per_model[key] = _embed(model, tokenizer, n)
    return per_model[key]


def quick_metrics(
    fp32_model: nn.Module,
    q_model: nn.Module,
    tokenizer,
    n: int = 128,
    towers: tuple[str, ...] = ("image", "text"),
) -> dict:
    """End metrics of ``q_model`` on small subsets, and its embedding cosine to ``fp32_model``.

    Subsets: the first ``n`` scenes of the eval split (retrieval among ``n`` pairs; embedding
    cosine) and of the zero-shot split (held-out colour-shape pairs, classified among all 64
    prompts). Smaller than :func:`clipq_helpers.evaluate.evaluate` (1000 pairs, 400 images),
    so R@1 is higher than on the full benchmark: compare configurations with each other.

    ``towers``: which of ``q_model``'s towers to run. With ``("image",)`` the text side
    (captions, prompts) comes from ``fp32_model``'s cached embeddings, which halves the
    cost; ``q_model``'s text tower must then be unquantized (and unchanged).

    Returns floats: ``zero_shot``, ``t2i_R@1``, ``i2t_R@1``, ``t2i_R@5``, ``cos_image``,
    ``cos_text`` (mean cosine to FP32), ``cos_image_min``, ``cos_text_min``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    towers = tuple(towers)
    if not towers or any(t not in ("image", "text") for t in towers):
        raise ValueError(f"towers must name 'image' and/or 'text', got {towers!r}")
    for tower, prefixes in (("text", _TEXT), ("image", _VISION)):
        if tower not in towers and any(
            isinstance(m, QuantLinear) and name.startswith(prefixes)
            for name, m in q_model.named_modules()
        ):
            raise ValueError(
                f"q_model's {tower} tower is quantized: include {tower!r} in towers to measure it"
            )
    ref = _reference(fp32_model, tokenizer, n)
    if q_model is fp32_model:
        emb = ref
    else:
        emb = _embed(q_model, tokenizer, n, towers)
        emb = {k: emb.get(k, ref[k]) for k in ref}
    classes = class_names()
    truth = torch.tensor(
        [
            classes.index((s.objects[0].color, s.objects[0].shape))
            for s in _subset("zeroshot", n).scenes
        ]
    )
    pred = (emb["zs_img"] @ emb["prompts"].T).argmax(dim=1)
    sim = emb["txt"] @ emb["img"].T
    t2i, i2t = recall_at_k(sim, (1, 5)), recall_at_k(sim.T, (1,))
    cos_i = (emb["img"] * ref["img"]).sum(-1)
    cos_t = (emb["txt"] * ref["txt"]).sum(-1)
    return {
        "zero_shot": float((pred == truth).float().mean()),
        "t2i_R@1": t2i[1],
        "i2t_R@1": i2t[1],
        "t2i_R@5": t2i[5],
        "cos_image": float(cos_i.mean()),
        "cos_text": float(cos_t.mean()),
        "cos_image_min": float(cos_i.min()),
        "cos_text_min": float(cos_t.min()),
    }


# --------------------------------------------------------------------------- activations


def capture_inputs(
    model: nn.Module,
    run: Callable[[], object],
    names: Sequence[str] | Callable[[str], bool],
    mask: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The input tensor of each selected ``nn.Linear`` during ``run()`` (no grad).

    Args:
        names: Linear names, or a predicate on the name.
        mask: optional bool ``(B, T)``; a 3-D input ``(B, T, C)`` is then reduced to its
            selected rows ``(N, C)`` (e.g. the attention mask, to drop padding tokens).
    Returns:
        {name: float32 tensor}: the inputs of all calls, concatenated along dim 0.
    """
    pick = names if callable(names) else set(names).__contains__
    targets = [(n, m) for n, m in iter_linears(model) if pick(n)]
    if not targets:
        raise ValueError("no nn.Linear of the model matches `names`")
    got: dict[str, list[torch.Tensor]] = {n: [] for n, _ in targets}
    handles = []
    for name, mod in targets:

        def hook(_m, args, _name=name):
            x = args[0].detach().float()
            if mask is not None and x.ndim == 3 and tuple(mask.shape) == tuple(x.shape[:2]):
                x = x[mask.bool()]
            got[_name].append(x.clone())

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) if v else torch.empty(0) for n, v in got.items()}


def layer_sqnr_table(
    inputs: dict[str, torch.Tensor], bits: int = 8, factor: float = 6.0
) -> list[dict]:
    """Per Linear input: outlier ratio, outlier channels and the SQNRs of :func:`split_sqnr`.

    Outlier channels are those above ``factor`` x the median channel max (none: the
    ``rest_*`` columns equal ``all``). One row per name, in order; floats in dB.
    """
    factor = _check_factor(factor)
    bits = check_bits(bits)
    rows = []
    for name, x in inputs.items():
        m = channel_absmax(x)  # validates x
        ch = _outliers_from_absmax(m, factor)
        keep = torch.ones(m.numel(), dtype=torch.bool)
        keep[ch] = False
        if not bool(keep.any()):
            keep[:] = True
            ch = ch[:0]
        med = float(m.median())
        row = {
            "name": name,
            "role": linear_role(name),
            "channels": int(x.shape[-1]),
            "ratio": float(m.max()) / med if med > 0 else float("inf"),
            "outliers": ch.tolist(),
        }
        row.update(_split_sqnr(x, keep, bits))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- what-if


def vision_layernorm_groups(model: nn.Module) -> list[tuple[nn.LayerNorm, list[nn.Linear]]]:
    """(LayerNorm, the Linears it feeds) of every pre-LN vision encoder layer.

    ``layer_norm1`` feeds q/k/v, ``layer_norm2`` feeds ``fc1``; nothing else reads their
    outputs (the residual stream bypasses them), so rescaling them is exact.
    """
    groups = []
    for layer in model.vision_model.encoder.layers:
        att = layer.self_attn
        groups.append((layer.layer_norm1, [att.q_proj, att.k_proj, att.v_proj]))
        groups.append((layer.layer_norm2, [layer.mlp.fc1]))
    return groups


def rescaled_variant(
    model: nn.Module, channels: Sequence[int] | torch.Tensor, k: float
) -> nn.Module:
    """The *rescaled variant*: a deep copy with planted LayerNorm outlier channels.

    In every vision encoder layer, LayerNorm gamma and beta of ``channels`` are multiplied
    by ``k`` and the matching input columns of the Linears they feed are divided by ``k``
    (``smooth_layernorm_linears`` with ``s = 1/k`` on those channels: SmoothQuant run
    backwards). The model computes the same function up to float rounding; only its
    parametrisation, and so its activation outliers, change. Never call it the pocket model.
    """
    if not (isinstance(k, int | float) and not isinstance(k, bool) and k > 0):
        raise ValueError(f"k must be a positive number, got {k!r}")
    out = copy.deepcopy(model).eval()
    groups = vision_layernorm_groups(out)
    width = groups[0][0].weight.shape[0]
    idx = torch.as_tensor(channels, dtype=torch.int64).reshape(-1)
    if idx.numel() == 0 or int(idx.min()) < 0 or int(idx.max()) >= width:
        raise ValueError(f"channels must be a non-empty list of indices in [0, {width})")
    s = torch.ones(width)
    s[idx] = 1.0 / float(k)
    for ln, linears in groups:
        smooth_layernorm_linears(ln, linears, s)
    return out
