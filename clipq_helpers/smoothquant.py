"""SmoothQuant (Xiao et al., 2023): move activation outliers into the weights (chapter 7).

For a LayerNorm feeding Linear layers, ``y = W (LN(x))``. Dividing LN's output channel ``j``
by ``s_j`` and multiplying column ``j`` of every consuming ``W`` by ``s_j`` leaves ``y``
unchanged in exact arithmetic, but shrinks the activation outlier channels (large
``act_absmax``) and grows the matching weight columns, balancing their quantization
difficulty with the migration strength ``alpha``.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from ._checks import check_float_tensor, check_fraction, check_same_shape

__all__ = ["smooth_scales", "weight_column_absmax", "smooth_layernorm_linears"]

_MIN = 1e-5


def smooth_scales(
    act_absmax: torch.Tensor, weight_absmax: torch.Tensor, alpha: float = 0.5
) -> torch.Tensor:
    """Per-channel smoothing factors ``s = act^alpha / w^(1 - alpha)``, clamped at ``1e-5``.

    As in the SmoothQuant reference code, ``weight_absmax`` is first clamped to ``>= 1e-5``
    (so a zero weight column cannot divide by zero: no 0/0 or inf), then the result is
    clamped to ``>= 1e-5`` (a channel whose activations are all zero gets ``s = 1e-5``).

    Args:
        act_absmax: float ``(C,)``, per-input-channel max |activation| from calibration (>= 0).
        weight_absmax: float ``(C,)``, per-input-column max |weight| over all consuming
            Linears (>= 0), see :func:`weight_column_absmax`.
        alpha: migration strength in ``[0, 1]`` (0: no activation smoothing, 1: all of it).
    Returns:
        float32 ``(C,)``, all >= 1e-5.
    """
    act = check_float_tensor(act_absmax, "act_absmax")
    w = check_float_tensor(weight_absmax, "weight_absmax")
    check_same_shape(act, w, "act_absmax", "weight_absmax")
    alpha = check_fraction(alpha, "alpha", 0.0, 1.0)
    if bool((act < 0).any()) or bool((w < 0).any()):
        raise ValueError("act_absmax and weight_absmax are absolute maxima and must be >= 0")
    act = act.detach().to(torch.float32)
    w = w.detach().to(torch.float32).clamp(min=_MIN)
    return (act.pow(alpha) / w.pow(1.0 - alpha)).clamp(min=_MIN)


def _as_linear_list(linears: nn.Linear | Iterable[nn.Linear]) -> list[nn.Linear]:
    items = [linears] if isinstance(linears, nn.Module) else list(linears)
    if not items:
        raise ValueError("linears is empty; expected at least one nn.Linear")
    for i, lin in enumerate(items):
        weight = getattr(lin, "weight", None)
        if not isinstance(lin, nn.Module) or not isinstance(weight, torch.Tensor):
            raise TypeError(
                f"linears[{i}] must be an nn.Linear (a module with a 2-D .weight), "
                f"got {type(lin).__name__}"
            )
        if weight.dim() != 2:
            raise ValueError(
                f"linears[{i}].weight must be 2-D (out, in), got {tuple(weight.shape)}"
            )
    return items


def weight_column_absmax(linears: nn.Linear | Iterable[nn.Linear]) -> torch.Tensor:
    """Max |weight| per input column over several Linears sharing one input: float32 ``(in,)``."""
    items = _as_linear_list(linears)
    cols = {lin.weight.shape[1] for lin in items}
    if len(cols) != 1:
        shapes = [tuple(lin.weight.shape) for lin in items]
        raise ValueError(f"the linears must share in_features; got weight shapes {shapes}")
    stacked = torch.stack([lin.weight.detach().abs().amax(dim=0).float() for lin in items])
    return stacked.amax(dim=0)


@torch.no_grad()
def smooth_layernorm_linears(
    ln: nn.Module, linears: nn.Linear | Iterable[nn.Linear], s: torch.Tensor
) -> None:
    """Fold smoothing factors into a LayerNorm and its consuming Linears, **in place**.

    ``ln.weight /= s``, ``ln.bias /= s`` (if present), and for every Linear
    ``weight[:, j] *= s[j]`` (weight shape ``(out, in)``). All inputs are validated before
    anything is changed. The composed function ``linear(ln(x))`` is unchanged up to float
    rounding.

    Args:
        ln: a module with ``weight`` (and optionally ``bias``) of shape ``(C,)``,
            e.g. ``nn.LayerNorm(C)``.
        linears: one ``nn.Linear`` or a list of them, each with ``in_features == C``.
        s: float ``(C,)``, positive (e.g. from :func:`smooth_scales`).
    """
    s = check_float_tensor(s, "s")
    if s.dim() != 1:
        raise ValueError(f"s must be 1-D (C,), got shape {tuple(s.shape)}")
    if bool((s <= 0).any()):
        raise ValueError(f"s must be > 0 everywhere, got min {float(s.min())}")
    gamma = getattr(ln, "weight", None)
    if not isinstance(gamma, torch.Tensor):
        raise TypeError(
            f"ln must be a LayerNorm-like module with an affine .weight, got {type(ln).__name__}"
        )
    check_same_shape(gamma, s, "ln.weight", "s")
    beta = getattr(ln, "bias", None)
    if beta is not None:
        check_same_shape(beta, s, "ln.bias", "s")
    items = _as_linear_list(linears)
    for i, lin in enumerate(items):
        if lin.weight.shape[1] != s.shape[0]:
            raise ValueError(
                f"shape mismatch: linears[{i}].weight has shape {tuple(lin.weight.shape)} "
                f"(in_features {lin.weight.shape[1]}) but s has shape {tuple(s.shape)}"
            )
    s = s.detach()
    gamma.div_(s.to(gamma.dtype))
    if beta is not None:
        beta.div_(s.to(beta.dtype))
    for lin in items:
        lin.weight.mul_(s.to(lin.weight.dtype))
