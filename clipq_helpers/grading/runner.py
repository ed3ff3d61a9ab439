"""Calling learner code safely: a worker thread with a time limit, and input-mutation checks.

A call that exceeds its time limit is abandoned, not stopped: Python cannot kill a thread,
so a truly infinite loop keeps running in the background until the kernel is restarted.
The grading message says so.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import fmt

__all__ = ["CallResult", "call_with_limit", "snapshot", "find_mutation", "learner_location"]

_GRADING_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass
class CallResult:
    """Outcome of one call: a value, an exception, or a timeout."""

    value: Any = None
    exc: BaseException | None = None
    timed_out: bool = False
    seconds: float = 0.0


def call_with_limit(fn: Callable, args: list, kwargs: dict, limit: float) -> CallResult:
    """Run ``fn(*args, **kwargs)`` in a daemon thread; give up after ``limit`` seconds."""
    out = CallResult()

    def target() -> None:
        t0 = time.perf_counter()
        try:
            out.value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - learner code may raise anything
            out.exc = e
        finally:
            out.seconds = time.perf_counter() - t0

    worker = threading.Thread(target=target, name="clipq-grading-call", daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        out.timed_out = True
        out.seconds = limit
    return out


# --------------------------------------------------------------------------- mutation


def _copy(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, list | tuple):
        return type(v)(_copy(x) for x in v)
    return v


def snapshot(values: dict[str, Any]) -> dict[str, Any]:
    """Deep copies of the tensors (also inside lists/tuples) of the named arguments."""
    return {name: _copy(v) for name, v in values.items()}


def _changed(before: Any, after: Any, name: str) -> str | None:
    if isinstance(before, torch.Tensor):
        if not isinstance(after, torch.Tensor):
            return f"`{name}` is no longer a tensor"
        if after.dtype != before.dtype or after.shape != before.shape:
            return (
                f"`{name}` changed from {fmt.dtype_name(before.dtype)} {fmt.shape(before.shape)} "
                f"to {fmt.dtype_name(after.dtype)} {fmt.shape(after.shape)}"
            )
        a = after.detach()
        same = (
            (a == before) | (torch.isnan(a) & torch.isnan(before))
            if a.is_floating_point()
            else a == before
        )
        if not bool(same.all()):
            flat = (~same).reshape(-1)
            i = int(torch.nonzero(flat)[0, 0])
            b0 = before.reshape(-1)[i].item()
            a0 = a.reshape(-1)[i].item()
            return (
                f"`{name}` was modified in place: {int(flat.sum())} of {flat.numel()} values changed, "
                f"e.g. element {i} (flattened) was {fmt.number(b0)}, now {fmt.number(a0)}"
            )
        return None
    if isinstance(before, list | tuple):
        if not isinstance(after, list | tuple) or len(after) != len(before):
            return f"`{name}` (a list) was changed in place"
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            msg = _changed(b, a, f"{name}[{i}]")
            if msg:
                return msg
    return None


def find_mutation(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """Text naming the first argument whose tensors changed, or None."""
    for name, b in before.items():
        msg = _changed(b, after[name], name)
        if msg:
            return msg
    return None


# --------------------------------------------------------------------------- tracebacks


def _is_library(filename: str) -> bool:
    f = os.path.abspath(filename)
    if f.startswith(_GRADING_DIR):
        return True
    parts = f.replace("\\", "/").split("/")
    return (
        "site-packages" in parts
        or "dist-packages" in parts
        or (len(parts) > 2 and parts[-2].startswith("python3") and "lib" in parts)
    )


def learner_location(exc: BaseException) -> str:
    """``in quantize_symmetric, line 4: `return x / s``` for the deepest learner frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if not _is_library(f.filename)]
    if not mine:
        return ""
    f = mine[-1]
    code = (f.line or "").strip()
    where = f"in {f.name}, line {f.lineno}"
    return f"{where}: `{code}`" if code else where
