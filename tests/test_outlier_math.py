"""Tests of clipq_helpers.outlier_math: outlier ratio, levels used, outlier channels, split SQNR."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clipq_helpers.outlier_math import (
    channel_absmax,
    levels_used,
    outlier_channels,
    outlier_ratio,
    split_sqnr,
)
from clipq_helpers.quantize import quantize_symmetric, symmetric_scale


def _planted(shape=(200, 32), channel=5, factor=40.0, seed=0) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    x[..., channel] *= factor
    return x


# --------------------------------------------------------------------------- channel_absmax


def test_channel_absmax_reduces_every_dim_but_the_last():
    x = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(1))
    want = torch.stack([x[..., c].abs().max() for c in range(7)])
    assert torch.equal(channel_absmax(x), want)
    v = torch.tensor([1.0, -2.0, 0.5])
    assert torch.equal(channel_absmax(v), v.abs())


# --------------------------------------------------------------------------- outlier_ratio


def _numpy_ratio(x: torch.Tensor) -> float:
    m = np.sort(np.abs(x.double().numpy()).reshape(-1, x.shape[-1]).max(axis=0))
    med = m[(len(m) - 1) // 2]
    return 1.0 if m[-1] == 0 else (math.inf if med == 0 else float(m[-1] / med))


def test_outlier_ratio_uses_the_lower_median():
    m = torch.tensor([1.0, 2.0, 3.0, 40.0])
    assert outlier_ratio(m) == 40.0 / 2.0  # the lower middle value, as torch.median
    assert outlier_ratio(m) != pytest.approx(40.0 / float(np.median(m.numpy())))


def test_outlier_ratio_edge_cases():
    assert outlier_ratio(torch.zeros(4, 3)) == 1.0
    assert outlier_ratio(torch.full((4, 3), -2.0)) == 1.0
    assert outlier_ratio(torch.tensor([[0.0, 0.0, 0.0, 1.0, 2.0]])) == math.inf
    assert isinstance(outlier_ratio(torch.randn(4, 4)), float)


def test_outlier_ratio_finds_a_planted_channel():
    base = outlier_ratio(_planted(factor=1.0))
    assert outlier_ratio(_planted(factor=40.0)) > 10 * base


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 12),
    st.integers(0, 2**31 - 1),
    st.floats(0.01, 100.0),
)
def test_outlier_ratio_matches_numpy_and_is_scale_free(rows, cols, seed, k):
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    r = outlier_ratio(x)
    assert r == pytest.approx(_numpy_ratio(x), rel=1e-6)
    assert r >= 1.0
    assert outlier_ratio(-k * x) == pytest.approx(r, rel=1e-5)  # sign and scale do not matter
    perm = torch.randperm(cols, generator=torch.Generator().manual_seed(seed))
    assert outlier_ratio(x[:, perm]) == pytest.approx(r, rel=1e-9)


@pytest.mark.parametrize(
    "bad, err",
    [([1.0, 2.0], TypeError), (torch.tensor([1, 2]), TypeError), (torch.empty(0), ValueError)],
)
def test_outlier_ratio_rejects_bad_input(bad, err):
    with pytest.raises(err):
        outlier_ratio(bad)


# --------------------------------------------------------------------------- levels_used


def _loop_levels(x, scale, bits=8):
    q = quantize_symmetric(x, scale, bits).reshape(-1, x.shape[-1])
    return torch.tensor([len(set(q[:, c].tolist())) for c in range(q.shape[1])])


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 40),
    st.integers(1, 6),
    st.sampled_from([2, 4, 6, 8]),
    st.integers(0, 2**31 - 1),
    st.floats(0.2, 3.0),
)
def test_levels_used_matches_a_loop_and_stays_in_range(rows, cols, bits, seed, shrink):
    x = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed))
    scale = symmetric_scale(x, bits) * shrink  # shrink < 1 clips
    got = levels_used(x, scale, bits)
    assert got.dtype == torch.int64 and got.shape == (cols,)
    assert torch.equal(got, _loop_levels(x, scale, bits))
    assert bool((got >= 1).all()) and bool((got <= min(rows, 2**bits - 1)).all())


def test_levels_used_outlier_channel_starves_the_others():
    x = _planted(shape=(2000, 32), channel=5, factor=40.0)
    per_tensor = levels_used(x, symmetric_scale(x))
    others = torch.cat([per_tensor[:5], per_tensor[6:]])
    assert int(per_tensor[5]) > 4 * int(others.max())
    own = levels_used(x, channel_absmax(x) / 127)  # per-channel scales: all spread wide
    assert int(own.min()) > 2 * int(others.max())


def test_levels_used_shapes_and_bits():
    assert torch.equal(levels_used(torch.tensor([0.5, -1.0, 2.0]), 0.1), torch.ones(3).long())
    x = torch.arange(-10.0, 11.0).reshape(-1, 1)
    assert int(levels_used(x, 1.0, bits=4)) == 2**4 - 1  # clamped to [-7, 7]
    assert int(levels_used(x, 1.0, bits=8)) == x.numel()
    x3 = torch.randn(2, 7, 3, generator=torch.Generator().manual_seed(3))
    assert torch.equal(levels_used(x3, 0.05), levels_used(x3.reshape(-1, 3), 0.05))


def test_levels_used_rejects_bad_input():
    with pytest.raises(ValueError):
        levels_used(torch.randn(4, 3), 0.0)
    with pytest.raises(ValueError):
        levels_used(torch.randn(4, 3), torch.ones(4) * 0.1)  # (4,) does not match C = 3
    with pytest.raises(ValueError):
        levels_used(torch.randn(4, 3), 0.1, bits=1)


# --------------------------------------------------------------------------- outlier channels, SQNR


def test_outlier_channels_are_sorted_by_size():
    x = _planted(channel=5, factor=40.0)
    x[:, 9] *= 20.0
    assert outlier_channels(x).tolist() == [5, 9]
    assert outlier_channels(_planted(factor=1.0)).tolist() == []
    with pytest.raises(ValueError):
        outlier_channels(x, factor=0)


def test_split_sqnr_without_outliers_changes_nothing():
    x = _planted(factor=1.0)
    r = split_sqnr(x, [])
    assert r["all"] == r["rest_shared"] == r["rest_own"] == r["split"]
    assert r["inflation"] == 1.0


def test_split_sqnr_measures_the_cost_of_one_shared_scale():
    x = _planted(channel=5, factor=40.0)
    r = split_sqnr(x, [5])
    assert r["scale_all"] == pytest.approx(float(x.abs().max()) / 127)
    assert r["inflation"] > 10
    # noise power grows with the square of the step: about 20 log10(inflation) dB lost
    lost = r["rest_own"] - r["rest_shared"]
    assert lost == pytest.approx(20 * math.log10(r["inflation"]), abs=3.0)
    assert r["split"] > r["all"]
    with pytest.raises(ValueError):
        split_sqnr(x, [32])
    with pytest.raises(ValueError):
        split_sqnr(x[:, :1], [0])
