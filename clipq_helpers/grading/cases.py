"""Inputs of the stored grading cases, built deterministically from fixed seeds.

Used only by ``tools/build_grading_refs.py`` (and the drift test); grading reads the stored
files. Each exercise has small hand-checkable cases, edge cases (zeros, a single outlier,
negative-only values, constant tensors, odd shapes) and a few larger random ones. Each case
has a readable name and, where it targets a usual mistake, a hint for that mistake.

Random inputs are nudged away from rounding ties (``x / scale`` never within 0.05 of a
``.5`` boundary), so every correct float32 or float64 implementation gives the same codes;
ties appear only in the hand-made cases with power-of-two scales, where all are exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["Case", "CASES", "away_from_half", "mse_margin"]


@dataclass
class Case:
    """One graded call: ``fn(*args.values(), **kwargs)``."""

    name: str
    args: dict[str, Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None


def _g(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(shape: tuple[int, ...], seed: int, std: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=_g(seed)) * std


def _t(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def _codes(shape: tuple[int, ...], seed: int, lo: int = -127, hi: int = 127) -> torch.Tensor:
    return torch.randint(lo, hi + 1, shape, generator=_g(seed)).to(torch.int8)


def away_from_half(
    x: torch.Tensor, scale: float | torch.Tensor, margin: float = 0.05
) -> torch.Tensor:
    """Move values whose ``x / scale`` lies within ``margin`` of ``k + 0.5`` to ``k + 0.3``."""
    s = torch.as_tensor(scale, dtype=torch.float64)
    r = x.to(torch.float64) / s
    frac = r - r.floor()
    near = (frac - 0.5).abs() < margin
    out = torch.where(near, (r.floor() + 0.3) * s, x.to(torch.float64)).to(torch.float32)
    r2 = out.to(torch.float64) / s
    f2 = r2 - r2.floor()
    assert bool(((f2 - 0.5).abs() >= margin / 2).all()), "could not move values away from ties"
    return out


def _sym(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """``x`` nudged away from ties for its own per-tensor symmetric scale."""
    amax = float(x.abs().max())
    if amax == 0:
        return x
    return away_from_half(x, torch.tensor(amax, dtype=torch.float32) / (2 ** (bits - 1) - 1))


def _outlier(n: int, seed: int, std: float, value: float, at: int) -> torch.Tensor:
    x = _randn((n,), seed, std)
    x[at] = value
    return x


HALF = "round half to even with torch.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> 0; floor, trunc, int() and x + 0.5 give other codes"
ROUND = "round to the *nearest* code with torch.round; floor rounds down and trunc / .to(int8) / int() cut towards zero"
CLAMP_SYM = "clamp to the narrow range [-(2^(b-1)-1), 2^(b-1)-1] = [-127, 127] for 8 bits, so -128 is never used; without a clamp, int8 wraps around (300 -> 44)"
ZEROS_SCALE = "an all-zero tensor gets scale 1.0, not 0 (which would divide by zero later)"
ABSMAX = (
    "use the largest *absolute* value, x.abs().max(): with only negative values x.max() is wrong"
)
NARROW_DIV = "divide by 2^(b-1) - 1 (7 for 4 bits, 127 for 8 bits), the largest code of the narrow symmetric range, not by 2^(b-1) or 2^b - 1"
RANGE_ZERO = "the range must contain 0: lo = min(x.min(), 0), hi = max(x.max(), 0); with only positive values lo is 0 and zero_point is 0"
ZP_SIGN = "zero_point = round(-lo / scale) is the code that represents 0.0: positive when lo < 0 (not round(lo / scale))"
CLAMP_ASYM = "clamp after adding the zero point, to [0, 2^b - 1] = [0, 255] for 8 bits; without a clamp uint8 wraps around"
UINT8_WRAP = "convert uint8 codes to float32 (or int32) *before* subtracting the zero point: in uint8, 0 - 128 wraps around to 128"
DB = "10 * log10(signal power / noise power): log10, not the natural log; sums of squares, not norms (an amplitude ratio would need 20 * log10)"
PCT_ABS = "take the percentile of |x| (x.abs()), not of x: the clip range is symmetric"
PCT_INTERP = "interpolate linearly between the two nearest values (torch.quantile / numpy.percentile default); nearest-rank or kthvalue picks one of them"
AXIS = "one scale per slice along `axis`: for axis=1 the scales belong to the columns, so reduce over every other dim (not always dim=1)"
ALPHA_SIDE = "s = act^alpha / w^(1-alpha): alpha is the exponent of the activation maxima; at alpha = 0.5 swapping the sides gives the same value, here it does not"
COLUMNS = "scale the Linear weight's *input columns*: weight (out, in) * s[None, :]; multiplying rows (s[:, None]) scales the outputs instead"
INT32 = "accumulate in int32: x_q.to(torch.int32) @ w_q.to(torch.int32).T; int8 @ int8 stays int8 (and int16 is too small): 512 * 127 * 127 wraps around"


# --------------------------------------------------------------------------- ch01, ch02


def _patchify() -> list[Case]:
    return [
        Case(
            "4x4 single-channel image of 0..15, patch=2",
            {"images": torch.arange(16.0).reshape(1, 1, 4, 4), "patch": 2},
            hint="patches go in row-major order over the patch grid: left to right, then top to bottom; each patch row by row",
        ),
        Case(
            "2 channels, patch=2: flatten each patch as (C, p, p)",
            {"images": torch.arange(32.0).reshape(1, 2, 4, 4), "patch": 2},
            hint="flatten each patch channel first, in (C, p, p) order as Conv2d's weight.reshape(D, -1) does; an image library's (p, p, C) order is different",
        ),
        Case(
            "non-square 4x6 RGB image, patch=2 (grid of 2 rows x 3 columns)",
            {"images": torch.arange(72.0).reshape(1, 3, 4, 6), "patch": 2},
            hint="the grid has H/p rows and W/p columns; keep H and W apart when reshaping",
        ),
        Case("patch=1: every pixel is a patch", {"images": _randn((2, 3, 3, 3), 11), "patch": 1}),
        Case("one patch covers the whole image", {"images": _randn((2, 3, 4, 4), 12), "patch": 4}),
        Case(
            "batch of 3 random 32x32 RGB images, patch=8",
            {"images": _randn((3, 3, 32, 32), 13), "patch": 8},
        ),
        Case(
            "pocket-model size: 1 x 3 x 64 x 64, patch=8",
            {"images": _randn((1, 3, 64, 64), 14), "patch": 8},
        ),
    ]


def _clip_config(
    text: tuple[int, int, int, int],
    vision: tuple[int, int, int, int, int, int],
    proj: int,
    vocab: int = 30,
    positions: int = 16,
    types: int = 2,
    channels: int = 3,
) -> dict:
    """A ChineseCLIPConfig as a dict, with the keys of ``model.config.to_dict()`` that set sizes.

    text = (hidden, layers, heads, mlp); vision = (hidden, layers, heads, mlp, image, patch).
    """
    (td, tl, th, tm), (vd, vl, vh, vm, size, patch) = text, vision
    return {
        "projection_dim": proj,
        "text_config": {
            "vocab_size": vocab,
            "hidden_size": td,
            "num_hidden_layers": tl,
            "num_attention_heads": th,
            "intermediate_size": tm,
            "max_position_embeddings": positions,
            "type_vocab_size": types,
        },
        "vision_config": {
            "hidden_size": vd,
            "num_hidden_layers": vl,
            "num_attention_heads": vh,
            "intermediate_size": vm,
            "image_size": size,
            "patch_size": patch,
            "num_channels": channels,
        },
    }


OFF_BY = (
    "compare the 'off by' number with the model's sizes: hidden (one embedding row, e.g. the "
    "[CLS] position), 2 * hidden (a LayerNorm), hidden * hidden + hidden (a Linear, e.g. BERT's "
    "pooler, which ChineseCLIPModel's text tower does not have), 1 (logit_scale)"
)


def _clip_parameter_count() -> list[Case]:
    tiny_t, tiny_v = (16, 1, 2, 24), (12, 1, 2, 20, 16, 4)
    return [
        Case(
            "tiny: text 16 wide, vision 12 wide, one layer each, 16 px image, patch 4",
            {"config": _clip_config(tiny_t, tiny_v, 8)},
            hint=OFF_BY,
        ),
        Case(
            "2 text layers and 3 vision layers",
            {"config": _clip_config((16, 2, 2, 24), (12, 3, 2, 20, 16, 4), 8)},
            hint="each tower has its own num_hidden_layers: multiply its per-layer count by it",
        ),
        Case(
            "32 px image, patch 8: 16 patches + [CLS]",
            {"config": _clip_config(tiny_t, (12, 1, 2, 20, 32, 8), 8)},
            hint="vision position embeddings have (image_size // patch_size) ** 2 + 1 rows "
            "(one per patch and one for [CLS]); the patch Conv2d has hidden * num_channels * "
            "patch * patch weights and no bias",
        ),
        Case(
            "grayscale images: num_channels = 1",
            {"config": _clip_config(tiny_t, tiny_v, 8, channels=1)},
            hint="the patch Conv2d sees num_channels input channels: hidden * num_channels * p * p",
        ),
        Case(
            "40-token vocabulary, 24 positions, one token type",
            {"config": _clip_config(tiny_t, tiny_v, 8, vocab=40, positions=24, types=1)},
            hint="text embeddings: vocab_size + max_position_embeddings + type_vocab_size rows "
            "of hidden_size, then one LayerNorm (2 * hidden)",
        ),
        Case(
            "projection_dim 32, wider than both towers",
            {"config": _clip_config(tiny_t, tiny_v, 32)},
            hint="two projections without bias: (text hidden + vision hidden) * projection_dim",
        ),
        Case(
            "pocket size: MiniLM-L6 text tower, small ViT at 64 px",
            {
                "config": _clip_config(
                    (384, 6, 12, 1536), (192, 6, 3, 768, 64, 8), 256, vocab=66, positions=32
                )
            },
        ),
        Case(
            "ViT-B/16 size: the real Chinese-CLIP architecture",
            {
                "config": _clip_config(
                    (768, 12, 12, 3072),
                    (768, 12, 12, 3072, 224, 16),
                    512,
                    vocab=21128,
                    positions=512,
                )
            },
        ),
    ]


def _clip_logits() -> list[Case]:
    norms = _t([0.01, 1.0, 100.0])[:, None]
    return [
        Case(
            "2 unit images x 2 unit texts, logit_scale = 0 (exp(0) = 1)",
            {
                "img_emb": _t([[1, 0], [0, 1]]),
                "txt_emb": _t([[1, 0], [0.6, 0.8]]),
                "logit_scale": torch.tensor(0.0),
            },
            hint="with logit_scale = 0 the logits are the plain cosine similarities (exp(0) = 1); rows are images, columns are texts",
        ),
        Case(
            "3 images x 5 texts, unnormalised, logit_scale = ln(100)",
            {
                "img_emb": _randn((3, 8), 21, 3.0),
                "txt_emb": _randn((5, 8), 22, 0.5),
                "logit_scale": torch.tensor(math.log(100.0)),
            },
            hint="normalise each row to unit length (dim=-1) before the product, and multiply by exp(logit_scale) = 100 here",
        ),
        Case(
            "logit_scale as a Python float: CLIP's initial ln(1/0.07)",
            {
                "img_emb": _randn((4, 16), 23),
                "txt_emb": _randn((4, 16), 24),
                "logit_scale": math.log(1 / 0.07),
            },
            hint="multiply by exp(logit_scale) = 1/0.07 = 14.29, not by logit_scale = 2.66 itself; it may be a Python float",
        ),
        Case(
            "image embeddings with norms 0.01, 1 and 100",
            {
                "img_emb": _randn((3, 6), 25) * norms,
                "txt_emb": _randn((2, 6), 26),
                "logit_scale": torch.tensor(1.0),
            },
            hint="normalise each embedding (each row, dim=-1), not the whole matrix",
        ),
        Case(
            "32 images x 24 texts, dim 256",
            {
                "img_emb": _randn((32, 256), 27),
                "txt_emb": _randn((24, 256), 28),
                "logit_scale": torch.tensor(math.log(100.0)),
            },
        ),
    ]


def _clip_loss() -> list[Case]:
    big = _randn((64, 64), 32, 5.0) + 10.0 * torch.eye(64)
    return [
        Case("2x2 logits [[2, 0], [0, 2]]", {"logits_per_image": _t([[2, 0], [0, 2]])}),
        Case(
            "3x3 logits whose rows and columns differ",
            {"logits_per_image": _t([[3, 1, 0], [0, 2, 2], [1, 0, 1]])},
            hint="use both directions: cross_entropy(logits, targets) over rows (image -> text) AND cross_entropy(logits.T, targets) over columns (text -> image), then average",
        ),
        Case("all-equal logits: loss = log N", {"logits_per_image": torch.zeros(4, 4)}),
        Case(
            "confident wrong pairs",
            {"logits_per_image": _t([[0, 10, 0], [0, 0, 0], [0, 0, 5]])},
            hint="the targets are the diagonal, torch.arange(N): image i matches text i",
        ),
        Case("8x8 random logits times 14.3", {"logits_per_image": _randn((8, 8), 31, 14.3)}),
        Case("64x64 logits with a strong diagonal", {"logits_per_image": big}),
    ]


# --------------------------------------------------------------------------- ch03


def _symmetric_scale() -> list[Case]:
    return [
        Case(
            "small vector [-1, 0.5, 2], bits=8",
            {"x": _t([-1.0, 0.5, 2.0])},
            {"bits": 8},
            hint=NARROW_DIV,
        ),
        Case(
            "negative-only values [-3, -1, -0.5]",
            {"x": _t([-3.0, -1.0, -0.5])},
            {"bits": 8},
            hint=ABSMAX,
        ),
        Case("all zeros -> scale 1.0", {"x": torch.zeros(2, 3)}, {"bits": 8}, hint=ZEROS_SCALE),
        Case("single outlier (25.0 among values ~0.1)", {"x": _outlier(1000, 41, 0.1, 25.0, 17)}),
        Case(
            "constant tensor, all -0.75, shape (4, 4)",
            {"x": torch.full((4, 4), -0.75)},
            {"bits": 8},
        ),
        Case("bits=4: divide by 7", {"x": _t([0.5, -3.5, 1.0])}, {"bits": 4}, hint=NARROW_DIV),
        Case("bits=2: divide by 1", {"x": _t([0.25, -0.5])}, {"bits": 2}, hint=NARROW_DIV),
        Case("odd shape (3, 5, 7), bits=8", {"x": _randn((3, 5, 7), 42)}, {"bits": 8}),
        Case("large random (64, 128), bits=8", {"x": _randn((64, 128), 43, 0.02)}, {"bits": 8}),
    ]


def _quantize_symmetric() -> list[Case]:
    outlier = _outlier(500, 51, 0.05, 8.0, 3)
    rnd = _randn((64, 128), 52, 0.5)
    small = _randn((4, 5), 53)
    b16 = _randn((64,), 54)
    return [
        Case(
            "hand-checkable: x = [-1, -0.5, 0, 0.5, 1, 2], scale = 0.25",
            {"x": _t([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0]), "scale": 0.25},
            {"bits": 8},
        ),
        Case(
            "ties: x / scale = +-0.5, 1.5, 2.5, 3.5, 4.5 (round half to even)",
            {"x": _t([0.25, 0.75, 1.25, 1.75, 2.25, -0.25, -0.75, -1.25]), "scale": 0.5},
            {"bits": 8},
            hint=HALF,
        ),
        Case(
            "between codes: x / scale = 0.7, -0.7, 1.3, -1.6, 2.9",
            {"x": _t([0.7, -0.7, 1.3, -1.6, 2.9]), "scale": 1.0},
            {"bits": 8},
            hint=ROUND,
        ),
        Case(
            "clamp: values beyond the range, bits=8",
            {"x": _t([-300.0, -128.0, -127.2, 127.2, 128.0, 300.0]), "scale": 1.0},
            {"bits": 8},
            hint=CLAMP_SYM,
        ),
        Case(
            "scale given as a 0-d tensor",
            {"x": away_from_half(small, 0.02), "scale": torch.tensor(0.02)},
            {"bits": 8},
        ),
        Case(
            "bits=4: codes in [-7, 7], still int8",
            {"x": _t([-1.0, -0.62, -0.1, 0.0, 0.33, 0.71, 0.9]), "scale": 0.1},
            {"bits": 4},
            hint="for 4 bits the narrow range is [-7, 7]: clamp to [-(2^(b-1)-1), 2^(b-1)-1] using bits",
        ),
        Case("all zeros", {"x": torch.zeros(2, 3), "scale": 1.0}, {"bits": 8}),
        Case(
            "single outlier (8.0 among values ~0.05), scale = 8/127",
            {"x": _sym(outlier), "scale": torch.tensor(8.0) / 127},
            {"bits": 8},
        ),
        Case(
            "negative-only values, default bits",
            {"x": away_from_half(-_randn((10,), 55).abs(), 0.01), "scale": 0.01},
        ),
        Case(
            "bits=16: int16 codes",
            {"x": _sym(b16, 16), "scale": b16.abs().max() / 32767},
            {"bits": 16},
            hint="16-bit codes do not fit in int8: use torch.int16 for 9..16 bits",
        ),
        Case(
            "large random (64, 128), bits=8",
            {"x": _sym(rnd), "scale": rnd.abs().max() / 127},
            {"bits": 8},
        ),
    ]


def _dequantize() -> list[Case]:
    return [
        Case(
            "int8 codes, scale 0.5",
            {"q": torch.tensor([-127, -1, 0, 1, 127], dtype=torch.int8), "scale": 0.5},
        ),
        Case(
            "uint8 codes below and above zero_point=128",
            {"q": torch.tensor([0, 100, 128, 200, 255], dtype=torch.uint8), "scale": 0.1},
            {"zero_point": 128},
            hint=UINT8_WRAP,
        ),
        Case(
            "zero_point as a 0-d integer tensor",
            {"q": torch.tensor([[0, 3, 7], [15, 2, 9]], dtype=torch.uint8), "scale": 0.25},
            {"zero_point": torch.tensor(3)},
            hint=UINT8_WRAP,
        ),
        Case("scale as a 0-d tensor", {"q": _codes((4, 5), 61), "scale": torch.tensor(0.0123)}),
        Case("all-zero codes", {"q": torch.zeros(3, 2, dtype=torch.int8), "scale": 1.0}),
        Case("4-bit codes in int8, scale 0.3", {"q": _codes((7,), 62, -7, 7), "scale": 0.3}),
        Case(
            "large (64, 128) int8 codes", {"q": _codes((64, 128), 63), "scale": torch.tensor(0.004)}
        ),
    ]


def _asymmetric_params() -> list[Case]:
    big = _randn((64, 128), 71) + 0.5
    big[5, 7] = 6.1  # make the extremes unambiguous
    big[9, 2] = -3.3
    return [
        Case("hand-checkable: x = [-1, 0, 3], bits=8", {"x": _t([-1.0, 0.0, 3.0])}, {"bits": 8}),
        Case(
            "positive-only values [0.5, 1, 2]: the range starts at 0",
            {"x": _t([0.5, 1.0, 2.0])},
            {"bits": 8},
            hint=RANGE_ZERO,
        ),
        Case(
            "negative-only values [-4, -2, -1]: zero_point = 255",
            {"x": _t([-4.0, -2.0, -1.0])},
            {"bits": 8},
            hint=RANGE_ZERO,
        ),
        Case(
            "all zeros -> (1.0, 0)",
            {"x": torch.zeros(5)},
            {"bits": 8},
            hint="an all-zero tensor gets (scale, zero_point) = (1.0, 0)",
        ),
        Case(
            "constant tensor, all 2.5", {"x": torch.full((3, 3), 2.5)}, {"bits": 8}, hint=RANGE_ZERO
        ),
        Case(
            "mostly negative: x in [-3, 1]",
            {"x": _t([-3.0, -1.2, 0.4, 1.0])},
            {"bits": 8},
            hint=ZP_SIGN,
        ),
        Case(
            "bits=4: 15 steps",
            {"x": _t([-1.0, 0.3, 2.0])},
            {"bits": 4},
            hint="for 4 bits the unsigned range is [0, 15]: divide by 2^b - 1 = 15",
        ),
        Case(
            "single outlier (30.0 among values ~0.1)",
            {"x": _outlier(1000, 72, 0.1, 30.0, 500)},
            {"bits": 8},
        ),
        Case("large random (64, 128), default bits", {"x": big}),
    ]


def _quantize_asymmetric() -> list[Case]:
    rnd = _randn((64, 128), 81) + 1.0
    s_big = float((rnd.max() - rnd.min()) / 255)
    zp_big = round(-float(rnd.min()) / s_big)
    odd = _randn((3, 5, 7), 82)
    return [
        Case(
            "hand-checkable: scale 0.5, zero_point 10",
            {"x": _t([-5.0, -1.0, 0.0, 1.0, 5.0, 20.0]), "scale": 0.5, "zero_point": 10},
            {"bits": 8},
        ),
        Case(
            "ties: x / scale = 0.5, 1.5, 2.5, -0.5 with zero_point 3",
            {"x": _t([0.25, 0.75, 1.25, -0.25]), "scale": 0.5, "zero_point": 3},
            {"bits": 8},
            hint=HALF,
        ),
        Case(
            "between codes: floor and trunc differ from round",
            {"x": _t([0.7, -0.7, 1.3, -1.6, 2.9]), "scale": 1.0, "zero_point": 5},
            {"bits": 8},
            hint=ROUND,
        ),
        Case(
            "clamp below 0 and above 255",
            {
                "x": _t([-200.0, -129.0, -128.0, 0.0, 127.0, 128.0, 300.0]),
                "scale": 1.0,
                "zero_point": 128,
            },
            {"bits": 8},
            hint=CLAMP_ASYM,
        ),
        Case(
            "zero_point as a 0-d tensor",
            {
                "x": away_from_half(_randn((6,), 83), 0.05),
                "scale": 0.05,
                "zero_point": torch.tensor(100),
            },
            {"bits": 8},
        ),
        Case(
            "bits=4: codes in [0, 15], uint8",
            {"x": _t([-1.0, -0.4, 0.0, 0.6, 1.15, 3.0]), "scale": 0.2, "zero_point": 5},
            {"bits": 4},
            hint="for 4 bits clamp to [0, 15]: use 2**bits - 1",
        ),
        Case(
            "all zeros: every code equals the zero point",
            {"x": torch.zeros(2, 4), "scale": 1.0, "zero_point": 7},
            {"bits": 8},
        ),
        Case(
            "scale as a 0-d tensor, odd shape (3, 5, 7)",
            {"x": away_from_half(odd, 0.02), "scale": torch.tensor(0.02), "zero_point": 128},
            {"bits": 8},
        ),
        Case(
            "large random (64, 128), default bits",
            {"x": away_from_half(rnd, s_big), "scale": s_big, "zero_point": zp_big},
        ),
    ]


def _fake8(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    qmax = 2 ** (bits - 1) - 1
    s = x.abs().max() / qmax
    return torch.round(x / s).clamp(-qmax, qmax) * s


def _sqnr_db() -> list[Case]:
    g = _randn((1000,), 91)
    big = _randn((64, 128), 92)
    return [
        Case(
            "hand-checkable: x = [1, 2, 3], x_hat = [1, 2, 2] -> 10*log10(14)",
            {"x": _t([1.0, 2.0, 3.0]), "x_hat": _t([1.0, 2.0, 2.0])},
            hint=DB,
        ),
        Case("x_hat = 0.9 * x: about 20 dB", {"x": g, "x_hat": 0.9 * g}, hint=DB),
        Case("8-bit quantized Gaussian", {"x": g, "x_hat": _fake8(g)}, hint=DB),
        Case(
            "constant tensor 2.0 vs 1.9",
            {"x": torch.full((10,), 2.0), "x_hat": torch.full((10,), 1.9)},
        ),
        Case("negative-only values", {"x": -g.abs() - 0.1, "x_hat": -g.abs() - 0.12}),
        Case(
            "perfect reconstruction: no noise -> inf",
            {"x": _t([1.0, -2.0]), "x_hat": _t([1.0, -2.0])},
            hint="with zero noise the ratio is infinite: return inf (torch gives inf for x / 0.0)",
        ),
        Case("large (64, 128), 4-bit quantized", {"x": big, "x_hat": _fake8(big, 4)}, hint=DB),
    ]


# --------------------------------------------------------------------------- ch04

LOWER_MEDIAN = (
    "the median is torch.median: for an even number of channels the *lower* of the two "
    "middle values (here 2, not 2.5 as numpy.median or torch.quantile(m, 0.5) would give)"
)
CHANNEL_ABS = "the channel maximum is of |x|: a channel whose largest magnitude is negative still counts (x.abs() before amax)"
LAST_DIM = "channels are the *last* dimension: reduce over every other dim (x.abs().reshape(-1, C).amax(dim=0)), not over dim 0 only or over the channels"
COUNT_CODES = "quantize first (round half to even, clamp to the narrow range), then count the distinct codes of each channel (column), e.g. torch.unique(q[..., c]).numel()"


def _channel_outlier(
    shape: tuple[int, ...], seed: int, channel: int, factor: float
) -> torch.Tensor:
    x = _randn(shape, seed)
    x[..., channel] *= factor
    return x


def _outlier_ratio() -> list[Case]:
    three_d = torch.full((2, 3, 4), 0.1)
    three_d[0, 0, 0] = 8.0  # channel maxima [8, 4, 2, 0.1], each in another (batch, token)
    three_d[1, 2, 1] = -4.0
    three_d[0, 1, 2] = 2.0
    return [
        Case(
            "hand-checkable: per-channel maxima [1, 2, 3, 40] (even count: lower median 2)",
            {"x": _t([1.0, 2.0, 3.0, 40.0])},
            hint=LOWER_MEDIAN,
        ),
        Case(
            "odd count: maxima [0.5, 1, 2, 8, 1.5] -> 8 / 1.5",
            {"x": _t([0.5, 1.0, 2.0, 8.0, 1.5])},
        ),
        Case(
            "activations (4 tokens, 3 channels) with negative outliers",
            {"x": _t([[0.5, -6.0, 1.0], [-1.0, 0.2, 0.4], [0.3, 0.1, -2.0], [0.2, 0.3, 0.5]])},
            hint=CHANNEL_ABS,
        ),
        Case(
            "(batch 2, tokens 3, channels 4): reduce over batch and tokens",
            {"x": three_d},
            hint=LAST_DIM,
        ),
        Case(
            "channels are the last dim: (6 tokens, 5 channels), one token is large",
            {"x": torch.cat([_randn((5, 5), 61, 0.1).abs() + 0.5, torch.full((1, 5), 3.0)])},
            hint=LAST_DIM,
        ),
        Case("all zeros -> 1.0", {"x": torch.zeros(3, 4)}),
        Case(
            "median channel is zero, max is not -> inf",
            {"x": _t([[0.0, 0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, -1.0, 0.5]])},
            hint="a zero median with a nonzero maximum is an infinite ratio: return math.inf (float('inf'))",
        ),
        Case("constant tensor -> 1.0", {"x": torch.full((4, 6), -0.75)}),
        Case("a single channel -> 1.0", {"x": _randn((10, 1), 62)}),
        Case(
            "MiniLM-like: (64 tokens, 384 channels), channel 99 x 20",
            {"x": _channel_outlier((64, 384), 63, 99, 20.0)},
        ),
        Case(
            "large (4, 32, 256), no outlier channel",
            {"x": _randn((4, 32, 256), 64)},
        ),
    ]


def _levels_used() -> list[Case]:
    big = _channel_outlier((256, 64), 65, 7, 30.0)
    big_s = big.abs().max() / 127
    per_ch = _channel_outlier((128, 16), 66, 3, 25.0)
    per_ch_s = per_ch.abs().amax(dim=0) / 127
    three = _randn((2, 16, 8), 67)
    three_s = three.abs().max() / 100  # some values clamp
    return [
        Case(
            "hand-checkable: x = [[0, 1], [0.1, -1], [0.2, 0.5]], scale 0.1 -> [3, 3]",
            {"x": _t([[0.0, 1.0], [0.1, -1.0], [0.2, 0.5]]), "scale": 0.1},
            {"bits": 8},
            hint=COUNT_CODES,
        ),
        Case(
            "channels are the last dim: (4 tokens, 2 channels) -> 2 counts",
            {"x": _t([[0.3, 0.0], [0.3, 0.1], [0.3, 0.2], [0.3, 0.3]]), "scale": 0.1},
            {"bits": 8},
            hint="count per channel, i.e. per column of the last dim, over all tokens: the result has shape (C,)",
        ),
        Case(
            "ties: x / scale = 0.5, 1.5, 2.5, 3.5 round half to even -> codes 0, 2, 2, 4",
            {"x": _t([[0.25], [0.75], [1.25], [1.75]]), "scale": 0.5},
            {"bits": 8},
            hint=HALF,
        ),
        Case(
            "clamp: x / scale = -300, -127.2, 127, 300 -> codes -127, -127, 127, 127",
            {"x": _t([[-300.0], [-127.2], [127.0], [300.0]]), "scale": 1.0},
            {"bits": 8},
            hint=CLAMP_SYM,
        ),
        Case(
            "bits=4: codes clamp to [-7, 7], at most 15 levels",
            {"x": _t([[float(v)] for v in range(-10, 11)]), "scale": 1.0},
            {"bits": 4},
            hint="for 4 bits the narrow range is [-7, 7] (15 levels): clamp to [-(2^(b-1)-1), 2^(b-1)-1] using bits",
        ),
        Case(
            "(batch 2, tokens 16, channels 8), scale as a 0-d tensor",
            {"x": away_from_half(three, three_s), "scale": three_s},
            {"bits": 8},
            hint="count each channel's codes over every leading dim (batch and tokens): reshape the codes to (-1, C) first",
        ),
        Case(
            "one token (1-D x): each channel uses exactly 1 level",
            {"x": _t([0.5, -1.0, 2.0]), "scale": 0.1},
            {"bits": 8},
            hint="a 1-D x is one row of C channels: each channel holds one value, so one code",
        ),
        Case("all zeros: one level (code 0) per channel", {"x": torch.zeros(5, 3), "scale": 1.0}),
        Case(
            "per-channel scales (C,): every channel spreads over its own range",
            {"x": away_from_half(per_ch, per_ch_s), "scale": per_ch_s},
            {"bits": 8},
            hint="scale may be a (C,) tensor of per-channel scales: x / scale broadcasts it over the last dim",
        ),
        Case(
            "one outlier channel (x30) sets the per-tensor scale: (256 tokens, 64 channels)",
            {"x": away_from_half(big, big_s), "scale": big_s},
            {"bits": 8},
        ),
    ]


# --------------------------------------------------------------------------- ch05


def _percentile_absmax() -> list[Case]:
    return [
        Case(
            "hand-checkable: |[-4, 1, 2, 3]|, pct=50 -> 2.5",
            {"x": _t([-4.0, 1.0, 2.0, 3.0]), "pct": 50.0},
            hint=PCT_INTERP,
        ),
        Case("pct=100 is max |x|", {"x": _t([-5.0, 1.0, 2.0]), "pct": 100.0}, hint=PCT_ABS),
        Case(
            "negative-only values, pct=90",
            {"x": -_randn((50,), 101).abs(), "pct": 90.0},
            hint=PCT_ABS,
        ),
        Case("pct=0 is min |x|", {"x": _t([-0.5, 2.0, -3.0, 0.7]), "pct": 0.0}),
        Case(
            "interpolation between ranks: 0..10, pct=95 -> 9.5",
            {"x": torch.arange(11.0), "pct": 95.0},
            hint=PCT_INTERP,
        ),
        Case(
            "single outlier (50.0 among ~N(0,1)), pct=99",
            {"x": _outlier(1000, 102, 1.0, 50.0, 10), "pct": 99.0},
            hint=PCT_ABS,
        ),
        Case("2-D tensor, pct=99.9", {"x": _randn((40, 50), 103), "pct": 99.9}),
        Case("all zeros", {"x": torch.zeros(8), "pct": 99.0}),
        Case("large random (64, 128), pct=99.99", {"x": _randn((64, 128), 104), "pct": 99.99}),
    ]


def _laplace(n: int, seed: int, b: float = 1.0) -> torch.Tensor:
    u = torch.rand((n,), generator=_g(seed)) - 0.5
    return -b * torch.sign(u) * torch.log1p(-2 * u.abs())


def _mse_best_clip() -> list[Case]:
    uni = torch.rand((2000,), generator=_g(111)) * 2 - 1
    return [
        Case(
            "constant tensor: the best clip is the maximum",
            {"x": torch.full((10,), 2.0)},
            {"bits": 8},
        ),
        Case(
            "single outlier (40.0 among ~N(0,1)), bits=4",
            {"x": _outlier(2000, 116, 1.0, 40.0, 7)},
            {"bits": 4},
            hint="quantize with scale c / (2^(b-1)-1) and clamp the codes to the narrow range (that clamp *is* the clipping); the MSE is over all elements",
        ),
        Case("Gaussian, bits=8", {"x": _randn((4000,), 113)}, {"bits": 8}),
        Case("Laplace (heavy tails), bits=4", {"x": _laplace(4000, 118)}, {"bits": 4}),
        Case("uniform values, bits=8: no clipping wins", {"x": uni}, {"bits": 8}),
        Case(
            "coarse grid: n_grid=10, bits=3",
            {"x": _randn((500,), 115)},
            {"bits": 3, "n_grid": 10},
            hint="the candidates are c_k = absmax * k / n_grid for k = 1..n_grid (k starts at 1 and includes n_grid)",
        ),
        Case("negative-only values, bits=4", {"x": -_laplace(1000, 116).abs()}, {"bits": 4}),
        Case(
            "all zeros -> 0.0",
            {"x": torch.zeros(6)},
            {"bits": 8},
            hint="an all-zero x has absmax 0: every candidate is 0, return 0.0",
        ),
    ]


def _abs_hist(x: torch.Tensor, bins: int) -> dict[str, torch.Tensor]:
    a = x.abs().to(torch.float32)
    top = float(a.max())
    return {
        "hist": torch.histc(a, bins=bins, min=0.0, max=top),
        "bin_edges": torch.linspace(0.0, top, bins + 1),
    }


def _kl_threshold() -> list[Case]:
    lap = _laplace(20000, 121)
    lap_out = lap.clone()
    lap_out[3] = 60.0
    sparse = torch.zeros(256)
    idx = torch.randint(0, 256, (60,), generator=_g(122))
    sparse[idx] = torch.rand((60,), generator=_g(123)) * 100 + 1
    sparse[:8] += 500.0
    return [
        Case(
            "small: 6 bins [10, 6, 3, 1, 0, 1], bits=2 (2 levels)",
            {"hist": _t([10, 6, 3, 1, 0, 1]), "bin_edges": torch.linspace(0.0, 6.0, 7)},
            {"bits": 2},
            hint="for i = 2^(b-1) .. len(hist): fold the tail sum(hist[i:]) into bin i-1 of P, merge hist[:i] into 2^(b-1) chunks for Q, spread each chunk over its bins where P != 0",
        ),
        Case(
            "12 bins, bits=3 (4 levels): uneven chunks",
            {
                "hist": _t([40, 30, 22, 15, 9, 6, 4, 2, 1, 1, 0, 1]),
                "bin_edges": torch.linspace(0.0, 1.2, 13),
            },
            {"bits": 3},
            hint="split hist[:i] into 2^(b-1) chunks with numpy.array_split sizes: the first i % n chunks are one bin longer",
        ),
        Case("Gaussian |x|, 512 bins, bits=8", _abs_hist(_randn((20000,), 124), 512), {"bits": 8}),
        Case("Laplace |x| with a far outlier, 1024 bins", _abs_hist(lap_out, 1024), {"bits": 8}),
        Case(
            "sparse histogram with many empty bins, bits=6",
            {"hist": sparse, "bin_edges": torch.linspace(0.0, 2.56, 257)},
            {"bits": 6},
            hint="smooth the counts before normalising: give eps = 1e-4 to every zero bin of P and Q and take the same total evenly from their nonzero bins; then normalise",
        ),
        Case(
            "uniform |x|, 256 bins, bits=8",
            _abs_hist(torch.rand((20000,), generator=_g(125)), 256),
            {"bits": 8},
        ),
        Case(
            "exactly 2^(b-1) bins: a single candidate",
            {"hist": _t([5, 3, 2, 1, 1, 0, 1, 1]), "bin_edges": torch.linspace(0.0, 0.8, 9)},
            {"bits": 4},
            hint="i runs from 2^(b-1) to len(hist) inclusive; with len(hist) = 2^(b-1) the only threshold is bin_edges[-1]",
        ),
        Case("Laplace |x|, 2048 bins (TensorRT's default), default bits", _abs_hist(lap, 2048)),
    ]


# --------------------------------------------------------------------------- ch06, ch07, ch08


def _quantize_per_channel() -> list[Case]:
    def nudged(w: torch.Tensor, axis: int, bits: int = 8) -> torch.Tensor:
        qmax = 2 ** (bits - 1) - 1
        moved = w.movedim(axis, 0)
        amax = moved.reshape(moved.shape[0], -1).abs().amax(dim=1)
        s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
        shape = [1] * w.dim()
        shape[axis] = -1
        return away_from_half(w, s.reshape(shape))

    zero_ch = _randn((4, 6), 131)
    zero_ch[2] = 0.0
    out_ch = _randn((6, 16), 132, 0.1)
    out_ch[4] *= 60.0
    return [
        Case(
            "hand-checkable 2x3 weight, axis=0",
            {"w": _t([[1.0, -2.54, 0.5], [0.1, 0.25, -0.4]])},
            {"bits": 8, "axis": 0},
        ),
        Case(
            "axis=1 on a 3x4 weight: one scale per column",
            {"w": nudged(_randn((3, 4), 133), 1)},
            {"bits": 8, "axis": 1},
            hint=AXIS,
        ),
        Case(
            "a zero channel gets scale 1.0",
            {"w": nudged(zero_ch, 0)},
            {"bits": 8, "axis": 0},
            hint="an all-zero channel gets scale 1.0 (and codes 0), not 0/0",
        ),
        Case(
            "one outlier channel (60x the others)", {"w": nudged(out_ch, 0)}, {"bits": 8, "axis": 0}
        ),
        Case(
            "conv weight (8, 3, 3, 3), axis=0",
            {"w": nudged(_randn((8, 3, 3, 3), 134), 0)},
            {"bits": 8, "axis": 0},
            hint="reduce |w| over every dim except axis (there may be more than two)",
        ),
        Case(
            "bits=4: codes in [-7, 7], scales absmax / 7",
            {"w": nudged(_randn((5, 7), 135), 0, 4)},
            {"bits": 4, "axis": 0},
            hint="for 4 bits the scale is absmax / 7 and the codes lie in [-7, 7]",
        ),
        Case(
            "axis=-1 (the last dim)",
            {"w": nudged(_randn((3, 5), 136), 1)},
            {"bits": 8, "axis": -1},
            hint=AXIS,
        ),
        Case("default bits and axis, odd shape (7, 5)", {"w": nudged(_randn((7, 5), 137), 0)}),
        Case(
            "large Linear weight (256, 128), axis=0",
            {"w": nudged(_randn((256, 128), 138, 0.05), 0)},
            {"bits": 8, "axis": 0},
        ),
    ]


def _quantize_per_token() -> list[Case]:
    def nudged(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
        qmax = 2 ** (bits - 1) - 1
        amax = x.abs().amax(dim=-1, keepdim=True)
        return away_from_half(x, torch.where(amax == 0, torch.ones_like(amax), amax / qmax))

    padded = _randn((2, 4, 6), 161)
    padded[1, 3] = 0.0  # a padding token
    outlier = _randn((5, 12), 162, 0.2)
    outlier[:, 7] *= 40.0  # one outlier channel, present in every token
    return [
        Case(
            "hand-checkable 2 tokens x 3 channels",
            {"x": _t([[1.0, -2.54, 0.5], [0.1, 0.25, -0.4]])},
            {"bits": 8},
        ),
        Case(
            "activations (B, T, C) = (2, 5, 8): one scale per token, shape (2, 5, 1)",
            {"x": nudged(_randn((2, 5, 8), 163))},
            {"bits": 8},
            hint="reduce over the last dim only, keeping it: amax(dim=-1, keepdim=True)",
        ),
        Case(
            "an all-zero token (padding) gets scale 1.0",
            {"x": nudged(padded)},
            {"bits": 8},
            hint="an all-zero row gets scale 1.0 (and codes 0), not 0/0",
        ),
        Case(
            "an outlier channel in every token (5 tokens x 12 channels)",
            {"x": nudged(outlier)},
            {"bits": 8},
        ),
        Case(
            "bits=4: codes in [-7, 7], scales row max / 7",
            {"x": nudged(_randn((3, 9), 164), 4)},
            {"bits": 4},
            hint="for 4 bits the scale is the row max / 7 and the codes lie in [-7, 7]",
        ),
        Case(
            "a single token: 1-D x of shape (7,), scales of shape (1,)",
            {"x": nudged(_randn((7,), 165))},
            {"bits": 8},
            hint="a 1-D x is one token: its scales have shape (1,)",
        ),
        Case("default bits, odd shape (3, 7)", {"x": nudged(_randn((3, 7), 166))}),
        Case(
            "large activations (2, 32, 384)",
            {"x": nudged(_randn((2, 32, 384), 167, 0.5))},
            {"bits": 8},
        ),
    ]


def _smooth_scales() -> list[Case]:
    act = _randn((384,), 141).abs() + 0.05
    act[17] = 60.0
    w = _randn((384,), 142, 0.1).abs() + 0.01
    return [
        Case(
            "hand-checkable: act = [4, 1, 9], w = [1, 4, 1], alpha = 0.5 -> [2, 0.5, 3]",
            {"act_absmax": _t([4.0, 1.0, 9.0]), "weight_absmax": _t([1.0, 4.0, 1.0])},
            {"alpha": 0.5},
        ),
        Case(
            "alpha = 0.75 (more difficulty moved to the weights)",
            {"act_absmax": _t([8.0, 1.0, 0.5, 30.0]), "weight_absmax": _t([0.2, 0.5, 1.0, 0.1])},
            {"alpha": 0.75},
            hint=ALPHA_SIDE,
        ),
        Case(
            "alpha = 1: s = act_absmax",
            {"act_absmax": _t([2.0, 3.0]), "weight_absmax": _t([0.5, 4.0])},
            {"alpha": 1.0},
            hint=ALPHA_SIDE,
        ),
        Case(
            "alpha = 0: s = 1 / weight_absmax",
            {"act_absmax": _t([2.0, 3.0]), "weight_absmax": _t([0.5, 4.0])},
            {"alpha": 0.0},
            hint=ALPHA_SIDE,
        ),
        Case(
            "a channel with zero activations: clamp at 1e-5",
            {"act_absmax": _t([0.0, 2.0, 5.0]), "weight_absmax": _t([0.3, 0.2, 0.1])},
            {"alpha": 0.5},
            hint="clamp the result from below: s.clamp(min=1e-5)",
        ),
        Case(
            "default alpha, 384 channels with an outlier channel",
            {"act_absmax": act, "weight_absmax": w},
        ),
        Case(
            "384 channels, alpha = 0.8",
            {"act_absmax": act, "weight_absmax": w},
            {"alpha": 0.8},
            hint=ALPHA_SIDE,
        ),
    ]


def _ln(c: int, seed: int) -> nn.LayerNorm:
    ln = nn.LayerNorm(c)
    with torch.no_grad():
        ln.weight.copy_(1.0 + _randn((c,), seed, 0.1))
        ln.bias.copy_(_randn((c,), seed + 1, 0.1))
    return ln


def _linear(c: int, out: int, seed: int) -> nn.Linear:
    lin = nn.Linear(c, out)
    with torch.no_grad():
        lin.weight.copy_(_randn((out, c), seed, 0.2))
        lin.bias.copy_(_randn((out,), seed + 1, 0.1))
    return lin


def _smooth_layernorm_linears() -> list[Case]:
    s_out = torch.rand((16,), generator=_g(151)) + 0.5
    s_out[3] = 30.0
    return [
        Case(
            "hand-checkable: LayerNorm(3) and one Linear(3 -> 2), s = [2, 0.5, 4]",
            {"ln": _ln(3, 152), "linears": [_linear(3, 2, 154)], "s": _t([2.0, 0.5, 4.0])},
            hint=COLUMNS,
        ),
        Case(
            "three Linears (q, k, v) reading one LayerNorm",
            {
                "ln": _ln(8, 156),
                "linears": [_linear(8, 8, 158), _linear(8, 8, 160), _linear(8, 8, 162)],
                "s": torch.rand((8,), generator=_g(164)) + 0.5,
            },
            hint="scale every Linear that reads the LayerNorm's output, not only the first",
        ),
        Case(
            "Linear with out_features != in_features (4 -> 6)",
            {"ln": _ln(4, 166), "linears": [_linear(4, 6, 168)], "s": _t([1.5, 0.25, 3.0, 0.8])},
            hint=COLUMNS,
        ),
        Case(
            "the LayerNorm bias is divided too",
            {
                "ln": _ln(5, 170),
                "linears": [_linear(5, 3, 172)],
                "s": _t([2.0, 2.0, 0.5, 0.5, 4.0]),
            },
            hint="divide both ln.weight and ln.bias by s: LN(x) = gamma * x_hat + beta, and both terms are scaled",
        ),
        Case(
            "an outlier channel: s up to 30, two Linears of different widths",
            {
                "ln": _ln(16, 174),
                "linears": [_linear(16, 32, 176), _linear(16, 4, 178)],
                "s": s_out,
            },
        ),
        Case(
            "pocket size: hidden 64, four Linears (q, k, v, fc1)",
            {
                "ln": _ln(64, 180),
                "linears": [_linear(64, 64, 182 + 2 * i) for i in range(3)]
                + [_linear(64, 128, 190)],
                "s": torch.rand((64,), generator=_g(192)) * 3 + 0.2,
            },
        ),
    ]


def _int8_linear() -> list[Case]:
    w_ovf = torch.stack(
        [torch.full((512,), 127), torch.full((512,), -127), (torch.arange(512) % 2 * 254 - 127)]
    ).to(torch.int8)
    return [
        Case(
            "hand-checkable: 2x3 codes, scales 1.0, no bias",
            {
                "x_q": torch.tensor([[1, 2, 3], [-1, 0, 1]], dtype=torch.int8),
                "x_scale": 1.0,
                "w_q": torch.tensor([[1, 0, -1], [2, 2, 2]], dtype=torch.int8),
                "w_scale": 1.0,
                "bias": None,
            },
            hint="y = (x_q @ w_q.T) * x_scale * w_scale (+ bias): w_q is (N, K), so transpose it",
        ),
        Case(
            "K = 512 with codes at +-127: int32 accumulation needed",
            {
                "x_q": torch.full((2, 512), 127, dtype=torch.int8),
                "x_scale": 0.001,
                "w_q": w_ovf,
                "w_scale": 0.001,
                "bias": None,
            },
            hint=INT32,
        ),
        Case(
            "per-channel weight scales (N,) and a bias",
            {
                "x_q": _codes((4, 16), 201, -20, 20),
                "x_scale": 0.02,
                "w_q": _codes((6, 16), 202, -20, 20),
                "w_scale": torch.rand((6,), generator=_g(203)) * 0.01 + 0.001,
                "bias": _randn((6,), 204),
            },
            hint="w_scale[j] scales output column j: multiply acc (M, N) by w_scale (N,), broadcasting over rows",
        ),
        Case(
            "x_scale and w_scale as 0-d tensors, no bias",
            {
                "x_q": _codes((3, 8), 205),
                "x_scale": torch.tensor(0.05),
                "w_q": _codes((5, 8), 206),
                "w_scale": torch.tensor(0.002),
                "bias": None,
            },
        ),
        Case(
            "3-D input (batch 2, tokens 5, K 32)",
            {
                "x_q": _codes((2, 5, 32), 207),
                "x_scale": 0.01,
                "w_q": _codes((7, 32), 208),
                "w_scale": torch.rand((7,), generator=_g(209)) * 0.01 + 0.001,
                "bias": _randn((7,), 210),
            },
            hint="x_q may have leading batch dims (..., K): use @ (matmul), which broadcasts them",
        ),
        Case(
            "a realistic layer: 32 tokens, K = 384, N = 96",
            {
                "x_q": _codes((32, 384), 211),
                "x_scale": torch.tensor(0.03),
                "w_q": _codes((96, 384), 212),
                "w_scale": torch.rand((96,), generator=_g(213)) * 0.002 + 0.0005,
                "bias": _randn((96,), 214, 0.1),
            },
            hint=INT32,
        ),
    ]


CASES: dict[str, Callable[[], list[Case]]] = {
    "ch01.patchify": _patchify,
    "ch01.clip_parameter_count": _clip_parameter_count,
    "ch02.clip_logits": _clip_logits,
    "ch02.clip_loss": _clip_loss,
    "ch03.symmetric_scale": _symmetric_scale,
    "ch03.quantize_symmetric": _quantize_symmetric,
    "ch03.dequantize": _dequantize,
    "ch03.asymmetric_params": _asymmetric_params,
    "ch03.quantize_asymmetric": _quantize_asymmetric,
    "ch03.sqnr_db": _sqnr_db,
    "ch04.outlier_ratio": _outlier_ratio,
    "ch04.levels_used": _levels_used,
    "ch05.percentile_absmax": _percentile_absmax,
    "ch05.mse_best_clip": _mse_best_clip,
    "ch05.kl_threshold": _kl_threshold,
    "ch06.quantize_per_channel": _quantize_per_channel,
    "ch06.quantize_per_token": _quantize_per_token,
    "ch07.smooth_scales": _smooth_scales,
    "ch07.smooth_layernorm_linears": _smooth_layernorm_linears,
    "ch08.int8_linear": _int8_linear,
}


def mse_margin(x: torch.Tensor, bits: int = 8, n_grid: int = 100) -> float:
    """Relative gap between the best and the second-best clip's MSE (float64).

    The build requires a clear winner, so any correct float32 implementation picks the
    same clip; returns inf when one candidate is the only one with the minimal error.
    """
    qmax = 2 ** (bits - 1) - 1
    a = x.to(torch.float64).reshape(-1, 1)
    amax = float(a.abs().max())
    if amax == 0:
        return math.inf
    c = amax * torch.arange(1, n_grid + 1, dtype=torch.float64) / n_grid
    s = c / qmax
    mse = ((a - torch.round(a / s).clamp(-qmax, qmax) * s) ** 2).mean(dim=0)
    best, second = torch.sort(mse).values[:2].tolist()
    if second == 0:
        return 0.0
    return (second - best) / second
