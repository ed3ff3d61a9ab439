"""Tests of clipq_helpers.quantize: hand-computed cases, properties, conventions, bad input."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from clipq_helpers.quantize import (
    asymmetric_params,
    dequantize,
    dequantize_per_group,
    fake_quant_asymmetric,
    fake_quant_symmetric,
    int_dtype,
    qrange,
    quantize_asymmetric,
    quantize_per_channel,
    quantize_per_group,
    quantize_per_token,
    quantize_symmetric,
    sqnr_db,
    symmetric_scale,
)

# ----------------------------------------------------------------------------- strategies

FLOATS = st.floats(
    min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32,
    allow_subnormal=False,
)  # fmt: skip
BITS = st.integers(min_value=2, max_value=16)


def float_tensors(min_dims=1, max_dims=3, max_side=8):
    shapes = st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims)
    return shapes.flatmap(lambda s: arrays(np.float32, tuple(s), elements=FLOATS)).map(
        torch.from_numpy
    )


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# ----------------------------------------------------------------------------- ranges, dtypes


def test_qrange_narrow_signed_and_unsigned():
    assert qrange(8, signed=True) == (-127, 127)  # narrow: not -128
    assert qrange(4, signed=True) == (-7, 7)
    assert qrange(2, signed=True) == (-1, 1)
    assert qrange(8, signed=False) == (0, 255)
    assert qrange(16, signed=False) == (0, 65535)


def test_int_dtype_smallest_fitting():
    assert int_dtype(8, True) == torch.int8
    assert int_dtype(4, True) == torch.int8
    assert int_dtype(9, True) == torch.int16
    assert int_dtype(16, True) == torch.int16
    assert int_dtype(8, False) == torch.uint8
    assert int_dtype(12, False) == torch.int16
    assert int_dtype(16, False) == torch.int32


# ----------------------------------------------------------------------------- symmetric


def test_symmetric_scale_hand_case():
    # max|x| = 2.54; 2.54 / 127 = 0.02
    s = symmetric_scale(t([-1.0, 0.5, 2.54]))
    assert s.dtype == torch.float32 and s.dim() == 0
    assert float(s) == pytest.approx(0.02, rel=1e-6)
    # 4 bits: 2.54 / 7
    assert float(symmetric_scale(t([-1.0, 0.5, 2.54]), bits=4)) == pytest.approx(2.54 / 7, rel=1e-6)
    # negative max wins: max|x| = 12.7 -> 0.1
    assert float(symmetric_scale(t([-12.7, 1.0]))) == pytest.approx(0.1, rel=1e-6)


def test_symmetric_scale_all_zero_is_one():
    assert float(symmetric_scale(torch.zeros(5))) == 1.0


def test_quantize_symmetric_hand_case():
    # -1/0.02 = -50, 0.5/0.02 = 25, 2.54/0.02 = 127
    q = quantize_symmetric(t([-1.0, 0.5, 2.54]), 0.02)
    assert q.dtype == torch.int8
    assert q.tolist() == [-50, 25, 127]


def test_quantize_symmetric_rounds_half_to_even():
    # torch.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (floor would give 0, 1, 2; half-up 1, 2, 3)
    q = quantize_symmetric(t([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.4, 0.6]), 1.0)
    assert q.tolist() == [0, 2, 2, 0, -2, -2, 0, 1]


def test_quantize_symmetric_clamps_to_narrow_range():
    assert quantize_symmetric(t([-1000.0, 1000.0]), 1.0).tolist() == [-127, 127]
    assert quantize_symmetric(t([-1000.0, 1000.0]), 1.0, bits=4).tolist() == [-7, 7]
    q16 = quantize_symmetric(t([-1e6, 1e6]), 1.0, bits=16)
    assert q16.dtype == torch.int16 and q16.tolist() == [-32767, 32767]


def test_quantize_symmetric_accepts_float_and_0d_tensor_scale():
    x = t([-1.0, 0.5, 2.54])
    assert torch.equal(quantize_symmetric(x, 0.02), quantize_symmetric(x, torch.tensor(0.02)))


def test_quantize_symmetric_broadcast_scale():
    # row 0 scale 1, row 1 scale 0.5
    q = quantize_symmetric(t([[1.0, 2.0], [1.0, 2.0]]), t([[1.0], [0.5]]))
    assert q.tolist() == [[1, 2], [2, 4]]


def test_quantize_does_not_modify_input():
    x = t([-1.0, 0.5, 2.54])
    before = x.clone()
    quantize_symmetric(x, 0.02)
    quantize_asymmetric(x, 0.02, 10)
    quantize_per_channel(x.reshape(1, 3))
    fake_quant_symmetric(x, 0.02)
    assert torch.equal(x, before)


@given(float_tensors(), st.integers(2, 16))
def test_symmetric_roundtrip_error_within_half_scale(x, bits):
    s = symmetric_scale(x, bits)
    q = quantize_symmetric(x, s, bits)
    qmin, qmax = qrange(bits)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    x_hat = dequantize(q, s)
    assert x_hat.dtype == torch.float32
    err = (x - x_hat).abs()
    assert bool((err <= float(s) * (0.5 + 2e-4)).all())


@given(float_tensors(), st.floats(1e-3, 10.0), st.integers(2, 8))
def test_codes_inside_range_for_any_scale(x, scale, bits):
    q = quantize_symmetric(x, scale, bits)
    qmin, qmax = qrange(bits)
    assert q.dtype == int_dtype(bits)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax


# ----------------------------------------------------------------------------- dequantize


def test_dequantize_hand_case():
    x_hat = dequantize(torch.tensor([-50, 25, 127], dtype=torch.int8), 0.02)
    assert x_hat.dtype == torch.float32
    assert torch.allclose(x_hat, t([-1.0, 0.5, 2.54]), atol=1e-6)


def test_dequantize_zero_point_is_subtracted():
    # scale 0.5 * (q - 10): q = 10 -> 0, q = 12 -> 1, q = 0 -> -5
    out = dequantize(torch.tensor([10, 12, 0], dtype=torch.uint8), 0.5, 10)
    assert out.tolist() == [0.0, 1.0, -5.0]


def test_dequantize_per_channel_scale():
    q = torch.tensor([[1, 2], [3, 4]], dtype=torch.int8)
    out = dequantize(q, t([[2.0], [0.5]]))
    assert out.tolist() == [[2.0, 4.0], [1.5, 2.0]]


def test_dequantize_int16_and_int32_codes_exact():
    q = torch.tensor([-32767, 32767], dtype=torch.int16)
    assert dequantize(q, 1.0).tolist() == [-32767.0, 32767.0]
    q = torch.tensor([0, 65535], dtype=torch.int32)
    assert dequantize(q, 1.0, 65535).tolist() == [-65535.0, 0.0]


# ----------------------------------------------------------------------------- asymmetric


def test_asymmetric_params_hand_case():
    # lo = -1, hi = 3 -> scale = 4/255; zp = round(1 / (4/255)) = round(63.75) = 64
    scale, zp = asymmetric_params(t([-1.0, 0.0, 3.0]))
    assert scale.dtype == torch.float32
    assert float(scale) == pytest.approx(4 / 255, rel=1e-6)
    assert isinstance(zp, int) and zp == 64


def test_asymmetric_range_always_contains_zero():
    # all positive: lo = min(x, 0) = 0 -> zp 0, scale = 2/255
    scale, zp = asymmetric_params(t([1.0, 2.0]))
    assert zp == 0 and float(scale) == pytest.approx(2 / 255, rel=1e-6)
    # all negative: hi = 0 -> zp = 255
    scale, zp = asymmetric_params(t([-2.0, -0.5]))
    assert zp == 255 and float(scale) == pytest.approx(2 / 255, rel=1e-6)
    # -0.5 / (2/255) = -63.75 -> -64, + 255 = 191; -2 -> -255 + 255 = 0
    assert quantize_asymmetric(t([-2.0, -0.5]), scale, zp).tolist() == [0, 191]


def test_asymmetric_all_zero():
    scale, zp = asymmetric_params(torch.zeros(3))
    assert float(scale) == 1.0 and zp == 0


def test_quantize_asymmetric_hand_case_and_zp_sign():
    scale, zp = asymmetric_params(t([-1.0, 0.0, 3.0]))
    # round(-63.75) + 64 = 0; 0 + 64 = 64; round(191.25) + 64 = 255
    q = quantize_asymmetric(t([-1.0, 0.0, 3.0]), scale, zp)
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 64, 255]  # a "- zp" convention would give [0, 0, 127]


def test_quantize_asymmetric_clamps_unsigned():
    q = quantize_asymmetric(t([-100.0, 300.0, 1.5, 2.5]), 1.0, 0)
    assert q.tolist() == [0, 255, 2, 2]  # half to even, clamped at 0 and 255
    assert quantize_asymmetric(t([100.0]), 1.0, 0, bits=4).tolist() == [15]


def test_asymmetric_zero_point_accepts_tensor_and_float():
    x = t([-1.0, 0.0, 3.0])
    a = quantize_asymmetric(x, 4 / 255, 64)
    assert torch.equal(a, quantize_asymmetric(x, 4 / 255, torch.tensor(64)))
    assert torch.equal(a, quantize_asymmetric(x, 4 / 255, torch.tensor(64.0)))
    with pytest.raises(ValueError, match="integer"):
        quantize_asymmetric(x, 4 / 255, 63.5)
    with pytest.raises(ValueError, match=r"zero_point must lie in \[0, 255\]"):
        quantize_asymmetric(x, 4 / 255, 300)


@given(float_tensors(), st.integers(2, 16))
def test_asymmetric_properties(x, bits):
    scale, zp = asymmetric_params(x, bits)
    qmin, qmax = qrange(bits, signed=False)
    assert qmin <= zp <= qmax
    q = quantize_asymmetric(x, scale, zp, bits)
    assert q.dtype == int_dtype(bits, signed=False)
    assert int(q.min()) >= qmin and int(q.max()) <= qmax
    # zero is exactly representable: 0 -> code zp -> 0.0
    q0 = quantize_asymmetric(torch.zeros(1), scale, zp, bits)
    assert int(q0) == zp
    assert float(dequantize(q0, scale, zp)) == 0.0
    err = (x - dequantize(q, scale, zp)).abs()
    assert bool((err <= float(scale) * (0.5 + 1e-3)).all())


# ----------------------------------------------------------------------------- sqnr


def test_sqnr_hand_case():
    # signal 3^2 + 4^2 = 25, noise 1 -> 10 log10(25) = 13.979 dB (20 log10 would give 27.96)
    assert sqnr_db(t([3.0, 4.0]), t([3.0, 3.0])) == pytest.approx(10 * math.log10(25))
    # noise 100x the signal -> -20 dB (an inverted ratio would give +20)
    assert sqnr_db(t([1.0]), t([11.0])) == pytest.approx(-20.0)


def test_sqnr_zero_error_is_inf_and_zero_signal_raises():
    assert sqnr_db(t([1.0, 2.0]), t([1.0, 2.0])) == math.inf
    with pytest.raises(ValueError, match="all zero"):
        sqnr_db(torch.zeros(3), t([1.0, 0.0, 0.0]))


@given(float_tensors(), st.integers(4, 12))
def test_sqnr_grows_with_bits(x, bits):
    if float(x.abs().max()) == 0.0:
        return

    def sq(b):
        s = symmetric_scale(x, b)
        return sqnr_db(x, dequantize(quantize_symmetric(x, s, b), s))

    # more bits never hurts on the same tensor by more than float noise
    assert sq(bits + 2) >= sq(bits) - 1e-6 or sq(bits) == math.inf


# ----------------------------------------------------------------------------- per-channel


def test_per_channel_hand_case():
    w = t([[1.0, -2.54], [0.5, -0.1], [0.0, 0.0]])
    q, s = quantize_per_channel(w)
    assert s.dtype == torch.float32 and s.shape == (3,)
    # row scales: 2.54/127 = 0.02, 0.5/127, all-zero row -> 1.0
    assert s.tolist() == pytest.approx([0.02, 0.5 / 127, 1.0], rel=1e-6)
    # 1/0.02 = 50; -0.1 / (0.5/127) = -25.4 -> -25
    assert q.tolist() == [[50, -127], [127, -25], [0, 0]]
    assert q.dtype == torch.int8


def test_per_channel_axis():
    w = t([[1.0, -2.54], [0.5, -0.1]])
    q1, s1 = quantize_per_channel(w, axis=1)
    q0, s0 = quantize_per_channel(w.T.contiguous(), axis=0)
    assert torch.equal(s1, s0) and torch.equal(q1, q0.T)
    q_neg, s_neg = quantize_per_channel(w, axis=-1)
    assert torch.equal(q_neg, q1) and torch.equal(s_neg, s1)
    with pytest.raises(ValueError, match="out of range"):
        quantize_per_channel(w, axis=2)


@given(float_tensors(min_dims=2, max_dims=3), st.integers(2, 8), st.data())
def test_per_channel_equals_per_tensor_slice_by_slice(w, bits, data):
    axis = data.draw(st.integers(0, w.dim() - 1))
    q, s = quantize_per_channel(w, bits, axis)
    assert s.shape == (w.shape[axis],)
    for c in range(w.shape[axis]):
        sl = w.select(axis, c)
        sc = symmetric_scale(sl, bits)
        assert float(s[c]) == float(sc)
        assert torch.equal(q.select(axis, c), quantize_symmetric(sl, sc, bits))


# ----------------------------------------------------------------------------- per-token, group


def test_per_token_hand_case():
    q, s = quantize_per_token(t([[1.0, -2.54], [0.0, 0.0]]))
    assert s.shape == (2, 1) and s.dtype == torch.float32
    assert s.flatten().tolist() == pytest.approx([0.02, 1.0], rel=1e-6)
    assert q.tolist() == [[50, -127], [0, 0]]


@given(float_tensors(min_dims=1, max_dims=3), st.integers(2, 8))
def test_per_token_equals_per_tensor_row_by_row(x, bits):
    q, s = quantize_per_token(x, bits)
    assert s.shape == (*x.shape[:-1], 1)
    rows, qrows, srows = x.reshape(-1, x.shape[-1]), q.reshape(-1, x.shape[-1]), s.reshape(-1)
    for r in range(rows.shape[0]):
        sc = symmetric_scale(rows[r], bits)
        assert float(srows[r]) == float(sc)
        assert torch.equal(qrows[r], quantize_symmetric(rows[r], sc, bits))


def test_per_group_hand_case():
    w = t([[1.0, -2.54, 0.7, 0.07], [0.0, 0.0, 7.0, -1.0]])
    q, s = quantize_per_group(w, bits=4, group_size=2)
    assert s.shape == (2, 2)
    # groups: [1, -2.54] -> 2.54/7; [0.7, 0.07] -> 0.1 (0.07/0.1 = 0.7 -> 1);
    #         [0, 0] -> 1.0; [7, -1] -> 1.0
    assert s.tolist() == [pytest.approx([2.54 / 7, 0.1]), pytest.approx([1.0, 1.0])]
    # 1 / (2.54/7) = 2.756 -> 3
    assert q.tolist() == [[3, -7, 7, 1], [0, 0, 7, -1]]
    assert torch.allclose(dequantize_per_group(q, s)[1], w[1])


@given(st.integers(1, 4), st.integers(1, 4), st.sampled_from([1, 2, 4]), st.integers(2, 8))
def test_per_group_equals_per_tensor_group_by_group(n, groups, gs, bits):
    gen = torch.Generator().manual_seed(n * 100 + groups * 10 + gs)
    w = torch.randn(n, groups * gs, generator=gen)
    q, s = quantize_per_group(w, bits, gs)
    for r in range(n):
        for g in range(groups):
            sl = w[r, g * gs : (g + 1) * gs]
            sc = symmetric_scale(sl, bits)
            assert float(s[r, g]) == float(sc)
            assert torch.equal(q[r, g * gs : (g + 1) * gs], quantize_symmetric(sl, sc, bits))


def test_per_group_bad_group_size():
    with pytest.raises(ValueError, match="not a multiple of group_size"):
        quantize_per_group(torch.randn(2, 6), 4, 4)
    with pytest.raises(ValueError, match="2-D"):
        quantize_per_group(torch.randn(6), 4, 2)


# ----------------------------------------------------------------------------- fake quant


def test_fake_quant_hand_cases():
    out = fake_quant_symmetric(t([0.26, -3.0, 0.74]), 0.5, bits=2)
    # 0.26/0.5 = 0.52 -> 1 -> 0.5; -6 -> clamp -1 -> -0.5; 1.48 -> 1 -> 0.5
    assert out.tolist() == [0.5, -0.5, 0.5]
    out = fake_quant_asymmetric(t([-1.0, 0.0, 3.0]), 4 / 255, 64)
    assert out.tolist() == pytest.approx([-64 * 4 / 255, 0.0, 191 * 4 / 255], rel=1e-6)


def test_fake_quant_keeps_dtype():
    x = torch.randn(5, dtype=torch.float64)
    assert fake_quant_symmetric(x, 0.1).dtype == torch.float64
    assert fake_quant_symmetric(x.half(), 0.1).dtype == torch.float16


# ----------------------------------------------------------------------------- bad input

X = t([1.0, -2.0])


@pytest.mark.parametrize(
    "call",
    [
        lambda x: symmetric_scale(x),
        lambda x: quantize_symmetric(x, 0.1),
        lambda x: asymmetric_params(x),
        lambda x: quantize_asymmetric(x, 0.1, 0),
        lambda x: sqnr_db(x, x.nan_to_num()),
        lambda x: quantize_per_channel(x.reshape(1, -1)),
        lambda x: quantize_per_token(x),
        lambda x: fake_quant_symmetric(x, 0.1),
    ],
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_inf_rejected(call, bad):
    with pytest.raises(ValueError, match=r"(x|w) contains NaN/Inf"):
        call(t([1.0, bad]))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: symmetric_scale(x),
        lambda x: quantize_symmetric(x, 0.1),
        lambda x: asymmetric_params(x),
        lambda x: quantize_asymmetric(x, 0.1, 0),
        lambda x: sqnr_db(x, x),
        lambda x: quantize_per_token(x),
    ],
)
def test_empty_rejected(call):
    with pytest.raises(ValueError, match="empty"):
        call(torch.zeros(0))


@pytest.mark.parametrize("bits", [0, 1, 17, 32, -8])
@pytest.mark.parametrize(
    "call",
    [
        lambda b: symmetric_scale(X, b),
        lambda b: quantize_symmetric(X, 0.1, b),
        lambda b: asymmetric_params(X, b),
        lambda b: quantize_asymmetric(X, 0.1, 0, b),
        lambda b: quantize_per_channel(X.reshape(1, -1), b),
        lambda b: quantize_per_token(X, b),
        lambda b: quantize_per_group(X.reshape(1, -1), b, 2),
        lambda b: qrange(b),
        lambda b: int_dtype(b),
    ],
)
def test_bits_out_of_range(call, bits):
    with pytest.raises(ValueError, match="bits must be between 2 and 16"):
        call(bits)


def test_bits_wrong_type():
    with pytest.raises(TypeError, match="bits must be an int"):
        symmetric_scale(X, 8.0)
    with pytest.raises(TypeError, match="bits must be an int"):
        symmetric_scale(X, True)


@pytest.mark.parametrize(
    "call",
    [
        lambda x: symmetric_scale(x),
        lambda x: quantize_symmetric(x, 0.1),
        lambda x: asymmetric_params(x),
        lambda x: quantize_asymmetric(x, 0.1, 0),
        lambda x: sqnr_db(x, x),
        lambda x: quantize_per_channel(x.reshape(1, -1)),
        lambda x: quantize_per_token(x),
    ],
)
def test_integer_tensor_rejected(call):
    with pytest.raises(TypeError, match=r"must be a floating-point tensor.*got torch.int64"):
        call(torch.tensor([1, 2]))


@pytest.mark.parametrize(
    "call",
    [
        lambda x: symmetric_scale(x),
        lambda x: quantize_symmetric(x, 0.1),
        lambda x: asymmetric_params(x),
        lambda x: sqnr_db(x, X),
        lambda x: quantize_per_channel(x),
        lambda x: dequantize(x, 0.1),
    ],
)
def test_non_tensor_rejected(call):
    with pytest.raises(TypeError, match=r"expected a torch.Tensor, got list; wrap it with torch"):
        call([1.0, 2.0])


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2,\).*\(3,\)"):
        sqnr_db(t([1.0, 2.0]), t([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        quantize_symmetric(t([1.0, 2.0]), t([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"\(2, 1\).*\(2,\)"):
        dequantize(torch.tensor([1, 2], dtype=torch.int8), t([[1.0], [2.0]]))


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_scale(scale):
    with pytest.raises(ValueError, match="scale"):
        quantize_symmetric(X, scale)
    with pytest.raises(ValueError, match="scale"):
        dequantize(torch.tensor([1], dtype=torch.int8), scale)


def test_dequantize_rejects_bool_codes():
    with pytest.raises(TypeError, match="integer tensor"):
        dequantize(torch.tensor([True]), 1.0)
