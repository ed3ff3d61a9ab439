"""Build the stored grading data from the reference implementation (build time only).

``check()`` never imports this module: grading reads the stored files. The build runs the
reference functions of ``clipq_helpers`` on the case inputs of :mod:`.cases` and stores
inputs, expected outputs and extras. :func:`drift` recomputes the references on the stored
inputs and reports any difference (used by the tests and ``--check``).
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any

import torch

from . import registry, store
from .cases import CASES, Case, mse_margin
from .specs import Codes, FloatTensor, IntScalar, Scalar, Spec, StateOf, TupleOf

__all__ = ["REFERENCE", "reference", "build", "write_all", "drift"]

REFERENCE: dict[str, str] = {
    "ch01.patchify": "clipq_helpers.patches:patchify",
    "ch01.clip_parameter_count": "clipq_helpers.figures:clip_parameter_count",
    "ch02.clip_logits": "clipq_helpers.contrastive:clip_logits",
    "ch02.clip_loss": "clipq_helpers.contrastive:clip_loss",
    "ch03.symmetric_scale": "clipq_helpers.quantize:symmetric_scale",
    "ch03.quantize_symmetric": "clipq_helpers.quantize:quantize_symmetric",
    "ch03.dequantize": "clipq_helpers.quantize:dequantize",
    "ch03.asymmetric_params": "clipq_helpers.quantize:asymmetric_params",
    "ch03.quantize_asymmetric": "clipq_helpers.quantize:quantize_asymmetric",
    "ch03.sqnr_db": "clipq_helpers.quantize:sqnr_db",
    "ch04.outlier_ratio": "clipq_helpers.outlier_math:outlier_ratio",
    "ch04.levels_used": "clipq_helpers.outlier_math:levels_used",
    "ch05.percentile_absmax": "clipq_helpers.calibrate:percentile_absmax",
    "ch05.mse_best_clip": "clipq_helpers.calibrate:mse_best_clip",
    "ch05.kl_threshold": "clipq_helpers.calibrate:kl_threshold",
    "ch06.quantize_per_channel": "clipq_helpers.quantize:quantize_per_channel",
    "ch06.quantize_per_token": "clipq_helpers.quantize:quantize_per_token",
    "ch07.smooth_scales": "clipq_helpers.smoothquant:smooth_scales",
    "ch07.smooth_layernorm_linears": "clipq_helpers.smoothquant:smooth_layernorm_linears",
    "ch08.int8_linear": "clipq_helpers.int8:int8_linear",
}

_MSE_MIN_MARGIN = 5e-4  # best clip's MSE must beat the runner-up by 0.05 %
_TIE_MARGIN = 0.01  # zero points must not sit on a rounding tie


def reference(exercise_id: str) -> Any:
    """The reference function of an exercise (imported lazily)."""
    mod, name = REFERENCE[exercise_id].split(":")
    return getattr(importlib.import_module(mod), name)


def _canonical(spec: Spec, value: Any) -> Any:
    """The reference result as stored: tensors detached, single numbers as Python numbers."""
    if isinstance(spec, Codes | FloatTensor):
        return value.detach().clone().contiguous()
    if isinstance(spec, IntScalar):
        return int(value)
    if isinstance(spec, Scalar):  # also Threshold
        return float(value)
    if isinstance(spec, TupleOf):
        return tuple(_canonical(s, v) for s, v in zip(spec.items, value, strict=True))
    if isinstance(spec, StateOf):
        return {k: _canonical(spec.item, v) for k, v in value.items()}
    raise TypeError(f"no canonical form for {type(spec).__name__}")


def _extra(exercise_id: str, case: Case, expected: Any) -> dict:
    if exercise_id != "ch05.kl_threshold":
        return {}
    edges = case.args["bin_edges"].to(torch.float64)
    i = int(torch.argmin((edges - expected).abs()))
    lo, hi = max(i - 1, 0), min(i + 1, edges.numel() - 1)
    return {"accept": [float(edges[lo]), float(edges[hi])], "bin": i}


def _sanity(exercise_id: str, case: Case, expected: Any) -> None:
    """Refuse cases whose answer a correct float32 implementation could get differently."""
    if exercise_id == "ch05.mse_best_clip":
        margin = mse_margin(case.args["x"], **case.kwargs)
        if margin < _MSE_MIN_MARGIN:
            raise ValueError(
                f"{exercise_id} {case.name!r}: best clip not clear (margin {margin:.2e})"
            )
    if exercise_id in (
        "ch03.quantize_symmetric",
        "ch03.quantize_asymmetric",
        "ch06.quantize_per_channel",
        "ch06.quantize_per_token",
        "ch04.levels_used",
    ):
        x = case.args.get("x", case.args.get("w"))
        if exercise_id == "ch06.quantize_per_token":
            scale = expected[1]  # (..., 1): broadcasts against x
        elif exercise_id == "ch06.quantize_per_channel":
            axis = case.kwargs.get("axis", 0) % x.dim()
            shape = [1] * x.dim()
            shape[axis] = -1
            scale = expected[1].reshape(shape)
        else:
            scale = torch.as_tensor(case.args["scale"], dtype=torch.float32)
        power_of_two = all(math.frexp(float(v))[0] == 0.5 for v in scale.reshape(-1))
        r = x.to(torch.float64) / scale.to(torch.float64)
        near = ((r - r.floor()) - 0.5).abs() < _TIE_MARGIN
        if not power_of_two and bool(near.any()):
            raise ValueError(f"{exercise_id} {case.name!r}: x / scale sits near a rounding tie")
    if exercise_id == "ch03.asymmetric_params":
        x = case.args["x"]
        bits = case.kwargs.get("bits", 8)
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        if hi > lo:
            r = -lo / ((hi - lo) / (2**bits - 1))
            if abs(r - math.floor(r) - 0.5) < _TIE_MARGIN:
                raise ValueError(f"{exercise_id} {case.name!r}: zero point near a tie ({r})")


def build(exercise_id: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(metadata, tensors) of an exercise, computed from the reference implementation."""
    ex = registry.get(exercise_id)
    ref = reference(exercise_id)
    enc = store.Encoder()
    cases = []
    for k, case in enumerate(CASES[exercise_id]()):
        if list(case.args) != list(ex.params)[: len(case.args)]:
            raise ValueError(
                f"{exercise_id} {case.name!r}: arguments {list(case.args)} != {ex.params}"
            )
        args_json = {n: enc.encode(v, f"c{k}.{n}") for n, v in case.args.items()}
        kwargs_json = {n: enc.encode(v, f"c{k}.{n}") for n, v in case.kwargs.items()}
        # run the reference on exactly what learners will get: the decoded stored values
        args = {n: store.decode(v, enc.tensors) for n, v in args_json.items()}
        kwargs = {n: store.decode(v, enc.tensors) for n, v in kwargs_json.items()}
        returned = ref(*(args[p] for p in ex.params if p in args), **kwargs)
        expected = _canonical(ex.output, ex.result_of(args, returned))
        _sanity(exercise_id, case, expected)
        entry = {
            "name": case.name,
            "args": args_json,
            "kwargs": kwargs_json,
            "expected": enc.encode(expected, f"c{k}.expected"),
        }
        if case.hint:
            entry["hint"] = case.hint
        extra = _extra(exercise_id, case, expected)
        if extra:
            entry["extra"] = extra
        cases.append(entry)
    names = [c["name"] for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"{exercise_id}: case names must be unique")
    meta = {
        "exercise": exercise_id,
        "format": store.FORMAT,
        "function": ex.function,
        "signature": ex.signature,
        "cases": cases,
    }
    return meta, enc.tensors


