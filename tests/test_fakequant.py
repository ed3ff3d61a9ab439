"""Tests of clipq_helpers.fakequant.QuantLinear."""

import pytest
import torch
from torch import nn

from clipq_helpers.calibrate import PercentileObserver
from clipq_helpers.fakequant import QuantLinear
from clipq_helpers.quantize import dequantize, quantize_per_channel, sqnr_db


def make(seed=0, in_f=64, out_f=32):
    torch.manual_seed(seed)
    lin = nn.Linear(in_f, out_f)
    x = torch.randn(6, 10, in_f)
    return lin, x


def calibrated(lin, x, **config):
    ql = QuantLinear.from_linear(lin, **config)
    ql.start_calibration()
    for b in x.split(2):
        ql(b)
    return ql.freeze()


@torch.no_grad()
def test_per_channel_w8a8_close_to_fp():
    lin, x = make()
    ql = calibrated(lin, x)
    assert sqnr_db(lin(x), ql(x)) > 30


@torch.no_grad()
def test_per_tensor_worse_than_per_channel_with_large_row():
    lin, x = make(1)
    lin.weight[0] *= 100  # one output row with large weights
    pc = calibrated(lin, x, w_granularity="per_channel")
    pt = calibrated(lin, x, w_granularity="per_tensor")
    ref = lin(x)[..., 1:]  # the other rows suffer from the shared per-tensor scale
    assert sqnr_db(ref, pc(x)[..., 1:]) > sqnr_db(ref, pt(x)[..., 1:]) + 10


@pytest.mark.parametrize("observer", ["minmax", "percentile", "mse", "entropy"])
@torch.no_grad()
def test_calibration_with_each_observer(observer):
    lin, x = make(2)
    ql = calibrated(lin, x, a_observer=observer)
    assert ql.calibrated and not ql.calibrating
    assert float(ql.act_scale) > 0
    assert float(ql.act_scale) <= float(x.abs().max()) / 127 * (1 + 1e-6)
    assert sqnr_db(lin(x), ql(x)) > 25


@torch.no_grad()
def test_per_token_needs_no_calibration():
    lin, x = make(3)
    ql = QuantLinear.from_linear(lin, a_granularity="per_token")
    assert ql.calibrated
    assert sqnr_db(lin(x), ql(x)) > 30


@torch.no_grad()
def test_asymmetric_activations():
    lin, x = make(4)
    x = x.relu()  # one-sided activations: asymmetric uses all 256 codes
    sym = calibrated(lin, x, a_bits=4)
    asym = calibrated(lin, x, a_bits=4, a_symmetric=False)
    assert int(asym.act_zero_point) == 0
    assert sqnr_db(lin(x), asym(x)) > sqnr_db(lin(x), sym(x))


@torch.no_grad()
def test_calibrating_returns_fp_output_and_forward_requires_calibration():
    lin, x = make(5)
    ql = QuantLinear.from_linear(lin)
    with pytest.raises(RuntimeError, match="not calibrated"):
        ql(x)
    ql.start_calibration()
    assert torch.equal(ql(x), lin(x))
    with pytest.raises(RuntimeError, match="has seen no data"):
        QuantLinear.from_linear(lin).start_calibration().freeze()


@torch.no_grad()
def test_weight_fake_quant_matches_per_channel_and_is_cached():
    lin, x = make(6)
    ql = QuantLinear.from_linear(lin, a_bits=None)
    q, s = quantize_per_channel(lin.weight, 8, axis=0)
    assert torch.equal(ql.quantized_weight(), dequantize(q, s[:, None]))
    assert ql.quantized_weight() is ql.quantized_weight()  # computed once
    assert torch.allclose(ql(x), x @ dequantize(q, s[:, None]).T + lin.bias, atol=1e-5)
    assert ql.weight is lin.weight  # shared, not copied
    lin.weight.mul_(2)  # in-place change (e.g. SmoothQuant) invalidates the cache
    q2, s2 = quantize_per_channel(lin.weight, 8, axis=0)
    assert torch.equal(ql.quantized_weight(), dequantize(q2, s2[:, None]))


@torch.no_grad()
def test_per_group_and_low_bits():
    lin, x = make(7)
    g = QuantLinear.from_linear(
        lin, w_bits=4, a_bits=None, w_granularity="per_group", group_size=16
    )
    c = QuantLinear.from_linear(lin, w_bits=4, a_bits=None, w_granularity="per_channel")
    assert sqnr_db(lin(x), g(x)) > sqnr_db(lin(x), c(x))
    assert g.weight_qparams()[1].shape == (32, 4)


@torch.no_grad()
def test_no_quantization_is_identity():
    lin, x = make(8)
    ql = QuantLinear.from_linear(lin, w_bits=None, a_bits=None)
    assert torch.equal(ql(x), lin(x))


@torch.no_grad()
def test_observer_instance_is_copied_and_manual_qparams():
    lin, x = make(9)
    proto = PercentileObserver(99.0)
    a = QuantLinear.from_linear(lin, a_observer=proto)
    b = QuantLinear.from_linear(lin, a_observer=proto)
    assert a.observer is not b.observer and a.observer is not proto
    b.set_activation_qparams(0.05)
    assert b.calibrated and float(b.act_scale) == pytest.approx(0.05)
    assert "A8 per_tensor (percentile, symmetric)" in repr(a)


def test_state_dict_keys_and_standalone_construction():
    ql = QuantLinear(8, 4, w_granularity="per_tensor", a_granularity="per_token")
    assert set(ql.state_dict()) == {
        "weight",
        "bias",
        "act_scale",
        "act_zero_point",
        "act_calibrated",
    }
    y = ql(torch.randn(3, 8))
    assert y.shape == (3, 4)


def test_bad_config_and_input():
    lin = nn.Linear(12, 4)
    with pytest.raises(ValueError, match="w_granularity must be one of"):
        QuantLinear.from_linear(lin, w_granularity="per_row")
    with pytest.raises(ValueError, match="a_granularity must be one of"):
        QuantLinear.from_linear(lin, a_granularity="per_channel")
    with pytest.raises(ValueError, match="not a multiple of group_size"):
        QuantLinear.from_linear(lin, w_granularity="per_group", group_size=8)
    with pytest.raises(ValueError, match="needs the 'minmax' observer"):
        QuantLinear.from_linear(lin, a_symmetric=False, a_observer="entropy")
    with pytest.raises(ValueError, match="a_bits must be between 2 and 16"):
        QuantLinear.from_linear(lin, a_bits=1)
    with pytest.raises(TypeError, match="expected an nn.Linear"):
        QuantLinear.from_linear(nn.Conv1d(1, 1, 1))
    ql = QuantLinear.from_linear(lin, a_granularity="per_token")
    with pytest.raises(ValueError, match=r"shape mismatch: input has shape \(2, 5\)"):
        ql(torch.randn(2, 5))
    with pytest.raises(ValueError, match="x contains NaN/Inf"):
        ql(torch.full((2, 12), float("nan")))
