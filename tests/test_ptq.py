"""Tests of clipq_helpers.ptq on a tiny Chinese-CLIP (same code path as the pocket model)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import ChineseCLIPConfig, ChineseCLIPModel

from clipq_helpers import shapes
from clipq_helpers.evaluate import tokenize
from clipq_helpers.fakequant import FastQuantLinear, QuantLinear
from clipq_helpers.models import image_embeddings, load_tokenizer
from clipq_helpers.outlier_math import outlier_ratio
from clipq_helpers.processor import pixels_from_uint8
from clipq_helpers.ptq import (
    calibrate,
    capture_inputs,
    layer_sqnr_table,
    quantize_model,
    quick_metrics,
    rescaled_variant,
    set_activation_bits,
    vision_layernorm_groups,
)
from clipq_helpers.surgery import iter_linears


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("pocket")


@pytest.fixture(scope="module")
def tiny(tok):
    torch.manual_seed(0)
    cfg = ChineseCLIPConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=shapes.IMAGE_SIZE,
            patch_size=16,
        ),
        projection_dim=16,
    )
    return ChineseCLIPModel(cfg).eval()


@pytest.fixture(scope="module")
def calib():
    return shapes.make_split("calibration", 8)


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- fast path


@pytest.mark.parametrize("bits", [8, 6, 4])
def test_fast_quant_linear_is_bitwise_equal_to_quant_linear(bits):
    torch.manual_seed(bits)
    lin = nn.Linear(24, 10)
    cfg = dict(w_bits=8, a_bits=bits, w_granularity="per_tensor")
    ref, fast = QuantLinear.from_linear(lin, **cfg), FastQuantLinear.from_linear(lin, **cfg)
    calib_x = torch.randn(64, 24)
    for q in (ref, fast):
        q.start_calibration()
        q(calib_x)
        q.freeze()
    x = torch.randn(5, 7, 24) * 3  # beyond the calibrated range: clamping
    assert torch.equal(ref.quantize_input(x), fast.quantize_input(x))
    assert torch.equal(ref(x), fast(x))
    with pytest.raises(ValueError, match="shape mismatch"):
        fast(torch.randn(2, 23))


def test_fast_quant_linear_defers_for_other_configs():
    lin = nn.Linear(8, 4)
    q = FastQuantLinear.from_linear(lin, a_bits=8, a_granularity="per_token")
    x = torch.randn(3, 8)
    assert torch.equal(q(x), QuantLinear.from_linear(lin, a_bits=8, a_granularity="per_token")(x))
    with pytest.raises(RuntimeError, match="not calibrated"):
        FastQuantLinear.from_linear(lin)(x)


# --------------------------------------------------------------------------- quantize_model


def test_quantize_model_returns_a_calibrated_copy(tiny, tok, calib):
    before = _state(tiny)
    q = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())  # untouched
    assert not any(isinstance(m, QuantLinear) for m in tiny.modules())
    qls = [m for m in q.modules() if isinstance(m, QuantLinear)]
    assert len(qls) == len(list(iter_linears(tiny)))
    assert all(m.calibrated and float(m.act_scale) > 0 for m in qls)
    assert all(m.w_granularity == "per_tensor" and m.a_bits == 8 for m in qls)
    px = pixels_from_uint8(calib.images)
    with torch.no_grad():
        e_fp, e_q = image_embeddings(tiny, px), image_embeddings(q, px)
    assert not torch.equal(e_fp, e_q)
    assert float(torch.cosine_similarity(e_fp, e_q).min()) > 0.95


def test_quantize_model_minmax_scale_is_the_calibration_absmax(tiny, tok, calib):
    q = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok, a_bits=6)
    name = "vision_model.encoder.layers.0.mlp.fc1"
    seen = capture_inputs(
        tiny, lambda: tiny.get_image_features(pixel_values=pixels_from_uint8(calib.images)), [name]
    )[name]
    want = seen.abs().max() / (2**5 - 1)
    assert float(q.get_submodule(name).act_scale) == pytest.approx(float(want), rel=1e-6)


def test_set_activation_bits_equals_a_fresh_calibration(tiny, tok, calib):
    q8 = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok, a_bits=8)
    q4 = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok, a_bits=4)
    assert set_activation_bits(q8, 4) is q8
    px = pixels_from_uint8(calib.images[:4])
    with torch.no_grad():
        assert torch.equal(image_embeddings(q8, px), image_embeddings(q4, px))
    with pytest.raises(ValueError, match="no calibrated"):
        set_activation_bits(tiny, 4)
    with pytest.raises(ValueError):
        set_activation_bits(q8, 1)


def test_quantize_model_options(tiny, tok, calib):
    fp = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok, w_bits=None, a_bits=None)
    px = pixels_from_uint8(calib.images[:2])
    with torch.no_grad():
        assert torch.equal(image_embeddings(fp, px), image_embeddings(tiny, px))
    vision_only = quantize_model(
        tiny, calib.images, [], tokenizer=tok, include=lambda n, m: n.startswith("vision_model")
    )
    names = [n for n, m in vision_only.named_modules() if isinstance(m, QuantLinear)]
    assert names and all(n.startswith("vision_model") for n in names)
    dyn = quantize_model(tiny, [], [], tokenizer=tok, a_granularity="per_token")
    assert all(m.calibrated for m in dyn.modules() if isinstance(m, QuantLinear))
    with pytest.raises(ValueError, match="selected no nn.Linear"):
        quantize_model(
            tiny, calib.images, calib.captions, tokenizer=tok, include=lambda n, m: False
        )
    with pytest.raises(ValueError, match="saw no calibration data"):
        quantize_model(tiny, calib.images, [], tokenizer=tok)  # the text tower needs captions
    with pytest.raises(ValueError, match="no QuantLinear"):
        calibrate(tiny, calib.images, calib.captions, tok)


# --------------------------------------------------------------------------- metrics, capture


def test_quick_metrics(tiny, tok, calib):
    same = quick_metrics(tiny, tiny, tok, n=12)
    assert set(same) >= {"zero_shot", "t2i_R@1", "i2t_R@1", "cos_image", "cos_text"}
    assert same["cos_image"] == pytest.approx(1.0, abs=1e-5)
    assert same["cos_text"] == pytest.approx(1.0, abs=1e-5)
    q = quantize_model(tiny, calib.images, calib.captions, tokenizer=tok, a_bits=4)
    m = quick_metrics(tiny, q, tok, n=12)
    assert all(0.0 <= m[k] <= 1.0 for k in ("zero_shot", "t2i_R@1", "i2t_R@1", "t2i_R@5"))
    assert m["cos_image"] < 1.0 and m["cos_image_min"] <= m["cos_image"]
    with pytest.raises(ValueError):
        quick_metrics(tiny, q, tok, n=1)
    with pytest.raises(ValueError, match="text tower is quantized"):
        quick_metrics(tiny, q, tok, n=12, towers=("image",))
    with pytest.raises(ValueError, match="towers"):
        quick_metrics(tiny, q, tok, n=12, towers=("audio",))
    vq = quantize_model(
        tiny, calib.images, [], tokenizer=tok, a_bits=4, include=lambda n, m: "vision" in n
    )
    full, image_only = (
        quick_metrics(tiny, vq, tok, n=12),
        quick_metrics(tiny, vq, tok, n=12, towers=("image",)),
    )
    assert image_only == pytest.approx(full, abs=1e-6)  # the FP32 text side is reused
    assert image_only["cos_text"] == pytest.approx(1.0, abs=1e-6)


def test_capture_inputs_shapes_mask_and_hooks(tiny, tok, calib):
    enc = tokenize(tok, calib.captions)
    names = ["text_model.encoder.layer.0.intermediate.dense", "text_projection"]
    got = capture_inputs(tiny, lambda: tiny.get_text_features(**enc), names)
    b, t = enc["input_ids"].shape
    assert got[names[0]].shape == (b, t, 32)
    masked = capture_inputs(
        tiny, lambda: tiny.get_text_features(**enc), names, mask=enc["attention_mask"]
    )
    assert masked[names[0]].shape == (int(enc["attention_mask"].sum()), 32)
    assert torch.equal(masked[names[0]], got[names[0]][enc["attention_mask"].bool()])
    assert all(not m._forward_pre_hooks for m in tiny.modules())
    with pytest.raises(ValueError, match="no nn.Linear"):
        capture_inputs(tiny, lambda: None, ["nothing"])


def test_layer_sqnr_table():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0))
    x[:, 3] *= 50
    (row,) = layer_sqnr_table({"vision_model.encoder.layers.0.mlp.fc1": x})
    assert row["role"] == "fc1" and row["outliers"] == [3] and row["ratio"] > 20
    assert row["rest_own"] > row["rest_shared"] + 20


# --------------------------------------------------------------------------- rescaled variant


def test_rescaled_variant_keeps_the_function_and_plants_outliers(tiny, calib):
    px = pixels_from_uint8(calib.images)
    before = _state(tiny)
    r = rescaled_variant(tiny, [3, 7], 50.0)
    assert all(torch.equal(before[k], v) for k, v in tiny.state_dict().items())
    with torch.no_grad():
        e0, e1 = image_embeddings(tiny, px), image_embeddings(r, px)
    assert float((e0 - e1).abs().max()) < 1e-4 * float(e0.abs().max())
    ln, (q_proj, *_) = vision_layernorm_groups(r)[0]
    ln0, (q0, *_) = vision_layernorm_groups(tiny)[0]
    assert torch.allclose(ln.weight[3], 50 * ln0.weight[3])
    assert torch.allclose(q_proj.weight[:, 7], q0.weight[:, 7] / 50)
    assert torch.equal(ln.weight[0], ln0.weight[0])
    name = "vision_model.encoder.layers.1.mlp.fc1"

    def run(m):
        return lambda: m.get_image_features(pixel_values=px)

    x0 = capture_inputs(tiny, run(tiny), [name])[name]
    x1 = capture_inputs(r, run(r), [name])[name]
    assert outlier_ratio(x1) > 10 * outlier_ratio(x0)
    for bad in (0, -1.0, True):
        with pytest.raises(ValueError):
            rescaled_variant(tiny, [3], bad)
    with pytest.raises(ValueError):
        rescaled_variant(tiny, [32], 10.0)
