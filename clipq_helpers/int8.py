"""Integer GEMM: what an INT8 kernel really computes (chapter 8).

``y = (x_q @ w_q.T) * x_scale * w_scale + bias`` where the product of int8 codes is
accumulated in int32, exactly. On CPU, ``torch._int_mm`` (int8 x int8 -> int32) is used;
where it is unavailable (some devices/shapes, e.g. CUDA needs M > 16 and K, N multiples of 8)
an exact fallback computes the same int32 result via float64 (exact: every partial sum is
an integer below 2^53 for any K < 2^38).
"""

from __future__ import annotations

import torch

from ._checks import as_float_scalar_or_tensor, check_float_tensor, check_nonempty, ensure_tensor

__all__ = ["int8_matmul", "int8_linear"]


def _check_int8(t: object, name: str) -> torch.Tensor:
    t = ensure_tensor(t, name)
    if t.dtype != torch.int8:
        raise TypeError(
            f"{name} must be an int8 tensor of symmetric codes, got {t.dtype}; "
            f"quantize it with quantize_symmetric(...) first"
        )
    check_nonempty(t, name)
    return t


def _use_int_mm(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not hasattr(torch, "_int_mm"):
        return False
    if a.device.type == "cpu":
        return True
    m, k = a.shape
    n = b.shape[1]
    return m > 16 and k % 8 == 0 and n % 8 == 0


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int32 product of int8 matrices: ``a (M, K) @ b (K, N) -> int32 (M, N)``."""
    a = _check_int8(a, "a")
    b = _check_int8(b, "b")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"shape mismatch: a has shape {tuple(a.shape)} and b has shape {tuple(b.shape)}; "
            f"expected (M, K) and (K, N)"
        )
    if _use_int_mm(a, b):
        try:
            return torch._int_mm(a, b)
        except (RuntimeError, NotImplementedError):
            pass
    return (a.to(torch.float64) @ b.to(torch.float64)).to(torch.int32)


def int8_linear(
    x_q: torch.Tensor,
    x_scale: float | torch.Tensor,
    w_q: torch.Tensor,
    w_scale: float | torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Integer linear layer: int32 accumulation of ``x_q @ w_q.T``, then rescale and add bias.

    Args:
        x_q: int8 activation codes ``(..., K)``.
        x_scale: activation scale: float / 0-d tensor (per-tensor), or a float tensor of
            shape ``(..., 1)`` (per-token, as from ``quantize_per_token``).
        w_q: int8 weight codes ``(N, K)``.
        w_scale: weight scale: float / 0-d tensor (per-tensor) or ``(N,)`` (per-channel).
        bias: float ``(N,)`` or None.
    Returns:
        float32 ``(..., N)`` = ``acc.float() * x_scale * w_scale + bias`` with
        ``acc = x_q @ w_q.T`` computed exactly in int32.
    """
    x_q = _check_int8(x_q, "x_q")
    w_q = _check_int8(w_q, "w_q")
    if w_q.dim() != 2:
        raise ValueError(f"w_q must be 2-D (N, K), got shape {tuple(w_q.shape)}")
    if x_q.dim() < 1 or x_q.shape[-1] != w_q.shape[1]:
        raise ValueError(
            f"shape mismatch: x_q has shape {tuple(x_q.shape)} and w_q has shape "
            f"{tuple(w_q.shape)}; expected x_q (..., K) and w_q (N, K) with the same K"
        )
    n, k = w_q.shape
    lead = x_q.shape[:-1]
    xs = as_float_scalar_or_tensor(x_scale, "x_scale").to(torch.float32)
    if xs.dim() > 0 and xs.numel() > 1 and tuple(xs.shape) != (*lead, 1):
        raise ValueError(
            f"shape mismatch: x_scale has shape {tuple(xs.shape)} but x_q has shape "
            f"{tuple(x_q.shape)}; expected a 0-d scale or per-token scales of shape "
            f"{(*lead, 1)}"
        )
    ws = as_float_scalar_or_tensor(w_scale, "w_scale").to(torch.float32)
    if ws.numel() > 1 and tuple(ws.shape) != (n,):
        raise ValueError(
            f"shape mismatch: w_scale has shape {tuple(ws.shape)} but w_q has shape "
            f"{tuple(w_q.shape)}; expected a 0-d scale or per-channel scales of shape ({n},)"
        )
    if bias is not None:
        bias = check_float_tensor(bias, "bias")
        if tuple(bias.shape) != (n,):
            raise ValueError(
                f"shape mismatch: bias has shape {tuple(bias.shape)} but w_q has shape "
                f"{tuple(w_q.shape)}; expected bias of shape ({n},)"
            )
    acc = int8_matmul(x_q.reshape(-1, k), w_q.T.contiguous())  # int32 (M, N)
    acc = acc.reshape(*lead, n)
    out = acc.to(torch.float32) * xs.reshape(xs.shape if xs.numel() > 1 else ())
    out = out * ws.reshape(ws.shape if ws.numel() > 1 else ())
    if bias is not None:
        out = out + bias.detach().to(torch.float32)
    return out
