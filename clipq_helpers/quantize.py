"""Uniform quantization: the reference implementations of the course's exercise contract.

Conventions (DESIGN.md, "Exercise contract"), used everywhere in ``clipq_helpers``:

* rounding is ``torch.round`` (round half to even: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2);
* ``q = round(x / s) + z`` and ``x_hat = s * (q - z)``;
* symmetric codes use the *narrow* signed range ``[-(2^(b-1)-1), 2^(b-1)-1]``
  (``[-127, 127]`` for 8 bits), so the grid is symmetric around 0;
* asymmetric codes use the unsigned range ``[0, 2^b - 1]`` and the range
  ``[min(x, 0), max(x, 0)]``, which always contains 0 (so 0 is exactly representable);
* an all-zero tensor gets scale 1.0 (and zero point 0);
* codes come back in the smallest fitting integer dtype (:func:`int_dtype`);
* scales are float32 (a 0-d tensor for a single scale); dequantized values are float32.

Arithmetic happens in float32 (float64 if the input is float64); float16/bfloat16
inputs are upcast first. No function modifies its inputs.
"""

from __future__ import annotations

import math

import torch

from ._checks import (
    as_float_scalar_or_tensor,
    as_zero_point,
    check_bits,
    check_broadcastable,
    check_float_tensor,
    check_positive_int,
    check_same_shape,
    ensure_tensor,
)

ScaleLike = float | torch.Tensor
ZeroPointLike = int | torch.Tensor

_TINY = torch.finfo(torch.float32).tiny  # smallest normal float32; scales never go below it

__all__ = [
    "qrange",
    "int_dtype",
    "symmetric_scale",
    "quantize_symmetric",
    "dequantize",
    "asymmetric_params",
    "quantize_asymmetric",
    "sqnr_db",
    "quantize_per_channel",
    "quantize_per_token",
    "quantize_per_group",
    "dequantize_per_group",
    "fake_quant_symmetric",
    "fake_quant_asymmetric",
]


# --------------------------------------------------------------------------- integer ranges


def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """Integer code range ``(qmin, qmax)``.

    Signed is the narrow symmetric range ``(-(2^(b-1)-1), 2^(b-1)-1)``, e.g. ``(-127, 127)``;
    unsigned is ``(0, 2^b - 1)``, e.g. ``(0, 255)``.
    """
    bits = check_bits(bits)
    if signed:
        qmax = 2 ** (bits - 1) - 1
        return -qmax, qmax
    return 0, 2**bits - 1


def int_dtype(bits: int, signed: bool = True) -> torch.dtype:
    """Smallest torch integer dtype that holds the codes of :func:`qrange`.

    signed: int8 (bits <= 8), int16 (<= 16). unsigned: uint8 (<= 8), int16 (<= 15),
    int32 (16 bits: torch.uint16 exists but supports few operations).
    """
    bits = check_bits(bits)
    if signed:
        return torch.int8 if bits <= 8 else torch.int16
    if bits <= 8:
        return torch.uint8
    return torch.int16 if bits <= 15 else torch.int32


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_scale_for(x_shape: torch.Size, scale: torch.Tensor, name: str = "scale") -> None:
    """A scale must broadcast against ``x`` without growing it."""
    check_broadcastable(x_shape, scale.shape, "x", name)
    if torch.broadcast_shapes(tuple(x_shape), tuple(scale.shape)) != tuple(x_shape):
        raise ValueError(
            f"shape mismatch: {name} with shape {tuple(scale.shape)} would broadcast x with "
            f"shape {tuple(x_shape)} to a larger shape; expected a 0-d {name} or one with "
            f"x's number of dims and sizes 1 or equal"
        )


# --------------------------------------------------------------------------- symmetric


