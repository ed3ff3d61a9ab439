"""Tests of clipq_helpers.smoothquant."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from clipq_helpers.smoothquant import smooth_layernorm_linears, smooth_scales, weight_column_absmax


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_smooth_scales_hand_cases():
    act, w = t([4.0, 1.0]), t([1.0, 4.0])
    # alpha 0.5: sqrt(4)/sqrt(1) = 2, sqrt(1)/sqrt(4) = 0.5
    assert smooth_scales(act, w, 0.5).tolist() == pytest.approx([2.0, 0.5])
    # alpha 1: s = act; alpha 0: s = 1/w (the exponents are not swapped)
    assert smooth_scales(act, w, 1.0).tolist() == pytest.approx([4.0, 1.0])
    assert smooth_scales(act, w, 0.0).tolist() == pytest.approx([1.0, 0.25])
    # alpha 0.75: 16^0.75 / 1 = 8 with act 16
    assert smooth_scales(t([16.0]), t([1.0]), 0.75).tolist() == pytest.approx([8.0])


def test_smooth_scales_clamping():
    # act 0 -> 0 -> clamped to 1e-5; weight 0 is clamped to 1e-5 first: 1/sqrt(1e-5) = 316.2
    s = smooth_scales(t([0.0, 1.0]), t([1.0, 0.0]), 0.5)
    assert s.tolist() == pytest.approx([1e-5, 1e-5**-0.5])
    assert s.dtype == torch.float32


@given(st.floats(0.0, 1.0), st.integers(1, 16), st.integers(0, 1000))
def test_smoothing_balances_maxima(alpha, c, seed):
    gen = torch.Generator().manual_seed(seed)
    act = torch.rand(c, generator=gen) * 100 + 0.01
    w = torch.rand(c, generator=gen) + 0.01
    s = smooth_scales(act, w, alpha)
    # after smoothing: act/s = act^(1-alpha) w^(1-alpha), w*s = act^alpha w^alpha
    assert torch.allclose(act / s, (act * w) ** (1 - alpha), rtol=1e-4)
    assert torch.allclose(w * s, (act * w) ** alpha, rtol=1e-4)


@torch.no_grad()
def test_smooth_layernorm_linears_keeps_outputs():
    torch.manual_seed(0)
    c = 16
    ln = nn.LayerNorm(c)
    ln.weight.uniform_(0.5, 2.0)
    ln.bias.uniform_(-1.0, 1.0)
    ln.weight[3] = 30.0  # an outlier channel
    lins = [nn.Linear(c, 8), nn.Linear(c, 24), nn.Linear(c, c)]  # square: rows vs cols
    x = torch.randn(5, 7, c)
    before = [lin(ln(x)) for lin in lins]
    act_absmax = ln(x).abs().amax(dim=(0, 1))
    s = smooth_scales(act_absmax, weight_column_absmax(lins), 0.5)
    old_w = lins[0].weight.clone()
    smooth_layernorm_linears(ln, lins, s)
    after = [lin(ln(x)) for lin in lins]
    for a, b in zip(before, after, strict=True):
        assert (a - b).abs().max() < 1e-5
    # each input column j of W is multiplied by s[j] (columns, not rows)
    assert torch.allclose(lins[0].weight, old_w * s[None, :])
    # the outlier channel shrank
    assert ln(x).abs().amax(dim=(0, 1))[3] < act_absmax[3] / 2


def test_smooth_layernorm_linears_validates_before_changing():
    ln, good, bad = nn.LayerNorm(4), nn.Linear(4, 2), nn.Linear(3, 2)
    w_before, g_before = good.weight.clone(), ln.weight.clone()
    with pytest.raises(
        ValueError, match=r"linears\[1\].weight has shape \(2, 3\).*s has shape \(4,\)"
    ):
        smooth_layernorm_linears(ln, [good, bad], torch.full((4,), 2.0))
    assert torch.equal(good.weight, w_before) and torch.equal(ln.weight, g_before)
    with pytest.raises(ValueError, match=r"ln.weight has shape \(4,\) but s has shape \(5,\)"):
        smooth_layernorm_linears(ln, good, torch.ones(5))
    with pytest.raises(ValueError, match="s must be > 0"):
        smooth_layernorm_linears(ln, good, torch.zeros(4))
    with pytest.raises(ValueError, match="linears is empty"):
        smooth_layernorm_linears(ln, [], torch.ones(4))
    with pytest.raises(TypeError, match="LayerNorm-like"):
        smooth_layernorm_linears(nn.ReLU(), good, torch.ones(4))


def test_smooth_scales_bad_input():
    with pytest.raises(
        ValueError, match=r"act_absmax has shape \(2,\) but weight_absmax has shape \(3,\)"
    ):
        smooth_scales(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match=r"alpha must be in \[0.0, 1.0\]"):
        smooth_scales(torch.ones(2), torch.ones(2), 1.5)
    with pytest.raises(ValueError, match="act_absmax contains NaN/Inf"):
        smooth_scales(t([float("nan"), 1.0]), torch.ones(2))
    with pytest.raises(ValueError, match=">= 0"):
        smooth_scales(t([-1.0, 1.0]), torch.ones(2))
    with pytest.raises(TypeError, match="floating-point"):
        smooth_scales(torch.tensor([1, 2]), torch.ones(2))
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        smooth_scales([1.0], torch.ones(1))
    with pytest.raises(ValueError, match="empty"):
        smooth_scales(torch.ones(0), torch.ones(0))
