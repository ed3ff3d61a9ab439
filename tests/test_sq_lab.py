"""Tests of clipq_helpers.sq_lab: SmoothQuant on a whole Chinese-CLIP model (chapter 7)."""

from __future__ import annotations

import copy
import math

import matplotlib
import numpy as np
import pytest
import torch

from clipq_helpers import models, shapes, sq_lab
from clipq_helpers.calib_compare import capture_activations
from clipq_helpers.evaluate import encode_texts
from clipq_helpers.outlier_math import channel_absmax
from clipq_helpers.plots import use_cjk_font
from clipq_helpers.quantize import (
    dequantize,
    quantize_per_channel,
    quantize_symmetric,
    sqnr_db,
    symmetric_scale,
)
from clipq_helpers.smoothquant import smooth_scales, weight_column_absmax

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

N = 6  # scenes: small, the model is what matters


@pytest.fixture(autouse=True, scope="module")
def _cjk_font():
    use_cjk_font()  # the figures have Chinese labels


@pytest.fixture(scope="module")
def pocket():
    torch.set_num_threads(1)
    return models.load_model("pocket")


@pytest.fixture(scope="module")
def tok():
    return models.load_tokenizer("pocket")


@pytest.fixture(scope="module")
def data():
    return shapes.make_split("calibration", N)


@pytest.fixture(scope="module")
def acts(pocket, tok, data):
    return capture_activations(pocket, tok, data.images, data.captions)


@pytest.fixture(scope="module")
def ref(pocket, tok, data):
    return sq_lab.raw_embeddings(pocket, tok, data.images, data.captions)


