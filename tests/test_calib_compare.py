"""Tests of clipq_helpers.calib_compare: calibrators side by side, fast fake quant, ORT probes."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import ChineseCLIPConfig, ChineseCLIPModel

from clipq_helpers.calib_compare import (
    METHODS,
    FastQuantLinear,
    capture_activations,
    clip_table,
    fake_quant_sqnr,
    kl_candidate,
    kl_curves,
    kl_thresholds,
    ort_clip_values,
    quantized_copy,
    shared_inputs,
)
from clipq_helpers.calibrate import (
    EntropyObserver,
    MSEObserver,
    PercentileObserver,
    clip_to_scale,
    kl_threshold,
)
from clipq_helpers.fakequant import QuantLinear
from clipq_helpers.models import load_tokenizer
from clipq_helpers.quantize import fake_quant_symmetric, sqnr_db


def heavy_tailed(seed, n=20_000, outliers=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=g) * torch.rand(n, generator=g) ** 2
    x[:outliers] *= 40.0
    return x.reshape(-1, 20)


@pytest.fixture(scope="module")
def tiny():
    """A 1-layer Chinese-CLIP with the pocket vocabulary (random weights, eval mode)."""
    tok = load_tokenizer("pocket")
    torch.manual_seed(0)
    cfg = ChineseCLIPConfig(
        text_config=dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            vocab_size=tok.vocab_size,
            max_position_embeddings=32,
        ),
        vision_config=dict(
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=16,
            patch_size=8,
        ),
        projection_dim=8,
    )
    model = ChineseCLIPModel(cfg).eval()
    for sub in (model.config.text_config, model.config.vision_config):
        sub._attn_implementation = "eager"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 16, 16, 3), dtype=np.uint8)
    captions = ["一个红色的圆形", "蓝色正方形在左边", "绿色"]
    return model, tok, images, captions


# --------------------------------------------------------------------------- structure


def test_shared_inputs_groups_qkv(tiny):
    model, *_ = tiny
    groups = shared_inputs(model)
    members = [m for ms in groups.values() for m in ms]
    assert sorted(members) == sorted(
        n for n, m in model.named_modules() if isinstance(m, nn.Linear)
    )
    q = "text_model.encoder.layer.0.attention.self.query"
    assert groups[q] == [q, q[:-5] + "key", q[:-5] + "value"]
    vq = "vision_model.encoder.layers.0.self_attn.q_proj"
    assert sorted(groups[vq]) == sorted([vq, vq[:-6] + "k_proj", vq[:-6] + "v_proj"])
    assert groups["visual_projection"] == ["visual_projection"]


def test_capture_shapes_drop_padding(tiny):
    model, tok, images, captions = tiny
    acts = capture_activations(model, tok, images, captions)
    assert set(acts) == set(shared_inputs(model))
    tokens = 1 + (16 // 8) ** 2
    vq = "vision_model.encoder.layers.0.self_attn.q_proj"
    assert acts[vq].shape == (3 * tokens, 16)
    assert acts["visual_projection"].shape == (3, 16)
    real = int(tok(captions, padding=True, return_tensors="pt")["attention_mask"].sum())
    assert acts["text_model.encoder.layer.0.intermediate.dense"].shape == (real, 16)
    assert acts["text_model.encoder.layer.0.output.dense"].shape == (real, 32)
    # batching does not change the result
    again = capture_activations(model, tok, images, captions, batch_size=2)
    assert all(torch.allclose(acts[n], again[n], atol=1e-5) for n in acts)


def test_capture_needs_the_right_inputs(tiny):
    model, tok, images, _ = tiny
    with pytest.raises(ValueError, match="captions"):
        capture_activations(model, tok, images, None)
    only_vision = capture_activations(
        model, tok, images, None, names=["vision_model.encoder.layers.0.mlp.fc1"]
    )
    assert list(only_vision) == ["vision_model.encoder.layers.0.mlp.fc1"]


# --------------------------------------------------------------------------- clip table


@settings(max_examples=5)
@given(seed=st.integers(0, 10_000), bits=st.sampled_from([4, 6, 8]))
def test_clip_table_matches_the_observers(seed, bits):
    x = heavy_tailed(seed)
    row = clip_table({"x": x}, bits=(bits,))[bits]["x"]
    assert list(row) == list(METHODS)
    assert row["min-max"] == float(x.abs().max())
    pct = PercentileObserver(99.99, max_exact=1)
    pct.update(x)
    assert row["percentile"] == float(pct.clip_value(bits))
    mse = MSEObserver(max_exact=1)
    mse.update(x)
    assert row["MSE"] == float(mse.clip_value(bits))
    ent = EntropyObserver(max_exact=1)
    ent.update(x)
    assert row["entropy (KL)"] == pytest.approx(float(ent.clip_value(bits)), rel=1e-6)
    assert 0 < row["entropy (KL)"] <= row["min-max"]


def test_clip_table_methods_subset_and_errors():
    x = heavy_tailed(1)
    out = clip_table({"a": x, "b": 2 * x}, bits=(8, 6), methods=("min-max", "percentile"))
    assert set(out) == {8, 6}
    assert list(out[6]["b"]) == ["min-max", "percentile"]
    assert out[8]["b"]["min-max"] == pytest.approx(2 * out[8]["a"]["min-max"])
    with pytest.raises(ValueError, match="unknown methods"):
        clip_table({"a": x}, methods=("max",))


def test_fake_quant_sqnr_equals_reference():
    x = heavy_tailed(2)
    for clip, bits in ((float(x.abs().max()), 8), (0.5, 8), (1.0, 4)):
        ref = sqnr_db(x, fake_quant_symmetric(x, clip_to_scale(clip, bits), bits))
        assert fake_quant_sqnr(x, clip, bits) == pytest.approx(ref, rel=1e-6)
    assert fake_quant_sqnr(torch.tensor([1.0, -2.0]), 127.0) == math.inf  # on the grid
    with pytest.raises(ValueError, match="all zero"):
        fake_quant_sqnr(torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        fake_quant_sqnr(torch.tensor([1.0, float("nan")]), 1.0)


# --------------------------------------------------------------------------- KL


def random_hist(seed, n):
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:  # smooth, heavy tail
        h = np.floor(1e4 * np.exp(-np.arange(n) / rng.uniform(20, 400)))
    elif kind == 1:  # sparse counts with empty bins
        h = rng.poisson(rng.uniform(0.05, 3.0), n).astype(float)
    else:  # bulk plus a few far outliers
        h = np.floor(1e3 * np.exp(-np.arange(n) / 30.0))
        h[rng.integers(n // 2, n, 3)] += 1
    h[0] += 1
    return h


@settings(max_examples=12)
@given(
    seed=st.integers(0, 10_000),
    n=st.sampled_from([8, 40, 128, 300]),
    bits=st.sampled_from([3, 4, 6]),
)
def test_kl_thresholds_equal_the_reference(seed, n, bits):
    hs = np.stack([random_hist(seed + k, n) for k in range(3)])
    edges = np.cumsum(np.random.default_rng(seed).uniform(0.5, 1.5, n + 1)) - 0.5
    if n < 2 ** (bits - 1):
        with pytest.raises(ValueError, match="at least"):
            kl_thresholds(hs, edges, bits)
        return
    ours = kl_thresholds(hs, edges, bits)
    for k in range(3):
        ref = float(kl_threshold(torch.from_numpy(hs[k]), torch.from_numpy(edges), bits))
        assert ours[k] == pytest.approx(ref, rel=1e-6)  # the reference returns float32


def test_kl_candidate_and_curve_agree():
    h = random_hist(0, 512)
    curve = kl_curves(h, bits=8)
    assert curve.shape == (1, 512 - 128 + 1)
    for i in (128, 200, 512):
        p, q = kl_candidate(h, i, bits=8)
        assert p.sum() == pytest.approx(1.0) and q.sum() == pytest.approx(1.0)
        assert float(np.sum(p * np.log(p / q))) == pytest.approx(curve[0, i - 128], rel=1e-12)
    with pytest.raises(ValueError, match="candidate"):
        kl_candidate(h, 127, bits=8)
    with pytest.raises(ValueError, match="counts"):
        kl_curves(-h, bits=8)


def test_kl_thresholds_edge_shape_check():
    with pytest.raises(ValueError, match="bin_edges"):
        kl_thresholds(np.ones((2, 200)), np.arange(10.0), 8)


# --------------------------------------------------------------------------- fast fake quant


@pytest.mark.parametrize(
    "config",
    [
        dict(a_bits=8, a_granularity="per_tensor"),
        dict(a_bits=6, a_granularity="per_token"),
        dict(a_bits=None, w_granularity="per_group", group_size=16),
        dict(a_bits=4, a_granularity="per_token", w_bits=4, w_granularity="per_channel"),
    ],
)
@torch.no_grad()
def test_fast_quant_linear_is_bitwise_quant_linear(config):
    torch.manual_seed(0)
    lin = nn.Linear(32, 24)
    x = torch.randn(5, 7, 32)
    x[0, 0] = 0.0  # an all-zero token gets scale 1.0 in both
    slow = QuantLinear.from_linear(lin, **config)
    fast = FastQuantLinear.from_linear(lin, **config)
    if config.get("a_granularity") == "per_tensor":
        for m in (slow, fast):
            m.set_activation_qparams(float(x.abs().max()) / 127)
    assert torch.equal(slow(x), fast(x))


@torch.no_grad()
def test_fast_quant_linear_uncalibrated_still_raises():
    fast = FastQuantLinear.from_linear(nn.Linear(4, 3), a_bits=8)
    with pytest.raises(RuntimeError, match="not calibrated"):
        fast(torch.randn(2, 4))


@torch.no_grad()
def test_quantized_copy(tiny):
    model, tok, images, captions = tiny
    acts = capture_activations(model, tok, images, captions)
    clips = {n: float(a.abs().max()) for n, a in acts.items()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantized_copy(model, a_bits=8, clips=clips)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    qls = {n: m for n, m in q.named_modules() if isinstance(m, FastQuantLinear)}
    assert len(qls) == len(list(shared_inputs(model).values())) + sum(
        len(v) - 1 for v in shared_inputs(model).values()
    )
    key = "vision_model.encoder.layers.0.self_attn.k_proj"
    rep = "vision_model.encoder.layers.0.self_attn.q_proj"
    assert float(qls[key].act_scale) == pytest.approx(clips[rep] / 127)
    px = torch.randn(2, 3, 16, 16)
    ref = model.get_image_features(pixel_values=px)
    out = q.get_image_features(pixel_values=px)
    ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
    out = out if isinstance(out, torch.Tensor) else out.pooler_output
    assert sqnr_db(ref, out) > 15
    with pytest.raises(ValueError, match="no clip value"):
        quantized_copy(model, a_bits=8, clips={})
    with pytest.raises(ValueError, match="need clips"):
        quantized_copy(model, a_bits=8)
    per_token = quantized_copy(model, a_bits=8, a_granularity="per_token")
    assert all(
        m.a_granularity == "per_token" for m in per_token.modules() if isinstance(m, QuantLinear)
    )
    some = quantized_copy(model, a_bits=None, include=lambda n, m: n.startswith("text"))
    kinds = {n.split(".")[0] for n, m in some.named_modules() if isinstance(m, QuantLinear)}
    assert kinds == {"text_model", "text_projection"}


# --------------------------------------------------------------------------- ONNX Runtime


def test_ort_clip_values_on_known_tensors():
    a = heavy_tailed(3)
    b = heavy_tailed(4) * 3
    acts = {"a": a, "b": b}
    mm = ort_clip_values(acts, "minmax", symmetric=True)
    assert mm == pytest.approx({"a": float(a.abs().max()), "b": float(b.abs().max())}, rel=1e-6)
    # ORT's default entropy histogram has 128 bins: one candidate, the full range
    assert ort_clip_values(acts, "entropy") == pytest.approx(mm, rel=1e-6)
    pct = ort_clip_values(acts, "percentile", symmetric=True, percentile=99.9)
    for name, x in acts.items():
        obs = PercentileObserver(99.9, max_exact=1)
        obs.update(x)
        assert abs(pct[name] - float(obs.clip_value())) <= 2 * float(x.abs().max()) / 2048
    with pytest.raises(ValueError, match="method"):
        ort_clip_values(acts, "mse")
    with pytest.raises(ValueError, match="empty"):
        ort_clip_values({}, "minmax")
