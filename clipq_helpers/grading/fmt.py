"""Short, deterministic text for values in grading messages (no memory addresses)."""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["number", "shape", "dtype_name", "describe", "preview", "type_name"]

_PREVIEW_FULL = 16  # tensors with at most this many elements are shown in full
_PREVIEW_HEAD = 8  # otherwise the first few values are shown


def type_name(obj: object) -> str:
    """``numpy.ndarray``, ``Tensor``, ``float``: module-qualified for non-builtins."""
    t = type(obj)
    mod = t.__module__.split(".")[0]
    if mod in ("builtins", "torch"):
        return t.__name__
    return f"{mod}.{t.__name__}"


def number(v: object) -> str:
    """A number as short text: ints exactly, floats with 6 significant digits."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, numbers.Integral):
        return str(int(v))
    if isinstance(v, numbers.Real):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return format(f, ".6g")
    return repr(v)[:60]


def shape(s: tuple[int, ...] | torch.Size) -> str:
    """``(3, 4)``, ``(5,)`` or ``()``."""
    return str(tuple(int(d) for d in s))


def dtype_name(dt: torch.dtype) -> str:
    """``torch.int8`` -> ``int8``."""
    return str(dt).removeprefix("torch.")


def _nested(values: list, dims: tuple[int, ...]) -> str:
    if not dims:
        return number(values[0])
    if len(dims) == 1:
        return "[" + ", ".join(number(v) for v in values) + "]"
    step = len(values) // dims[0] if dims[0] else 0
    parts = [_nested(values[i * step : (i + 1) * step], dims[1:]) for i in range(dims[0])]
    return "[" + ", ".join(parts) + "]"


def preview(t: torch.Tensor) -> str:
    """Values of a tensor: all of them if small, else the first few and min/max."""
    t = t.detach().cpu()
    if t.is_complex():
        return "(complex values)"
    flat = t.reshape(-1)
    n = flat.numel()
    if n == 0:
        return "[]"
    if t.dtype == torch.bool:
        flat = flat.to(torch.int64)
    if n <= _PREVIEW_FULL:
        return _nested(flat.tolist(), tuple(t.shape))
    head = ", ".join(number(v) for v in flat[:_PREVIEW_HEAD].tolist())
    f = flat.to(torch.float64)
    finite = f[torch.isfinite(f)]
    if finite.numel():
        rng = f"min {number(finite.min().item())}, max {number(finite.max().item())}"
    else:
        rng = "no finite values"
    return f"[{head}, ...] ({rng})"


def describe(v: object, values: bool = True) -> str:
    """One-line description: ``int8 (3,) [1, 2, 3]``, ``0.5 (float)``, ``None``."""
    if v is None:
        return "None"
    if isinstance(v, torch.Tensor):
        if v.dim() == 0:
            return f"0-d {dtype_name(v.dtype)} tensor {number(v.item())}"
        head = f"{dtype_name(v.dtype)} {shape(v.shape)}"
        return f"{head} {preview(v)}" if values else head
    if isinstance(v, bool):
        return f"{v} (bool)"
    if isinstance(v, numbers.Number):
        return f"{number(v)} ({type_name(v)})"
    if isinstance(v, tuple | list):
        inner = ", ".join(describe(x, values=False) for x in v[:4])
        more = ", ..." if len(v) > 4 else ""
        return f"{type_name(v)} of {len(v)}: ({inner}{more})"
    if isinstance(v, torch.nn.Module):
        return type(v).__name__
    shp = getattr(v, "shape", None)
    dt = getattr(v, "dtype", None)
    if shp is not None and dt is not None:
        return f"{type_name(v)} {shape(tuple(shp))} {dt}"
    return type_name(v)
