"""Shared input validation for the quantization core.

Every public function of the quantization modules validates its inputs with these
helpers, so bad input always fails the same way, with a message that says what was
wrong and what is expected:

* a non-tensor where a tensor is expected  -> ``TypeError``
* an integer tensor where floats are needed -> ``TypeError``
* NaN/Inf values, empty tensors, ``bits`` outside 2..16, mismatched shapes -> ``ValueError``
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch

MIN_BITS = 2
MAX_BITS = 16


def _type_name(obj: object) -> str:
    return type(obj).__name__


def ensure_tensor(x: object, name: str = "x") -> torch.Tensor:
    """Return ``x`` if it is a ``torch.Tensor``, else raise ``TypeError``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name}: expected a torch.Tensor, got {_type_name(x)}; wrap it with torch.tensor(...)"
        )
    return x


def check_nonempty(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` has no elements."""
    if x.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); expected a tensor with at least one element"
        )


def check_float(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``TypeError`` unless ``x`` has a floating-point dtype."""
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (e.g. torch.float32), got {x.dtype}; "
            f"convert it with {name}.float()"
        )


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` if a floating-point ``x`` contains NaN or +-Inf."""
    if x.is_floating_point() or x.is_complex():
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            n = int(bad.sum())
            raise ValueError(
                f"{name} contains NaN/Inf ({n} non-finite value{'s' if n != 1 else ''}); "
                f"expected finite values only"
            )


def check_float_tensor(x: object, name: str = "x") -> torch.Tensor:
    """Tensor, floating point, non-empty and finite; returns ``x`` unchanged."""
    x = ensure_tensor(x, name)
    check_float(x, name)
    check_nonempty(x, name)
    check_finite(x, name)
    return x


def check_int_tensor(x: object, name: str = "q") -> torch.Tensor:
    """Tensor with an integer dtype, non-empty; returns ``x`` unchanged."""
    x = ensure_tensor(x, name)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(
            f"{name} must be an integer tensor (e.g. torch.int8), got {x.dtype}; "
            f"quantized codes are integers"
        )
    check_nonempty(x, name)
    return x


def check_bits(bits: object, name: str = "bits") -> int:
    """``bits`` must be an ``int`` in ``2..16``; returns it as ``int``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"{name} must be an int between {MIN_BITS} and {MAX_BITS}, got {bits!r}")
    bits = int(bits)
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be between {MIN_BITS} and {MAX_BITS}, got {bits}")
    return bits


def check_positive_int(value: object, name: str) -> int:
    """``value`` must be an ``int`` >= 1; returns it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def check_same_shape(
    a: torch.Tensor, b: torch.Tensor, name_a: str = "x", name_b: str = "x_hat"
) -> None:
    """Raise ``ValueError`` naming both shapes unless they are equal."""
    if a.shape != b.shape:
        raise ValueError(
            f"shape mismatch: {name_a} has shape {tuple(a.shape)} but {name_b} has shape "
            f"{tuple(b.shape)}; expected equal shapes"
        )


def check_broadcastable(
    a_shape: Sequence[int], b_shape: Sequence[int], name_a: str = "x", name_b: str = "scale"
) -> None:
    """Raise ``ValueError`` naming both shapes unless they broadcast together."""
    try:
        torch.broadcast_shapes(tuple(a_shape), tuple(b_shape))
    except RuntimeError:
        raise ValueError(
            f"shape mismatch: {name_b} with shape {tuple(b_shape)} does not broadcast against "
            f"{name_a} with shape {tuple(a_shape)}; expected a 0-d scale or one that broadcasts"
        ) from None


def as_float_scalar_or_tensor(value: object, name: str = "scale") -> torch.Tensor:
    """A Python number or a float tensor -> float tensor; must be finite and > 0."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive float or a float tensor, got {value!r}")
    if isinstance(value, numbers.Real):
        t = torch.tensor(float(value), dtype=torch.float32)
    elif isinstance(value, torch.Tensor):
        t = value
        if not t.is_floating_point():
            raise TypeError(
                f"{name} must be a floating-point tensor or a Python float, got {t.dtype}; "
                f"convert it with {name}.float()"
            )
        check_nonempty(t, name)
    else:
        raise TypeError(
            f"{name}: expected a float or a torch.Tensor, got {_type_name(value)}; "
            f"wrap it with torch.tensor(...)"
        )
    check_finite(t, name)
    if bool((t <= 0).any()):
        raise ValueError(f"{name} must be > 0 everywhere, got min {float(t.min())}")
    return t


def as_zero_point(value: object, name: str = "zero_point") -> torch.Tensor:
    """An int (or integer-valued tensor) -> int64 tensor; non-integers raise."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int or an integer tensor, got {value!r}")
    if isinstance(value, numbers.Integral):
        return torch.tensor(int(value), dtype=torch.int64)
    if isinstance(value, numbers.Real):
        if float(value) != round(float(value)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return torch.tensor(int(round(float(value))), dtype=torch.int64)
    if isinstance(value, torch.Tensor):
        check_nonempty(value, name)
        if value.is_floating_point():
            check_finite(value, name)
            if not torch.equal(value, torch.round(value)):
                raise ValueError(f"{name} must hold integer values, got {value}")
        elif value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
        return value.to(torch.int64)
    raise TypeError(
        f"{name}: expected an int or a torch.Tensor, got {_type_name(value)}; "
        f"wrap it with torch.tensor(...)"
    )


def check_fraction(value: object, name: str, low: float, high: float) -> float:
    """A real number in ``[low, high]``; returns it as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        else:
            raise TypeError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    value = float(value)
    if not (low <= value <= high):  # also rejects NaN
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value