def random_scales(groups, pocket, seed=0, spread=1.0):
    """Log-uniform factors in [10^-spread, 10^spread]: far from the data-derived ones."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for g in groups:
        width = pocket.get_submodule(g.linears[0]).in_features
        out[g.key] = 10 ** ((torch.rand(width, generator=gen) * 2 - 1) * spread)
    return out


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------- groups


def test_groups_cover_both_towers_with_the_right_residuals(pocket):
    layers_t = pocket.config.text_config.num_hidden_layers
    layers_v = pocket.config.vision_config.num_hidden_layers
    groups = sq_lab.smooth_groups(pocket)
    vision = [g for g in groups if g.tower == "vision"]
    text = [g for g in groups if g.tower == "text"]
    assert len(vision) == 2 * layers_v + 1 and len(text) == 2 * layers_t + 1
    assert all(g.residual is None for g in vision)  # pre-LN: nothing else reads the LN
    # post-LN: every text LayerNorm feeds a residual, except the last (read by the projection)
    assert [g.residual is None for g in text] == [False] * (2 * layers_t) + [True]
    assert text[-1].linears == ("text_projection",)
    assert text[0].source == "text_model.embeddings.LayerNorm"
    assert text[0].residual == "text_model.encoder.layer.0.attention.output"
    assert text[1].residual == "text_model.encoder.layer.0.output"
    assert len({g.key for g in groups}) == len(groups)
    for g in groups:
        src = pocket.get_submodule(g.source)
        for name in g.linears:
            assert pocket.get_submodule(name).in_features == src.weight.shape[0]
        assert g.key == g.linears[0]
        assert g.exact_without_residual == (g.residual is None)
    with_v = sq_lab.smooth_groups(pocket, values=True)
    values = [g for g in with_v if g.kind == "value"]
    assert len(values) == layers_t + layers_v
    assert all(g.residual is None for g in values)
    assert "text_model.encoder.layer.2.attention.output.dense" in {g.key for g in values}


def test_group_labels(pocket):
    labels = [sq_lab.group_label(g) for g in sq_lab.smooth_groups(pocket, values=True)]
    for expected in ("V0 qkv", "V0 out", "V5 fc1", "V proj", "T0 qkv", "T3 fc1", "T1 out"):
        assert expected in labels
    assert labels[-1] == "T proj"


def test_bad_arguments_get_clear_errors(pocket, acts):
    with pytest.raises(ValueError, match="towers"):
        sq_lab.smooth_groups(pocket, towers=("audio",))
    with pytest.raises(TypeError, match="ChineseCLIPModel"):
        sq_lab.smooth_groups(torch.nn.Linear(2, 2))
    groups = sq_lab.smooth_groups(pocket, towers=("vision",))
    with pytest.raises(KeyError, match="capture"):
        sq_lab.group_scales(pocket, groups, {}, 0.5)
    m = copy.deepcopy(pocket)
    with pytest.raises(ValueError, match="residual"):
        sq_lab.apply_smoothing(m, groups, random_scales(groups, pocket), residual="fold")
    with pytest.raises(KeyError, match="no smoothing scale"):
        sq_lab.apply_smoothing(m, groups, {})
    with pytest.raises(ValueError, match="positive"):
        sq_lab.add_residual_scale(m.text_model.encoder.layer[0].output, -torch.ones(384))


# --------------------------------------------------------------------------- equivalence


def test_compensated_smoothing_keeps_the_fp32_function(pocket, tok, data, ref):
    """Every group of both towers, value projections included, with factors up to 10x."""
    groups = sq_lab.smooth_groups(pocket, values=True)
    before = state(pocket)
    m = copy.deepcopy(pocket)
    sq_lab.apply_smoothing(m, groups, random_scales(groups, pocket), "compensate")
    gap = sq_lab.embedding_gap(ref, sq_lab.raw_embeddings(m, tok, data.images, data.captions))
    for tower in ("image", "text"):
        assert gap[f"{tower}_max_abs"] < 1e-4 * gap[f"{tower}_scale"], gap
    # the weights really changed, and the original model did not
    ln = "vision_model.encoder.layers.0.layer_norm1.weight"
    assert not torch.allclose(m.state_dict()[ln], pocket.state_dict()[ln])
    assert all(torch.equal(v, pocket.state_dict()[k]) for k, v in before.items())


def test_ignoring_the_residual_changes_only_the_text_tower(pocket, tok, data, ref, acts):
    groups = sq_lab.smooth_groups(pocket)
    amax = {k: channel_absmax(v) for k, v in acts.items()}
    m, _ = sq_lab.smoothed_copy(pocket, groups, amax, 0.5, residual="ignore")
    gap = sq_lab.embedding_gap(ref, sq_lab.raw_embeddings(m, tok, data.images, data.captions))
    assert gap["image_max_abs"] < 1e-4 * gap["image_scale"]  # pre-LN: still exact
    assert gap["text_max_abs"] > 0.05 * gap["text_scale"]  # post-LN: another function
    assert gap["text_cos_min"] < 0.99


def test_only_the_exact_groups_need_no_residual(pocket, tok, data, ref):
    groups = [g for g in sq_lab.smooth_groups(pocket, values=True) if g.residual is None]
    m = copy.deepcopy(pocket)
    sq_lab.apply_smoothing(m, groups, random_scales(groups, pocket, seed=1), "ignore")
    gap = sq_lab.embedding_gap(ref, sq_lab.raw_embeddings(m, tok, data.images, data.captions))
    assert gap["text_max_abs"] < 1e-4 * gap["text_scale"]
    assert gap["image_max_abs"] < 1e-4 * gap["image_scale"]
    assert not hasattr(m.text_model.encoder.layer[0].output, "residual_scale")


def test_residual_scale_is_exact_and_composes(pocket):
    block = copy.deepcopy(pocket.text_model.encoder.layer[1].output)  # LN(dense(h) + r)
    gen = torch.Generator().manual_seed(0)
    h, r = torch.randn(2, 5, 1536, generator=gen), torch.randn(2, 5, 384, generator=gen)
    s1, s2 = torch.rand(384, generator=gen) + 0.5, torch.rand(384, generator=gen) + 0.5
    with torch.no_grad():
        plain = copy.deepcopy(block)
        sq_lab.add_residual_scale(block, s1)
        assert torch.equal(block(h, r), plain(h, r * s1))  # the same ops: bit for bit
        twin = copy.deepcopy(block)  # the hook and the buffer travel with a copy
        sq_lab.add_residual_scale(block, s2)  # composes: one module, one multiply
        assert len(block._forward_pre_hooks) == 1
        assert torch.allclose(block(h, r), plain(h, r * (s1 * s2)), atol=1e-6)
        assert torch.equal(twin(h, r), plain(h, r * s1))


def test_smoothed_inputs_equal_the_captured_inputs_of_the_smoothed_model(pocket, tok, data, acts):
    groups = sq_lab.smooth_groups(pocket, values=True)
    amax = {k: channel_absmax(v) for k, v in acts.items()}
    m, scales = sq_lab.smoothed_copy(pocket, groups, amax, 0.8)
    assert set(scales) == {g.key for g in groups}
    predicted = sq_lab.smoothed_inputs(acts, scales)
    captured = capture_activations(m, tok, data.images, data.captions)
    assert set(predicted) == set(captured)
    for name, x in captured.items():
        assert torch.allclose(predicted[name], x, atol=1e-4 * float(x.abs().max())), name
    smoothed = [n for n in scales if n in acts]
    assert any(not torch.allclose(predicted[n], acts[n]) for n in smoothed)


def test_group_scales_are_smooth_scales_of_the_stacked_weights(pocket, acts):
    amax = {k: channel_absmax(v) for k, v in acts.items()}
    groups = sq_lab.smooth_groups(pocket, towers=("text",))
    scales = sq_lab.group_scales(pocket, groups, amax, 0.3)
    g = groups[0]  # q, k and v share one factor
    w = weight_column_absmax([pocket.get_submodule(n) for n in g.linears])
    assert torch.equal(scales[g.key], smooth_scales(amax[g.key], w, 0.3))
    assert torch.equal(sq_lab.group_weight(pocket, g).abs().amax(dim=0), w)


# --------------------------------------------------------------------------- difficulty


def test_layer_difficulty_hand_case():
    x = torch.tensor([[4.0, 1.0], [-2.0, 0.5]])  # channel maxima 4 and 1
    w = torch.tensor([[1.0, 1.0], [0.5, -1.0]])  # column maxima 1 and 1
    plain = sq_lab.layer_difficulty(x, w)
    assert plain["act_ratio"] == pytest.approx(4.0)  # median = lower middle value
    assert plain["w_ratio"] == pytest.approx(1.0)
    s = smooth_scales(torch.tensor([4.0, 1.0]), torch.tensor([1.0, 1.0]), 0.5)  # [2, 1]
    assert s.tolist() == pytest.approx([2.0, 1.0])
    smoothed = sq_lab.layer_difficulty(x, w, s)
    assert smoothed["act_ratio"] == pytest.approx(2.0)
    assert smoothed["w_ratio"] == pytest.approx(2.0)
    assert sq_lab.layer_difficulty(x, w, torch.ones(2)) == plain


def test_layer_difficulty_agrees_with_the_reference_quantizers():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(200, 16, generator=gen)
    x[:, 5] *= 30  # an outlier channel
    w = torch.randn(24, 16, generator=gen)
    s = torch.rand(16, generator=gen) + 0.5
    for bits in (8, 4):
        got = sq_lab.layer_difficulty(x, w, s, a_bits=bits, w_bits=bits)
        xs, ws = x / s, w * s
        xq = dequantize(
            quantize_symmetric(xs, symmetric_scale(xs, bits), bits), symmetric_scale(xs, bits)
        )
        q, sc = quantize_per_channel(ws, bits)
        wq = dequantize(q, sc[:, None])
        assert got["act_sqnr"] == pytest.approx(sqnr_db(xs, xq), abs=1e-3)
        assert got["w_sqnr"] == pytest.approx(sqnr_db(ws, wq), abs=1e-3)
        assert got["out_sqnr"] == pytest.approx(sqnr_db(x @ w.T, xq @ wq.T), abs=1e-2)


def test_alpha_sweep_ends_and_middle():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(300, 32, generator=gen)
    x[:, 3] *= 25
    w = torch.randn(40, 32, generator=gen)
    rows = sq_lab.alpha_sweep(x, w, [0.0, 0.5, 1.0])
    assert [r["alpha"] for r in rows] == [0.0, 0.5, 1.0]
    assert rows[0]["w_ratio"] == pytest.approx(1.0, rel=1e-5)  # alpha 0: columns equalised
    assert rows[2]["act_ratio"] == pytest.approx(1.0, rel=1e-5)  # alpha 1: channels equalised
    assert rows[1]["act_ratio"] == pytest.approx(rows[1]["w_ratio"], rel=1e-4)  # equal shares
    base = sq_lab.layer_difficulty(x, w)
    assert rows[1]["act_sqnr"] > base["act_sqnr"] + 2  # the outlier channel is tamed
    assert rows[1]["out_sqnr"] > base["out_sqnr"]
    with pytest.raises(ValueError, match="expected x"):
        sq_lab.layer_difficulty(x, w[:, :5])


def test_group_sweeps_use_row_subsets_faithfully(pocket, acts):
    groups = sq_lab.smooth_groups(pocket, towers=("vision",))[:2]
    alphas = [0.25, 0.75]
    full = sq_lab.group_sweeps(pocket, groups, acts, alphas, 8, max_rows=10**9, max_out=10**9)
    assert full.shape == (2, 2)
    for i, g in enumerate(groups):
        rows = sq_lab.alpha_sweep(acts[g.key], sq_lab.group_weight(pocket, g), alphas)
        assert full[i] == pytest.approx([r["out_sqnr"] for r in rows], abs=1e-6)
    sub = sq_lab.group_sweeps(pocket, groups, acts, alphas, 8, max_rows=256, max_out=64)
    assert np.all(np.isfinite(sub)) and np.abs(sub - full).max() < 3.0


# --------------------------------------------------------------------------- quantized probes


def test_calibration_clips(acts):
    clips = sq_lab.calibration_clips(acts)
    for name, x in acts.items():
        top = float(x.abs().max())
        assert clips["min-max"][name] == pytest.approx(top, rel=1e-6)
        assert 0 < clips["percentile"][name] <= top * (1 + 1e-6)


def test_text_embedding_error_grows_as_bits_shrink(pocket, tok, data, acts):
    caps = data.captions
    reference = encode_texts(pocket, tok, caps)
    clips = sq_lab.calibration_clips(acts)["min-max"]

    def text(name, module):
        return name.startswith(("text_model", "text_projection"))

    errs = {
        b: sq_lab.text_embedding_error(reference, pocket, tok, caps, clips, b, text)
        for b in (12, 8, 4)
    }
    assert 0 <= errs[12] < errs[8] < errs[4]
    assert errs[12] < 1e-3  # W8 weights set the floor
    with pytest.raises(ValueError, match="rows"):
        sq_lab.text_embedding_error(reference[:2], pocket, tok, caps, clips, 8, text)


def test_embedding_gap_checks_its_inputs(ref):
    assert sq_lab.embedding_gap(ref, ref)["text_max_abs"] == 0.0
    with pytest.raises(ValueError, match="share no tower"):
        sq_lab.embedding_gap({"image": ref["image"]}, {"text": ref["text"]})
    with pytest.raises(ValueError, match="shapes differ"):
        sq_lab.embedding_gap(ref, {"text": ref["text"][:1]})


# --------------------------------------------------------------------------- figures


def test_figures_draw(pocket, acts):
    g = sq_lab.smooth_groups(pocket, towers=("text",))[1]
    x, w = acts[g.key][:200], sq_lab.group_weight(pocket, g)[::8]
    s = smooth_scales(channel_absmax(x), w.abs().amax(dim=0), 0.5)
    figs = [
        sq_lab.smoothing_figure(x, w, s, title="t"),
        sq_lab.alpha_figure(x, w, 0.3, a_bits=6),
    ]
    d = [sq_lab.layer_difficulty(x, w)] * 3
    figs.append(sq_lab.difficulty_figure(["a", "b", "c"], d, d, 0.5))
    arr = np.array([[1.0, 2.0], [3.0, 1.0]])
    figs.append(
        sq_lab.alpha_tradeoff_figure([0, 1], {"t": arr}, [0, 1], {8: [1e-3, 2e-3]}, {8: 3e-3}, 0.5)
    )
    for fig in figs:
        assert len(fig.axes) >= 2
        plt.close(fig)
    with pytest.raises(ValueError, match="equal length"):
        sq_lab.difficulty_figure(["a"], d, d, 0.5)
    assert math.isfinite(d[0]["out_sqnr"])


def test_alpha_playground_builds_sliders(acts, pocket):
    ipywidgets = pytest.importorskip("ipywidgets")
    g = sq_lab.smooth_groups(pocket, towers=("text",))[1]
    widget = sq_lab.alpha_playground(acts[g.key][:100], sq_lab.group_weight(pocket, g)[::16])
    assert isinstance(widget, ipywidgets.interactive)
    plt.close("all")
