"""``check(exercise_id, fn)``: grade a learner's function against the stored cases."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from . import fmt, registry, store
from .errors import ExerciseFailed, Report
from .registry import Exercise
from .runner import call_with_limit, find_mutation, learner_location, snapshot
from .specs import Mismatch

__all__ = ["check", "grade"]

_GENERIC_HINTS = {
    "none": "your function returned None: did you forget the `return` statement?",
    "type": "return a torch.Tensor (or a Python number where a single number is expected)",
    "arity": "return the values as one tuple, in the order of the contract",
    "not_integer": "round the zero point to an integer",
    "mutated": (
        "do not change the inputs: compute new tensors (y = x / scale, not x /= scale; "
        "x.abs(), not x.abs_()), or work on a copy (x = x.clone())"
    ),
    "exception": "read the error above: it comes from your code, at the line shown",
    "timeout": (
        "look for a loop that never ends, or a Python loop over every element (use "
        "tensor operations instead). Python cannot stop a running thread: the call keeps "
        "running in the background, so restart the kernel (Kernel > Restart Kernel) "
        "before running this cell again"
    ),
    "not_written": (
        "replace the `raise NotImplementedError(...)` line with your code, run that "
        "cell, then run this grade cell again"
    ),
}


def _hint(ex: Exercise, kind: str, case: dict, where: str = "") -> str:
    part = re.split(r"[.\[]", where, maxsplit=1)[0] if where else ""
    if kind == "value" and f"value@{part}" in ex.hints:  # e.g. "value@ln": about ln.weight/bias
        return ex.hints[f"value@{part}"]
    if kind == "value" and case.get("hint"):
        return case["hint"]
    if kind == "exception" and kind in ex.hints:
        return f"{_GENERIC_HINTS['exception']}. Tip: {ex.hints[kind]}"
    if kind in ex.hints:
        return ex.hints[kind]
    if kind in ("value", "nan", "dtype", "shape", "float_codes"):
        return ex.hint
    return _GENERIC_HINTS.get(kind, ex.hint)


def _call_text(ex: Exercise, arguments: dict[str, Any], kwargs: dict[str, Any]) -> list[str]:
    names = [p for p in ex.params if p in arguments]
    shown = {name: arguments[name] for name in names}
    inline = []
    for k, v in kwargs.items():
        if isinstance(v, bool | int | float | str) or v is None:
            inline.append(f"{k}={v!r}")
        else:
            inline.append(f"{k}={k}")
            shown[k] = v
    lines = [f"{ex.function}({', '.join(names + inline)})"]
    lines += [f"{name} = {_describe_arg(v)}" for name, v in shown.items()]
    return lines


def _describe_arg(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_describe_arg(x) for x in v) + "]"
    if isinstance(v, dict):  # e.g. a model config (ch01.clip_parameter_count)
        items = (
            f"{k!r}: {x!r}"
            if isinstance(x, bool | int | float | str)
            else f"{k!r}: {_describe_arg(x)}"
            for k, x in v.items()
        )
        return "{" + ", ".join(items) + "}"
    if hasattr(v, "weight") and not hasattr(v, "dtype"):  # a module
        w = v.weight
        return f"{type(v).__name__} with weight {fmt.describe(w, values=w.numel() <= 8)}"
    return fmt.describe(v)


def _message(
    ex: Exercise,
    k: int,
    n: int,
    case: dict,
    call: list[str],
    headline: str,
    body: list[tuple[str, str]],
    hint: str,
) -> str:
    lines = [f'{ex.id}: case {k} of {n} "{case["name"]}" failed: {headline}']
    lines.append(f"  call:     {call[0]}")
    lines += [f"            {line.strip()}" for line in call[1:]]
    for label, text in body:
        lines.append(f"  {label + ':':<9} {text}")
    lines.append(f"  hint:     {hint}")
    return "\n".join(lines)


def _mismatch_body(m: Mismatch) -> list[tuple[str, str]]:
    sfx = f" {m.where}" if m.where else ""
    body = [(f"expected{sfx}", m.expected), (f"got{sfx}", m.got)]
    if len(f"expected{sfx}") > 8:  # keep the columns aligned for long part names
        body = [("expected", f"({m.where}) {m.expected}"), ("got", f"({m.where}) {m.got}")]
    body += [("detail", d) for d in m.details]
    return body


def _grade_case(
    ex: Exercise, fn: Callable, case: dict, tensors: dict, k: int, n: int, limit: float
) -> str | None:
    """None if the case passes, else the failure message."""
    arguments = {name: store.decode(v, tensors) for name, v in case["args"].items()}
    stored_kwargs = case.get("kwargs", {})
    order = sorted(stored_kwargs, key=lambda k_: ex.signature.find(f"{k_}="))  # signature order
    kwargs = {name: store.decode(stored_kwargs[name], tensors) for name in order}
    call = _call_text(ex, arguments, kwargs)
    expected = store.decode(case["expected"], tensors)
    extra = case.get("extra", {})

    frozen = snapshot({k_: v for k_, v in {**arguments, **kwargs}.items() if k_ not in ex.mutates})
    positional = [arguments[p] for p in ex.params if p in arguments]
    res = call_with_limit(fn, positional, kwargs, limit)

    def fail(kind: str, headline: str, body: list[tuple[str, str]], where: str = "") -> str:
        return _message(ex, k, n, case, call, headline, body, _hint(ex, kind, case, where))

    if res.timed_out:
        return fail("timeout", f"{ex.function} did not return within {fmt.number(limit)} s", [])
    if res.exc is not None:
        e = res.exc
        text = str(e).strip().splitlines()
        text = text[0][:300] if text else ""
        where = learner_location(e)
        if isinstance(e, NotImplementedError):
            head = f"not written yet: {ex.function} raised NotImplementedError"
            body = [("detail", text)] if text else []
            return fail("not_written", head, body)
        head = (
            f"{ex.function} raised {type(e).__name__}: {text}"
            if text
            else f"{ex.function} raised {type(e).__name__}"
        )
        body = [("where", where)] if where else []
        if isinstance(e, TypeError) and not where:
            body.append(("detail", f"check that your function accepts {ex.signature}"))
        return fail("exception", head, body)
    changed = find_mutation(frozen, {**arguments, **kwargs})
    if changed:
        return fail("mutated", f"{ex.function} modified its input in place", [("detail", changed)])
    got = ex.result_of(arguments, res.value)
    m = ex.output.compare(got, expected, extra)
    if m is None:
        return None
    head = f"{m.where}: {m.headline}" if m.where else m.headline
    return fail(m.kind, head, _mismatch_body(m), m.where)


def grade(exercise_id: str, fn: Any, time_limit: float | None = None) -> Report | str:
    """Grade ``fn``: a :class:`Report` if every case passes, else the failure message."""
    ex = registry.get(exercise_id)
    if not callable(fn):
        return (
            f"{ex.id}: expected your function {ex.function}, got {fmt.describe(fn)}\n"
            f'  hint:     pass the function itself: check("{ex.id}", {ex.function}); if you '
            f"reused the name {ex.function} for a value, run the cell that defines the function again"
        )
    meta, tensors = store.load(ex.id)
    cases = meta["cases"]
    limit = float(time_limit if time_limit is not None else ex.time_limit)
    for k, case in enumerate(cases, start=1):
        try:
            msg = _grade_case(ex, fn, case, tensors, k, len(cases), limit)
        except Exception as e:  # noqa: BLE001 - a strange returned value must not crash grading
            msg = (
                f'{ex.id}: case {k} of {len(cases)} "{case["name"]}" failed: the result could '
                f"not be compared ({type(e).__name__}: {str(e)[:200]})\n"
                f"  hint:     {_GENERIC_HINTS['type']}"
            )
        if msg is not None:
            return msg
    return Report(ex.id, len(cases), len(cases))


def check(exercise_id: str, fn: Callable, *, time_limit: float | None = None) -> Report:
    """Run ``fn`` on the stored cases of ``exercise_id`` and compare with the reference.

    Args:
        exercise_id: e.g. ``"ch03.quantize_symmetric"`` (see ``registry.ids()``).
        fn: the learner's function, called as in the exercise contract.
        time_limit: seconds allowed per call (default: the exercise's own limit).
    Returns:
        a :class:`Report` whose text is one line, e.g. ``ch03.quantize_symmetric: 11/11 cases pass``.
    Raises:
        ExerciseFailed: naming the first failing case, expected vs got, and a hint.
        ValueError: for an unknown exercise id.
    """
    __tracebackhide__ = True  # IPython and pytest hide this frame: learners see only their cell
    if not isinstance(exercise_id, str) or exercise_id not in registry.EXERCISES:
        raise ValueError(
            f"unknown exercise id {exercise_id!r}; known ids: {', '.join(registry.ids())}"
        ) from None
    result = grade(exercise_id, fn, time_limit)
    if isinstance(result, str):
        # Your function did not pass: the message below names the case, expected vs got, a hint.
        raise ExerciseFailed(result) from None
    return result
