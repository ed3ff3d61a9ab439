"""Shared pytest configuration: a deterministic hypothesis profile for the whole suite.

``derandomize=True`` makes every property test draw the same examples on every run (CI is
reproducible); ``max_examples`` stays modest so the suite is fast on a 2-core laptop.
Set ``HYPOTHESIS_PROFILE=thorough`` for a longer local search.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "clipq",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    derandomize=False,
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "clipq"))
