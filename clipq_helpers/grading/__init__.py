"""Grading of the course's exercises.

``check(exercise_id, fn)`` runs a learner's function on stored cases and compares it with
stored reference outputs; it returns a one-line :class:`Report` or raises
:class:`ExerciseFailed` (an ``AssertionError``) naming the first failing case.

    >>> from clipq_helpers.grading import check
    >>> check("ch03.quantize_symmetric", quantize_symmetric)   # doctest: +SKIP
    ch03.quantize_symmetric: 11/11 cases pass
"""

from .check import check
from .errors import ExerciseFailed, Report
from .registry import EXERCISES, ids

__all__ = ["check", "ExerciseFailed", "Report", "EXERCISES", "ids"]
