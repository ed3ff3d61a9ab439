"""Tests of clipq_helpers.patches.patchify."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from clipq_helpers.patches import patchify


def test_patchify_hand_case():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    p = patchify(x, 2)
    assert p.shape == (1, 4, 8)
    # patch 0 (top-left): channel 0 rows 0-1 cols 0-1 = 0,1,4,5; channel 1 = +16
    assert p[0, 0].tolist() == [0, 1, 4, 5, 16, 17, 20, 21]
    # patch 1 is top-right (row-major over the grid), patch 2 bottom-left
    assert p[0, 1].tolist() == [2, 3, 6, 7, 18, 19, 22, 23]
    assert p[0, 2].tolist() == [8, 9, 12, 13, 24, 25, 28, 29]


@given(
    st.integers(1, 2), st.integers(1, 3), st.sampled_from([1, 2, 4]),
    st.integers(1, 3), st.integers(1, 3), st.integers(0, 100),
)  # fmt: skip
def test_patchify_equals_conv2d_patch_embedding(b, c, p, gh, gw, seed):
    torch.manual_seed(seed)
    d = 5
    conv = nn.Conv2d(c, d, kernel_size=p, stride=p)
    x = torch.randn(b, c, gh * p, gw * p)
    with torch.no_grad():
        expected = conv(x).flatten(2).transpose(1, 2)  # (B, N, D)
        got = patchify(x, p) @ conv.weight.reshape(d, -1).T + conv.bias
    assert got.shape == (b, gh * gw, d)
    assert torch.allclose(got, expected, atol=1e-5)


def test_patchify_vit_b16_shape_and_input_untouched():
    x = torch.randn(2, 3, 224, 224)
    before = x.clone()
    assert patchify(x, 16).shape == (2, 196, 768)
    assert torch.equal(x, before)


def test_patchify_bad_input():
    with pytest.raises(ValueError, match="H x W = 5 x 4 is not divisible by patch = 2"):
        patchify(torch.zeros(1, 1, 5, 4), 2)
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 1, 4, 6), 4)
    with pytest.raises(ValueError, match=r"4-D \(B, C, H, W\), got shape \(3, 4, 4\)"):
        patchify(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError, match="patch must be a positive int"):
        patchify(torch.zeros(1, 1, 4, 4), 0)
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        patchify([[[[1.0]]]], 1)
    with pytest.raises(ValueError, match="images contains NaN/Inf"):
        patchify(torch.full((1, 1, 2, 2), float("nan")), 1)
    with pytest.raises(ValueError, match="empty"):
        patchify(torch.zeros(0, 1, 2, 2), 1)
