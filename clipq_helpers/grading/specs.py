"""Output specifications: how a learner's result is compared with a stored reference value.

Each spec's ``compare(got, expected, extra)`` returns ``None`` when ``got`` is right, or a
:class:`Mismatch` describing what is wrong (kind, expected vs got, a compact diff). Specs
never raise on strange learner values; the caller still guards against that.

Kinds (used to pick a hint): ``none`` (returned None), ``type`` (not a tensor / number),
``arity`` (wrong tuple length), ``dtype``, ``float_codes`` (float dtype where integer codes
are expected), ``shape``, ``nan`` (NaN/Inf where the reference is finite),
``not_integer`` (a zero point that is not a whole number) and ``value``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import torch

from . import fmt

__all__ = [
    "Mismatch",
    "Spec",
    "Codes",
    "FloatTensor",
    "Scalar",
    "IntScalar",
    "Threshold",
    "TupleOf",
    "StateOf",
]


@dataclass
class Mismatch:
    """What is wrong with one returned value."""

    kind: str
    headline: str
    expected: str
    got: str
    details: list[str] = field(default_factory=list)
    where: str = ""  # which part of the result, e.g. "scales" or "ln.weight"


class Spec:
    """Base class of output specifications."""

    def compare(self, got: Any, expected: Any, extra: dict) -> Mismatch | None:
        raise NotImplementedError


# --------------------------------------------------------------------------- helpers


def _none(got: Any, expected_text: str) -> Mismatch | None:
    if got is None:
        return Mismatch("none", "returned None", expected_text, "None")
    return None


def _not_tensor(got: Any, expected_text: str) -> Mismatch | None:
    if isinstance(got, torch.Tensor):
        return None
    tname = fmt.type_name(got)
    advice = "return a torch.Tensor"
    if tname.startswith("numpy."):
        advice += " (convert a numpy array with torch.from_numpy(...))"
    elif isinstance(got, list | tuple):
        advice += " (build it with torch.stack / torch.tensor instead of a Python list)"
    return Mismatch(
        "type",
        f"returned a {tname}, not a torch.Tensor",
        expected_text,
        fmt.describe(got),
        [advice],
    )


def _index(flat_i: int, shp: tuple[int, ...]) -> str:
    idx = []
    for d in reversed(shp):
        idx.append(flat_i % d if d else 0)
        flat_i = flat_i // d if d else 0
    return str(tuple(reversed(idx)))


def _constant_ratio(got: torch.Tensor, exp: torch.Tensor) -> float | None:
    """If ``got == r * exp`` for one r != 1 (over nonzero expected values), return r."""
    mask = (exp != 0) & torch.isfinite(got) & torch.isfinite(exp)
    if int(mask.sum()) < 2 and exp.numel() > 1:
        return None
    if not bool(mask.any()):
        return None
    r = got[mask] / exp[mask]
    r0 = float(r.median())
    if r0 == 0 or not math.isfinite(r0) or abs(r0 - 1) < 1e-4:
        return None
    if not bool(((r - r0).abs() <= 1e-4 * abs(r0)).all()):
        return None
    if not bool((got[exp == 0] == 0).all()):
        return None
    return r0


def tensor_value_diff(got: torch.Tensor, exp: torch.Tensor, bad: torch.Tensor) -> list[str]:
    """Lines describing where two same-shape tensors differ (``bad``: mask of differences)."""
    g = got.detach().reshape(-1).to(torch.float64)
    e = exp.detach().reshape(-1).to(torch.float64)
    badf = bad.reshape(-1)
    n_bad, n = int(badf.sum()), badf.numel()
    first = int(torch.nonzero(badf)[0, 0])
    shp = tuple(exp.shape)
    lines = [
        f"{n_bad} of {n} element{'s' if n != 1 else ''} differ; first at index "
        f"{_index(first, shp)}: expected {fmt.number(_item(exp, first))}, "
        f"got {fmt.number(_item(got, first))}"
    ]
    err = (g - e).abs()
    err = torch.where(torch.isfinite(err), err, torch.zeros_like(err))
    if n > 1 and float(err.max()) > 0:
        worst = int(torch.argmax(err))
        lines.append(f"max abs error {fmt.number(float(err[worst]))} at index {_index(worst, shp)}")
    ratio = _constant_ratio(g, e)
    if ratio is not None:
        lines.append(f"every value is off by the same factor: got = expected x {fmt.number(ratio)}")
    return lines


def _item(t: torch.Tensor, flat_i: int) -> float | int:
    return t.detach().reshape(-1)[flat_i].item()


def _check_tensor_shape(got: torch.Tensor, exp: torch.Tensor) -> Mismatch | None:
    if tuple(got.shape) != tuple(exp.shape):
        details = []
        if got.numel() == exp.numel():
            details.append(
                "same number of elements, different layout: check reshape/permute/transpose"
            )
        elif sorted(got.shape) == sorted(exp.shape):
            details.append("the dims are swapped: check which axis you reduce or transpose")
        return Mismatch(
            "shape",
            f"wrong shape {fmt.shape(got.shape)}, expected {fmt.shape(exp.shape)}",
            fmt.describe(exp),
            fmt.describe(got),
            details,
        )
    return None


# --------------------------------------------------------------------------- tensors


class Codes(Spec):
    """Integer codes: same dtype (exactly), same shape, equal values."""

    def compare(self, got: Any, expected: torch.Tensor, extra: dict) -> Mismatch | None:
        exp_text = fmt.describe(expected)
        m = _none(got, exp_text) or _not_tensor(got, exp_text)
        if m:
            return m
        want = fmt.dtype_name(expected.dtype)
        if got.dtype != expected.dtype:
            if got.is_floating_point():
                return Mismatch(
                    "float_codes",
                    f"codes have float dtype {fmt.dtype_name(got.dtype)}, expected {want}",
                    exp_text,
                    fmt.describe(got),
                    [
                        f"quantized codes are integers: cast with .to(torch.{want}) after rounding and clamping"
                    ],
                )
            return Mismatch(
                "dtype",
                f"codes have dtype {fmt.dtype_name(got.dtype)}, expected {want}",
                exp_text,
                fmt.describe(got),
                [f"use the smallest integer dtype that holds the range: .to(torch.{want})"],
            )
        m = _check_tensor_shape(got, expected)
        if m:
            return m
        bad = got.detach().to(torch.int64) != expected.to(torch.int64)
        if bool(bad.any()):
            return Mismatch(
                "value",
                "wrong codes",
                exp_text,
                fmt.describe(got),
                tensor_value_diff(got, expected, bad),
            )
        return None


class FloatTensor(Spec):
    """Float tensor: dtype as the reference (float32), same shape, values within tolerance.

    Elementwise ``|got - expected| <= atol + rtol * |expected|``.
    """

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol

    def tolerance_text(self) -> str:
        return f"|got - expected| <= {fmt.number(self.atol)} + {fmt.number(self.rtol)} * |expected|"

    def compare(self, got: Any, expected: torch.Tensor, extra: dict) -> Mismatch | None:
        exp_text = fmt.describe(expected)
        m = _none(got, exp_text) or _not_tensor(got, exp_text)
        if m:
            return m
        want = fmt.dtype_name(expected.dtype)
        if got.dtype != expected.dtype:
            advice = f"return {want} values: .to(torch.{want})"
            if not got.is_floating_point():
                advice = f"the result is real-valued: convert to {want} before scaling (.to(torch.{want}))"
            return Mismatch(
                "dtype",
                f"dtype {fmt.dtype_name(got.dtype)}, expected {want}",
                exp_text,
                fmt.describe(got),
                [advice],
            )
        m = _check_tensor_shape(got, expected)
        if m:
            return m
        g = got.detach().to(torch.float64)
        e = expected.to(torch.float64)
        nonfinite = ~torch.isfinite(g) & torch.isfinite(e)
        if bool(nonfinite.any()):
            kinds = []
            if bool(torch.isnan(g).any()):
                kinds.append("NaN")
            if bool(torch.isinf(g).any()):
                kinds.append("Inf")
            return Mismatch(
                "nan",
                f"result contains {'/'.join(kinds)}",
                exp_text,
                fmt.describe(got),
                tensor_value_diff(got, expected, nonfinite),
            )
        close = (g - e).abs() <= self.atol + self.rtol * e.abs()
        close |= g == e  # equal infinities
        if not bool(close.all()):
            lines = tensor_value_diff(got, expected, ~close)
            lines.append(f"tolerance: {self.tolerance_text()}")
            return Mismatch("value", "wrong values", exp_text, fmt.describe(got), lines)
        return None


# --------------------------------------------------------------------------- scalars


def _as_number(got: Any, what: str, exp_text: str) -> tuple[float | None, Mismatch | None]:
    """A Python number or a 0-d tensor -> float; anything else -> Mismatch."""
    m = _none(got, exp_text)
    if m:
        return None, m
    if isinstance(got, bool):
        return None, Mismatch(
            "type", f"returned a bool, expected {what}", exp_text, fmt.describe(got)
        )
    if isinstance(got, numbers.Real):
        return float(got), None
    if isinstance(got, torch.Tensor):
        if got.is_complex() or got.dtype == torch.bool:
            return None, Mismatch(
                "type",
                f"returned a {fmt.dtype_name(got.dtype)} tensor, expected {what}",
                exp_text,
                fmt.describe(got),
            )
        if got.dim() == 0:
            return float(got.item()), None
        advice = "reduce over all elements (e.g. x.abs().max(), without dim/keepdim) or use .item()"
        if got.numel() == 1:
            advice = "return a 0-d tensor or a Python float: .squeeze() or .item() removes the extra dims"
        return None, Mismatch(
            "shape",
            f"returned a tensor of shape {fmt.shape(got.shape)}, expected {what}",
            exp_text,
            fmt.describe(got),
            [advice],
        )
    shp = getattr(got, "shape", None)
    if shp is not None and tuple(shp) == () and hasattr(got, "item"):
        try:
            return float(got.item()), None
        except (TypeError, ValueError):
            pass
    return None, Mismatch(
        "type", f"returned a {fmt.type_name(got)}, expected {what}", exp_text, fmt.describe(got)
    )


class Scalar(Spec):
    """One real number (Python float/int or 0-d tensor) within ``atol + rtol*|expected|``."""

    what = "a single number (Python float or 0-d tensor)"

    def __init__(self, rtol: float, atol: float) -> None:
        self.rtol, self.atol = rtol, atol

    def compare(self, got: Any, expected: float, extra: dict) -> Mismatch | None:
        exp_text = fmt.number(expected)
        v, m = _as_number(got, self.what, exp_text)
        if m:
            return m
        got_text = fmt.describe(got)
        if math.isinf(expected):
            if v == expected:
                return None
            return Mismatch(
                "value",
                "wrong value",
                exp_text,
                got_text,
                [f"expected {fmt.number(expected)} (no error at all gives an infinite ratio)"],
            )
        if not math.isfinite(v):
            return Mismatch("nan", f"returned {fmt.number(v)}", exp_text, got_text)
        if abs(v - expected) > self.atol + self.rtol * abs(expected):
            lines = [
                f"abs error {fmt.number(abs(v - expected))}; tolerance {fmt.number(self.atol)} "
                f"+ {fmt.number(self.rtol)} * |expected|"
            ]
            if expected != 0 and v != 0:
                lines.append(f"got / expected = {fmt.number(v / expected)}")
            return Mismatch("value", "wrong value", exp_text, got_text, lines)
        return None


class IntScalar(Spec):
    """A whole number (Python int, 0-d integer tensor, or an integral float), compared exactly."""

    what = "an integer (Python int or 0-d integer tensor)"

    def compare(self, got: Any, expected: int, extra: dict) -> Mismatch | None:
        exp_text = str(expected)
        v, m = _as_number(got, self.what, exp_text)
        if m:
            return m
        got_text = fmt.describe(got)
        if not math.isfinite(v):
            return Mismatch("nan", f"returned {fmt.number(v)}", exp_text, got_text)
        if v != round(v):
            return Mismatch(
                "not_integer",
                f"{fmt.number(v)} is not a whole number",
                exp_text,
                got_text,
                ["round it to the nearest integer (torch.round / round())"],
            )
        if int(round(v)) != expected:
            return Mismatch(
                "value", "wrong value", exp_text, got_text, [f"off by {int(round(v)) - expected}"]
            )
        return None


class Threshold(Scalar):
    """A number that must lie in the accepted interval ``extra["accept"] = [lo, hi]``."""

    def __init__(self, rtol: float = 1e-6) -> None:
        super().__init__(rtol=rtol, atol=0.0)

    def compare(self, got: Any, expected: float, extra: dict) -> Mismatch | None:
        lo, hi = extra["accept"]
        exp_text = f"{fmt.number(expected)} (accepted: {fmt.number(lo)} .. {fmt.number(hi)}, one bin either side)"
        v, m = _as_number(got, self.what, exp_text)
        if m:
            return m
        got_text = fmt.describe(got)
        if not math.isfinite(v):
            return Mismatch("nan", f"returned {fmt.number(v)}", exp_text, got_text)
        if not (lo - self.rtol * abs(lo) <= v <= hi + self.rtol * abs(hi)):
            lines = []
            edges = extra.get("edges_hint")
            if edges:
                lines.append(edges)
            return Mismatch(
                "value", "threshold outside the accepted bins", exp_text, got_text, lines
            )
        return None


# --------------------------------------------------------------------------- containers


_STRUCTURAL = ("none", "type", "arity", "dtype", "float_codes", "shape")


class TupleOf(Spec):
    """A tuple (or list) of fixed length whose items follow their own specs."""

    def __init__(self, **items: Spec) -> None:
        self.names = list(items)
        self.items = list(items.values())

    def compare(self, got: Any, expected: list, extra: dict) -> Mismatch | None:
        n = len(self.items)
        names = ", ".join(self.names)
        exp_text = f"a tuple of {n} values ({names})"
        m = _none(got, exp_text)
        if m:
            return m
        if not isinstance(got, tuple | list):
            return Mismatch(
                "arity",
                f"returned a single {fmt.type_name(got)}, expected a tuple ({names})",
                exp_text,
                fmt.describe(got),
                [f"return {names} together: return {names}"],
            )
        if len(got) != n:
            return Mismatch(
                "arity",
                f"returned {len(got)} values, expected {n} ({names})",
                exp_text,
                fmt.describe(got),
                [f"return exactly: return {names}"],
            )
        found = []
        for name, spec, g, e in zip(self.names, self.items, got, expected, strict=True):
            m = spec.compare(g, e, extra)
            if m:
                m.where = name
                found.append(m)
        # a wrong type, dtype or shape anywhere says more than wrong values elsewhere
        structural = [m for m in found if m.kind in _STRUCTURAL]
        return (structural or found or [None])[0]


class StateOf(Spec):
    """A dict of named float tensors (module parameters after an in-place call)."""

    def __init__(self, item: Spec) -> None:
        self.item = item

    def compare(self, got: dict, expected: dict, extra: dict) -> Mismatch | None:
        order = [n for n in got if n in expected] + [n for n in expected if n not in got]
        for name in order:  # the module's own order: ln.weight, ln.bias, linears[0].weight, ...
            e, g = expected[name], got.get(name)
            if g is None:
                return Mismatch(
                    "value", f"{name} is missing (None)", fmt.describe(e), "None", where=name
                )
            m = self.item.compare(g, e, extra)
            if m:
                m.where = name
                return m
        return None