def symmetric_scale(x: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """Per-tensor symmetric scale ``max|x| / (2^(b-1) - 1)``.

    Args:
        x: float tensor, any shape, finite, non-empty.
        bits: 2..16.
    Returns:
        0-d float32 tensor; 1.0 if ``x`` is all zero.
    Example: ``x = [-1.0, 0.5, 2.54]``, 8 bits -> ``2.54 / 127 = 0.02``.
    """
    x = check_float_tensor(x, "x")
    _, qmax = qrange(bits, signed=True)
    absmax = x.detach().abs().max().to(torch.float32)
    if float(absmax) == 0.0:
        return torch.tensor(1.0, dtype=torch.float32)
    return (absmax / qmax).clamp(min=_TINY)


def quantize_symmetric(x: torch.Tensor, scale: ScaleLike, bits: int = 8) -> torch.Tensor:
    """Symmetric codes ``clamp(round(x / scale), -(2^(b-1)-1), 2^(b-1)-1)``.

    Args:
        x: float tensor, any shape.
        scale: positive float, 0-d tensor, or a float tensor that broadcasts against ``x``
            without growing it (e.g. shape ``(C, 1)`` for per-row scales of a ``(C, K)`` x).
        bits: 2..16.
    Returns:
        integer tensor of ``x.shape``, dtype ``int_dtype(bits, signed=True)`` (int8 for 8 bits).
    Example: ``x = [-1.0, 0.5, 2.54]``, scale 0.02 -> ``[-50, 25, 127]``.
    """
    x = check_float_tensor(x, "x")
    s = as_float_scalar_or_tensor(scale, "scale")
    _check_scale_for(x.shape, s)
    qmin, qmax = qrange(bits, signed=True)
    dt = _compute_dtype(x)
    q = torch.round(x.detach().to(dt) / s.detach().to(dt)).clamp(qmin, qmax)
    return q.to(int_dtype(bits, signed=True))


def dequantize(q: torch.Tensor, scale: ScaleLike, zero_point: ZeroPointLike = 0) -> torch.Tensor:
    """``scale * (q - zero_point)`` as float32.

    Args:
        q: integer codes (any integer dtype; float tensors holding codes are accepted too).
        scale: positive float, 0-d tensor, or a float tensor broadcastable against ``q``
            (per-channel scales must already have the broadcast shape, e.g. ``(C, 1)``).
        zero_point: int, or integer tensor broadcastable against ``q``; 0 for symmetric codes.
    Returns:
        float32 tensor of ``q.shape``.
    """
    q = ensure_tensor(q, "q")
    if q.dtype == torch.bool or q.is_complex():
        raise TypeError(f"q must be an integer tensor of codes, got {q.dtype}")
    if q.numel() == 0:
        raise ValueError(f"q is empty (shape {tuple(q.shape)}); expected at least one element")
    if q.is_floating_point():
        check_float_tensor(q, "q")
    s = as_float_scalar_or_tensor(scale, "scale")
    _check_scale_for(q.shape, s)
    z = as_zero_point(zero_point, "zero_point")
    _check_scale_for(q.shape, z, "zero_point")
    if q.is_floating_point():
        diff = q.detach().to(torch.float32) - z.to(torch.float32)
    else:
        diff = (q.detach().to(torch.int64) - z).to(torch.float32)  # exact integer difference
    return s.detach().to(torch.float32) * diff


# --------------------------------------------------------------------------- asymmetric


def _asymmetric_from_range(lo: float, hi: float, bits: int) -> tuple[torch.Tensor, int]:
    """(scale, zero_point) for the range ``[min(lo,0), max(hi,0)]`` (shared with observers)."""
    _, qmax = qrange(bits, signed=False)
    lo_t = torch.tensor(min(float(lo), 0.0), dtype=torch.float32)
    hi_t = torch.tensor(max(float(hi), 0.0), dtype=torch.float32)
    if float(hi_t) == float(lo_t):  # all zero
        return torch.tensor(1.0, dtype=torch.float32), 0
    scale = ((hi_t - lo_t) / qmax).clamp(min=_TINY)
    zp = int(torch.round(-lo_t / scale).clamp(0, qmax))
    return scale, zp


def asymmetric_params(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, int]:
    """Asymmetric (affine) parameters from the range ``[lo, hi] = [min(x, 0), max(x, 0)]``.

    ``scale = (hi - lo) / (2^b - 1)``; ``zero_point = round(-lo / scale)`` clamped into
    ``[0, 2^b - 1]``, so ``dequantize(zero_point) == 0`` exactly.

    Args:
        x: float tensor, any shape.
        bits: 2..16.
    Returns:
        ``(scale, zero_point)``: 0-d float32 tensor and Python int; ``(1.0, 0)`` for all zeros.
    Example: ``x = [-1.0, 0.0, 3.0]``, 8 bits -> scale ``4/255``, zero_point ``round(63.75) = 64``.
    """
    x = check_float_tensor(x, "x")
    check_bits(bits)
    xd = x.detach()
    return _asymmetric_from_range(float(xd.min()), float(xd.max()), bits)


def quantize_asymmetric(
    x: torch.Tensor, scale: ScaleLike, zero_point: ZeroPointLike, bits: int = 8
) -> torch.Tensor:
    """Asymmetric codes ``clamp(round(x / scale) + zero_point, 0, 2^b - 1)``.

    Args:
        x: float tensor.
        scale: positive float / 0-d tensor / broadcastable float tensor.
        zero_point: int (or integer tensor) in ``[0, 2^b - 1]``.
        bits: 2..16.
    Returns:
        integer tensor of ``x.shape``, dtype ``int_dtype(bits, signed=False)`` (uint8 for 8 bits).
    """
    x = check_float_tensor(x, "x")
    s = as_float_scalar_or_tensor(scale, "scale")
    _check_scale_for(x.shape, s)
    qmin, qmax = qrange(bits, signed=False)
    z = as_zero_point(zero_point, "zero_point")
    _check_scale_for(x.shape, z, "zero_point")
    if bool((z < qmin).any()) or bool((z > qmax).any()):
        raise ValueError(
            f"zero_point must lie in [{qmin}, {qmax}] for {bits}-bit unsigned codes, "
            f"got {z.tolist()}"
        )
    dt = _compute_dtype(x)
    q = torch.round(x.detach().to(dt) / s.detach().to(dt)) + z.to(dt)
    return q.clamp(qmin, qmax).to(int_dtype(bits, signed=False))


# --------------------------------------------------------------------------- error


def sqnr_db(x: torch.Tensor, x_hat: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum x^2 / sum (x - x_hat)^2)`` in dB.

    Computed in float64. Returns ``math.inf`` when ``x_hat == x`` exactly (no error).
    Raises ``ValueError`` when ``x`` is all zero (no signal: the ratio is undefined).

    Args:
        x: float tensor (the reference).
        x_hat: float tensor of the same shape (the approximation).
    Returns:
        Python float (dB).
    """
    x = check_float_tensor(x, "x")
    x_hat = check_float_tensor(x_hat, "x_hat")
    check_same_shape(x, x_hat, "x", "x_hat")
    xd = x.detach().to(torch.float64)
    signal = float((xd * xd).sum())
    if signal == 0.0:
        raise ValueError("x is all zero: the signal power is 0, so SQNR is undefined")
    err = xd - x_hat.detach().to(torch.float64)
    noise = float((err * err).sum())
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(signal / noise)


# --------------------------------------------------------------------------- granularity


def _absmax_scales(absmax: torch.Tensor, qmax: int) -> torch.Tensor:
    """absmax -> float32 scales, 1.0 where absmax == 0."""
    absmax = absmax.to(torch.float32)
    scales = (absmax / qmax).clamp(min=_TINY)
    return torch.where(absmax == 0, torch.ones_like(scales), scales)


def quantize_per_channel(
    w: torch.Tensor, bits: int = 8, axis: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization with one scale per slice along ``axis``.

    Equal to :func:`symmetric_scale` + :func:`quantize_symmetric` applied to each slice
    ``w.select(axis, c)`` separately (an all-zero slice gets scale 1.0).

    Args:
        w: float tensor with at least one dim, e.g. a Linear weight ``(out, in)``.
        bits: 2..16.
        axis: the channel axis (negative values count from the end).
    Returns:
        ``(q, scales)``: codes of ``w.shape`` (``int_dtype(bits)``) and float32 scales of
        shape ``(w.shape[axis],)``. Dequantize with
        ``dequantize(q, scales.reshape(shape with -1 at axis and 1 elsewhere))``.
    """
    w = check_float_tensor(w, "w")
    if w.dim() == 0:
        raise ValueError("w must have at least one dim (a 0-d tensor has no channel axis)")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"axis must be an int, got {axis!r}")
    if not -w.dim() <= axis < w.dim():
        raise ValueError(f"axis {axis} is out of range for w with shape {tuple(w.shape)}")
    axis = axis % w.dim()
    _, qmax = qrange(bits, signed=True)
    n_ch = w.shape[axis]
    absmax = w.detach().movedim(axis, 0).reshape(n_ch, -1).abs().amax(dim=1)
    scales = _absmax_scales(absmax, qmax)
    view = [1] * w.dim()
    view[axis] = n_ch
    q = quantize_symmetric(w, scales.reshape(view), bits)
    return q, scales