def write_all(ids: list[str] | None = None, data_dir: Path | None = None) -> list[Path]:
    """Build and write the data files of the given (default: all) exercises."""
    written = []
    for eid in ids or registry.ids():
        meta, tensors = build(eid)
        written += store.write(eid, meta, tensors, data_dir)
    return written


def _close(a: torch.Tensor, b: torch.Tensor, exact: bool) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if exact or not a.is_floating_point():
        return torch.equal(a, b)
    return bool(
        torch.allclose(
            a.to(torch.float64), b.to(torch.float64), rtol=1e-6, atol=1e-7, equal_nan=True
        )
    )


def drift(exercise_id: str, data_dir: Path | None = None) -> list[str]:
    """Differences between the stored data and a fresh build; empty when in sync.

    The expected outputs are recomputed with the reference on the *stored* inputs (integer
    results exactly, floats within 1e-6 relative, so a different CPU's float rounding is not
    drift); the inputs, names and hints are compared with a fresh build of the cases.
    """
    problems: list[str] = []
    try:
        stored_meta, stored_t = store.load(exercise_id, data_dir)
    except FileNotFoundError:
        return [f"{exercise_id}: no stored data; run tools/build_grading_refs.py"]
    meta, tensors = build(exercise_id)

    def strip(m: dict) -> dict:
        return {
            **m,
            "cases": [
                {k: v for k, v in c.items() if k not in ("expected", "extra")} for c in m["cases"]
            ],
        }

    if strip(stored_meta) != strip(meta):
        problems.append(f"{exercise_id}: case list, names, hints or arguments differ")
    for key in sorted(set(tensors) | set(stored_t)):
        if key not in tensors or key not in stored_t:
            problems.append(f"{exercise_id}: tensor {key} only in one of stored/fresh")
        elif not _close(stored_t[key], tensors[key], exact=False):  # RNG floats: ulp-tolerant
            problems.append(f"{exercise_id}: tensor {key} differs")
    ex = registry.get(exercise_id)
    ref = reference(exercise_id)
    for case in stored_meta["cases"]:
        args = {n: store.decode(v, stored_t) for n, v in case["args"].items()}
        kwargs = {n: store.decode(v, stored_t) for n, v in case["kwargs"].items()}
        returned = ref(*(args[p] for p in ex.params if p in args), **kwargs)
        fresh = _canonical(ex.output, ex.result_of(args, returned))
        stored = store.decode(case["expected"], stored_t)
        if not _same(fresh, stored):
            problems.append(f"{exercise_id}: case {case['name']!r}: reference output changed")
    return problems


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and _close(a, b, exact=False)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return (math.isinf(a) and a == b) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b
