"""Tests of clipq_helpers.int8: exact int32 accumulation."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import clipq_helpers.int8 as int8mod
from clipq_helpers.int8 import int8_linear, int8_matmul
from clipq_helpers.quantize import (
    dequantize,
    quantize_per_channel,
    quantize_per_token,
    quantize_symmetric,
    symmetric_scale,
)


def codes(shape, seed, low=-127, high=128):
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, shape, generator=gen, dtype=torch.int8)


def test_int8_linear_hand_case():
    x_q = torch.tensor([[1, 2, 3]], dtype=torch.int8)
    w_q = torch.tensor([[1, 0, -1], [127, 127, 127]], dtype=torch.int8)
    # acc = [1 - 3, 127 * 6] = [-2, 762]; * 0.5 * [1, 2] + [10, 0] = [9, 762]
    out = int8_linear(x_q, 0.5, w_q, torch.tensor([1.0, 2.0]), torch.tensor([10.0, 0.0]))
    assert out.dtype == torch.float32
    assert out.tolist() == [[9.0, 762.0]]


@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), st.integers(0, 10**6))
def test_int8_matmul_exact(m, k, n, seed):
    a, b = codes((m, k), seed, -128), codes((k, n), seed + 1, -128)
    ref = a.to(torch.int64) @ b.to(torch.int64)
    out = int8_matmul(a, b)
    assert out.dtype == torch.int32
    assert torch.equal(out.to(torch.int64), ref)


def test_int32_accumulation_beyond_float32_precision(monkeypatch):
    # K = 2048 with all codes 127: acc = 2048 * 16129 = 33_032_192 > 2^24 (float32 is not exact)
    a = torch.full((17, 2048), 127, dtype=torch.int8)
    b = torch.full((2048, 8), 127, dtype=torch.int8)
    a[0, 0] = 126  # 33_032_192 - 127 is not representable in float32
    ref = a.to(torch.int64) @ b.to(torch.int64)
    assert torch.equal(int8_matmul(a, b).to(torch.int64), ref)
    monkeypatch.setattr(int8mod, "_use_int_mm", lambda a, b: False)  # the exact fallback
    assert torch.equal(int8_matmul(a, b).to(torch.int64), ref)


@pytest.mark.parametrize("lead", [(5,), (2, 3), (33,)])
def test_int8_linear_equals_fp64_reference(lead):
    k, n = 24, 40
    x_q, w_q = codes((*lead, k), 1), codes((n, k), 2)
    acc = x_q.double() @ w_q.double().T  # exact in float64
    # the int32 part is exact
    assert torch.equal(int8_linear(x_q, 1.0, w_q, 1.0).double(), acc)
    xs, ws, bias = 0.013, torch.rand(n) + 0.5, torch.randn(n)
    ref = acc * xs * ws.double() + bias.double()
    assert torch.allclose(int8_linear(x_q, xs, w_q, ws, bias).double(), ref, rtol=1e-6, atol=1e-5)


def test_int8_linear_matches_fake_quant_linear():
    torch.manual_seed(0)
    x, w, bias = torch.randn(4, 9, 32), torch.randn(16, 32), torch.randn(16)
    xs = symmetric_scale(x)
    x_q = quantize_symmetric(x, xs)
    w_q, ws = quantize_per_channel(w)
    fake = dequantize(x_q, xs) @ dequantize(w_q, ws[:, None]).T + bias
    assert torch.allclose(int8_linear(x_q, xs, w_q, ws, bias), fake, atol=1e-5)
    # per-token activation scales (..., 1)
    xq_t, xs_t = quantize_per_token(x)
    fake_t = dequantize(xq_t, xs_t) @ dequantize(w_q, ws[:, None]).T
    assert torch.allclose(int8_linear(xq_t, xs_t, w_q, ws), fake_t, atol=1e-5)


def test_int8_linear_bad_input():
    x_q, w_q = codes((2, 8), 0), codes((4, 8), 1)
    with pytest.raises(TypeError, match="x_q must be an int8 tensor"):
        int8_linear(x_q.float(), 1.0, w_q, 1.0)
    with pytest.raises(TypeError, match="w_q must be an int8 tensor"):
        int8_linear(x_q, 1.0, w_q.to(torch.int32), 1.0)
    with pytest.raises(ValueError, match=r"x_q has shape \(2, 7\) and w_q has shape \(4, 8\)"):
        int8_linear(codes((2, 7), 0), 1.0, w_q, 1.0)
    with pytest.raises(ValueError, match=r"w_scale has shape \(3,\)"):
        int8_linear(x_q, 1.0, w_q, torch.ones(3))
    with pytest.raises(ValueError, match=r"bias has shape \(5,\)"):
        int8_linear(x_q, 1.0, w_q, 1.0, torch.zeros(5))
    with pytest.raises(ValueError, match=r"x_scale has shape \(3, 1\)"):
        int8_linear(x_q, torch.ones(3, 1), w_q, 1.0)
    with pytest.raises(ValueError, match="x_scale must be > 0"):
        int8_linear(x_q, 0.0, w_q, 1.0)
    with pytest.raises(ValueError, match="bias contains NaN/Inf"):
        int8_linear(x_q, 1.0, w_q, 1.0, torch.full((4,), float("inf")))
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        int8_linear([[1]], 1.0, w_q, 1.0)
    with pytest.raises(ValueError, match="empty"):
        int8_linear(torch.zeros(0, 8, dtype=torch.int8), 1.0, w_q, 1.0)