def quantize_per_token(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic symmetric quantization with one scale per row (token) of the last dim.

    Args:
        x: float tensor ``(..., C)``, e.g. activations ``(B, T, C)``.
        bits: 2..16.
    Returns:
        ``(q, scales)``: codes of ``x.shape`` and float32 scales of shape ``(..., 1)``
        (``max|row| / (2^(b-1)-1)``, 1.0 for an all-zero row); ``dequantize(q, scales)``.
    """
    x = check_float_tensor(x, "x")
    if x.dim() == 0:
        raise ValueError("x must have at least one dim (..., C); got a 0-d tensor")
    _, qmax = qrange(bits, signed=True)
    scales = _absmax_scales(x.detach().abs().amax(dim=-1, keepdim=True), qmax)
    return quantize_symmetric(x, scales, bits), scales


def quantize_per_group(
    w: torch.Tensor, bits: int = 8, group_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization with one scale per group of ``group_size`` input columns.

    Args:
        w: float weight ``(N, K)``; ``K`` must be a multiple of ``group_size``.
        bits: 2..16 (typically 4 or 8).
        group_size: columns per group.
    Returns:
        ``(q, scales)``: codes ``(N, K)`` and float32 scales ``(N, K // group_size)``;
        group ``g`` of row ``n`` covers columns ``g*group_size .. (g+1)*group_size - 1``.
    """
    w = check_float_tensor(w, "w")
    if w.dim() != 2:
        raise ValueError(f"w must be 2-D (N, K), got shape {tuple(w.shape)}")
    group_size = check_positive_int(group_size, "group_size")
    n, k = w.shape
    if k % group_size != 0:
        raise ValueError(
            f"K = {k} (w shape {tuple(w.shape)}) is not a multiple of group_size = {group_size}"
        )
    _, qmax = qrange(bits, signed=True)
    groups = w.reshape(n, k // group_size, group_size)
    scales = _absmax_scales(groups.detach().abs().amax(dim=-1), qmax)
    q = quantize_symmetric(groups, scales.unsqueeze(-1), bits).reshape(n, k)
    return q, scales


def dequantize_per_group(q: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`quantize_per_group`: codes ``(N, K)``, scales ``(N, G)`` -> float32."""
    q = ensure_tensor(q, "q")
    scales = as_float_scalar_or_tensor(scales, "scales")
    if q.dim() != 2 or scales.dim() != 2 or scales.shape[0] != q.shape[0]:
        raise ValueError(
            f"shape mismatch: q has shape {tuple(q.shape)} and scales {tuple(scales.shape)}; "
            f"expected (N, K) and (N, G)"
        )
    n, k = q.shape
    g = scales.shape[1]
    if k % g != 0:
        raise ValueError(f"K = {k} is not a multiple of the number of groups G = {g}")
    return dequantize(q.reshape(n, g, k // g), scales.unsqueeze(-1)).reshape(n, k)


# --------------------------------------------------------------------------- fake quant


def fake_quant_symmetric(x: torch.Tensor, scale: ScaleLike, bits: int = 8) -> torch.Tensor:
    """``dequantize(quantize_symmetric(x, scale, bits), scale)`` in ``x``'s dtype.

    The values lie on the quantization grid; no gradient flows through the rounding.
    """
    x = check_float_tensor(x, "x")
    return dequantize(quantize_symmetric(x, scale, bits), scale).to(x.dtype)


def fake_quant_asymmetric(
    x: torch.Tensor, scale: ScaleLike, zero_point: ZeroPointLike, bits: int = 8
) -> torch.Tensor:
    """``dequantize(quantize_asymmetric(x, scale, zp, bits), scale, zp)`` in ``x``'s dtype."""
    x = check_float_tensor(x, "x")
    q = quantize_asymmetric(x, scale, zero_point, bits)
    return dequantize(q, scale, zero_point).to(x.dtype)
