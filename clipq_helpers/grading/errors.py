"""The exception a failing exercise raises, and the report a passing one returns."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ExerciseFailed", "Report"]


class ExerciseFailed(AssertionError):
    """An exercise did not pass its stored cases.

    The message names the exercise, the first failing case, what was expected, what came
    back and a hint. It is an ``AssertionError``, so pytest and nbval report it as a failure.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython (Jupyter) shows instead of a traceback: the message alone.

        The failure is in the learner's function, not in the grader, so frames of
        ``clipq_helpers`` would only push the message down. ``ename``/``evalue`` of the
        error output are unchanged (nbval and the batch grader read those).
        """
        first, *rest = str(self).splitlines() or [""]
        return [f"\x1b[1;31mExerciseFailed\x1b[0m: {first}", *rest]


@dataclass(frozen=True)
class Report:
    """Result of a passing :func:`~clipq_helpers.grading.check`.

    Its text (``str`` and ``repr``) is one deterministic line, e.g.
    ``ch03.quantize_symmetric: 11/11 cases pass``, so a grade cell ending with
    ``check(...)`` prints exactly that line.
    """

    exercise_id: str
    passed: int
    total: int

    @property
    def ok(self) -> bool:
        """True when every case passed (always true for a returned report)."""
        return self.passed == self.total

    def __str__(self) -> str:
        return f"{self.exercise_id}: {self.passed}/{self.total} cases pass"

    def __repr__(self) -> str:
        return str(self)
