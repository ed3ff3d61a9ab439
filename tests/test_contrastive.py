"""Tests of clipq_helpers.contrastive."""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from clipq_helpers.contrastive import clip_logits, clip_loss


def t(values):
    return torch.tensor(values, dtype=torch.float32)


def test_clip_logits_hand_case():
    img = t([[3.0, 0.0], [1.0, 1.0]])
    txt = t([[0.0, 2.0], [5.0, 0.0]])
    # normalised: img [[1, 0], [1/sqrt2, 1/sqrt2]], txt [[0, 1], [1, 0]]
    # logit_scale is the LOG scale: exp(log 2) = 2
    out = clip_logits(img, txt, math.log(2.0))
    s = 2 / math.sqrt(2)
    assert out.tolist() == [pytest.approx([0.0, 2.0]), pytest.approx([s, s])]
    # a 0-d tensor works the same; exp(0) = 1
    assert torch.allclose(clip_logits(img, txt, torch.tensor(0.0)), out / 2)


def test_clip_logits_init_temperature():
    # CLIP's init log(1/0.07) = 2.6592: identical directions give 1/0.07 = 14.29
    e = t([[1.0, 2.0, 2.0]])
    assert float(clip_logits(e, 2 * e, math.log(1 / 0.07))) == pytest.approx(1 / 0.07, rel=1e-6)


def test_clip_logits_gradients_flow():
    img = torch.randn(3, 4, requires_grad=True)
    scale = torch.tensor(1.0, requires_grad=True)
    clip_loss(clip_logits(img, torch.randn(3, 4), scale)).backward()
    assert img.grad is not None and scale.grad is not None


def test_clip_loss_hand_cases():
    # all-equal logits: every softmax is uniform -> loss = log N
    assert float(clip_loss(torch.zeros(4, 4))) == pytest.approx(math.log(4))
    # [[2, 0], [1, 0]]: rows: log(1 + e^-2), log(1 + e^1); columns: [2, 1] -> log(1 + e^-1),
    # [0, 0] -> log 2. Loss = (mean rows + mean cols) / 2 (rows only would differ)
    rows = (math.log(1 + math.exp(-2)) + math.log(1 + math.e)) / 2
    cols = (math.log(1 + math.exp(-1)) + math.log(2)) / 2
    assert float(clip_loss(t([[2.0, 0.0], [1.0, 0.0]]))) == pytest.approx((rows + cols) / 2)


@given(st.integers(1, 6), st.integers(0, 1000))
def test_clip_loss_symmetric_under_transpose(n, seed):
    logits = torch.randn(n, n, generator=torch.Generator().manual_seed(seed)) * 5
    assert float(clip_loss(logits)) == pytest.approx(float(clip_loss(logits.T)), rel=1e-5)
    assert float(clip_loss(logits)) >= 0


def test_bad_input():
    with pytest.raises(
        ValueError, match=r"img_emb has shape \(2, 3\) but txt_emb has shape \(2, 4\)"
    ):
        clip_logits(torch.randn(2, 3), torch.randn(2, 4), 0.0)
    with pytest.raises(ValueError, match="must be 2-D"):
        clip_logits(torch.randn(3), torch.randn(2, 3), 0.0)
    with pytest.raises(ValueError, match="img_emb contains NaN/Inf"):
        clip_logits(t([[float("nan"), 1.0]]), t([[1.0, 1.0]]), 0.0)
    with pytest.raises(ValueError, match="logit_scale contains NaN/Inf"):
        clip_logits(t([[1.0, 1.0]]), t([[1.0, 1.0]]), float("inf"))
    with pytest.raises(TypeError, match="txt_emb must be a floating-point tensor"):
        clip_logits(t([[1.0, 1.0]]), torch.tensor([[1, 1]]), 0.0)
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        clip_logits([[1.0]], t([[1.0]]), 0.0)
    with pytest.raises(ValueError, match="logit_scale must be a single number"):
        clip_logits(t([[1.0]]), t([[1.0]]), torch.ones(2))
    with pytest.raises(ValueError, match=r"square \(N, N\).*got shape \(2, 3\)"):
        clip_loss(torch.randn(2, 3))
    with pytest.raises(ValueError, match="empty"):
        clip_loss(torch.zeros(0, 0))
