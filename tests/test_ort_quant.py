"""The course's ONNX Runtime INT8 pipeline and ONNX Runtime's own quantizer as a peer."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from clipq_helpers import shapes
from clipq_helpers.models import image_embeddings, load_model, load_tokenizer
from clipq_helpers.ort_quant import (
    OrtClip,
    ShapesCalibrationReader,
    course_int8,
    evaluate_onnx,
    linear_nodes,
    make_session,
    ort_image_embeddings,
    ort_text_embeddings,
    quantize_onnx,
    quantize_ort_default,
    reference_embeddings,
    smoothed_model,
)
from clipq_helpers.processor import pixels_from_uint8

CALIB_N = 32


def _min_cosine(n_quantized: int, sqnr_db: float = 30.0) -> float:
    """A floor for the mean cosine to FP32 implied by the method, not by a measured output.

    8-bit per-tensor quantization of one tensor whose max is <= ~10x its RMS keeps an SQNR of
    >= 30 dB (6.02*8 + 1.76 - 20*log10(10*sqrt(3)) ~ 25-31 dB). Assume each of the
    ``n_quantized`` quantized tensors (weights and activations) adds independent noise of that
    power: SNR_out >= 10^(sqnr/10) / n. For a small error orthogonal to the signal,
    1 - cos ~ 1 / (2 SNR).
    """
    snr = 10 ** (sqnr_db / 10) / n_quantized
    return 1.0 - 1.0 / (2.0 * snr)


@pytest.fixture(scope="module")
def pocket():
    return load_model("pocket")


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("pocket")


@pytest.fixture(scope="module")
def course(pocket, tok, tmp_path_factory):
    return course_int8(pocket, tok, tmp_path_factory.mktemp("course"), calib_n=CALIB_N)


def _init(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def test_course_files_exist_and_are_smaller(course):
    assert set(course) == {"image_fp32", "image_int8", "text_fp32", "text_int8"}
    for tower in ("image", "text"):
        ratio = course[f"{tower}_int8"].stat().st_size / course[f"{tower}_fp32"].stat().st_size
        # int8 weights are 1/4 of float32; embeddings, LayerNorms and biases stay float
        assert 0.2 < ratio < 0.4, (tower, ratio)


def test_linear_nodes_are_the_linears(course, pocket):
    names = linear_nodes(course["image_fp32"])
    layers = pocket.config.vision_config.num_hidden_layers
    # q, k, v, out_proj, fc1, fc2 per layer, and the projection; no attention products
    assert len(names) == 6 * layers + 1
    graph = onnx.load(str(course["image_fp32"]), load_external_data=False).graph
    matmuls = [n.name for n in graph.node if n.op_type == "MatMul"]
    assert len(matmuls) == len(names) + 2 * layers


def test_int8_graph_has_int8_per_channel_weights(course):
    graph = onnx.load(str(course["image_int8"])).graph
    init = _init(graph)
    weight_dq = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and init.get(n.input[0]) is not None
        and init[n.input[0]].ndim == 2
    ]
    assert len(weight_dq) == len(linear_nodes(course["image_fp32"]))
    for n in weight_dq:
        w, scale = init[n.input[0]], init[n.input[1]]
        assert w.dtype == np.int8
        assert scale.shape == (w.shape[1],)  # one scale per output channel (MatMul B is (in, out))
        if len(n.input) > 2:
            assert not init[n.input[2]].any()  # symmetric: zero points are 0


def test_symmetric_activations_use_zero_point_128(pocket, tok, course, tmp_path):
    reader = ShapesCalibrationReader("image", 16, image_size=64)
    q = quantize_onnx(
        course["image_fp32"], tmp_path / "sym.onnx", reader, symmetric_activations=True
    )
    graph = onnx.load(str(q)).graph
    init = _init(graph)
    zps = [init[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert zps and all(z.dtype == np.uint8 and int(z) == 128 for z in zps)


def test_int8_embeddings_close_to_fp32(course, pocket, tok):
    data = shapes.make_split("eval", 64)
    px = pixels_from_uint8(data.images).numpy()
    f = ort_image_embeddings(course["image_fp32"], px)
    q = ort_image_embeddings(course["image_int8"], px)
    enc = tok(data.captions, padding=True, return_tensors="np")
    tf = ort_text_embeddings(course["text_fp32"], enc["input_ids"], enc["attention_mask"])
    tq = ort_text_embeddings(course["text_int8"], enc["input_ids"], enc["attention_mask"])
    layers = {
        "image": pocket.config.vision_config.num_hidden_layers,
        "text": pocket.config.text_config.num_hidden_layers,
    }
    for tower, a, b in (("image", q, f), ("text", tq, tf)):
        cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        n_quantized = 2 * (4 * layers[tower] + 1)  # weights + inputs of 4 Linear groups/layer
        assert cos.mean() > _min_cosine(n_quantized), (tower, cos.mean())
        assert cos.mean() < 1 - 1e-7  # it really is quantized


def test_smoothed_model_keeps_the_function(pocket, tok):
    cal = shapes.make_split("calibration", 16)
    sm = smoothed_model(pocket, cal.images, cal.captions, tok, alpha=0.5)
    x = pixels_from_uint8(shapes.make_split("eval", 8).images)
    with torch.no_grad():
        a, b = image_embeddings(pocket, x), image_embeddings(sm, x)
    assert float((a - b).abs().max()) < 1e-3 * float(a.abs().max())
    ln0, ln1 = (
        pocket.vision_model.encoder.layers[0].layer_norm1,
        sm.vision_model.encoder.layers[0].layer_norm1,
    )
    assert not torch.equal(ln0.weight, ln1.weight)  # the parametrisation did change


def test_ort_defaults_quantize_weights_per_tensor(course, tmp_path):
    """onnxruntime 1.31's quantize_static defaults: per_channel=False, int8 activations."""
    reader = ShapesCalibrationReader("image", 16, image_size=64)
    q = quantize_ort_default(course["image_fp32"], tmp_path / "default.onnx", reader)
    graph = onnx.load(str(q)).graph
    init = _init(graph)
    weights = [
        n
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and init.get(n.input[0]) is not None
        and init[n.input[0]].ndim == 2
    ]
    assert weights and all(init[n.input[1]].ndim == 0 for n in weights)
    acts = [init[n.input[2]] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert acts and all(z.dtype == np.int8 for z in acts)


def test_fp32_onnx_embeddings_match_pytorch(course, pocket, tok):
    ref = reference_embeddings(pocket, tok, n=50)
    mine = reference_embeddings(OrtClip(course["image_fp32"], course["text_fp32"]), tok, n=50)
    for key in ("image", "text"):
        assert float((mine[key] * ref[key]).sum(-1).min()) > 1 - 1e-5


def test_evaluate_onnx_reports_the_course_metrics(course, pocket, tok):
    ref = reference_embeddings(pocket, tok, n=50)
    m = evaluate_onnx(course["image_int8"], course["text_int8"], tok, ref, n=50)
    for key in ("zero_shot", "zero_shot_seen", "t2i_R@1", "t2i_R@5", "i2t_R@1", "i2t_R@5"):
        assert 0.0 <= m[key] <= 1.0
    assert m["t2i_R@1"] <= m["t2i_R@5"]
    assert _min_cosine(50) < m["cosine_image"] < 1 and _min_cosine(50) < m["cosine_text"] < 1
    with pytest.raises(ValueError, match="reference"):
        evaluate_onnx(course["image_int8"], course["text_int8"], tok, ref, n=40)


def test_reader_batches_and_rewind(tok):
    r = ShapesCalibrationReader("text", 10, batch_size=4, tokenizer=tok)
    sizes = [b["input_ids"].shape[0] for b in iter(r.get_next, None)]
    assert sizes == [4, 4, 2] and len(r) == 3
    assert r.get_next() is None
    r.rewind()
    b = r.get_next()
    assert b["input_ids"].dtype == np.int64 and b["attention_mask"].shape == b["input_ids"].shape
    img = ShapesCalibrationReader("image", 3, image_size=96).get_next()["pixel_values"]
    assert img.shape == (3, 3, 96, 96) and img.dtype == np.float32


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tower": "audio"}, "tower"),
        ({"tower": "image", "n": 0}, "n must"),
        ({"tower": "image", "n": 10_000}, "n must"),
    ],
)
def test_reader_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShapesCalibrationReader(**kwargs)


def test_quantize_onnx_rejects_bad_options(course, tmp_path):
    reader = ShapesCalibrationReader("image", 4)
    with pytest.raises(ValueError, match="method"):
        quantize_onnx(course["image_fp32"], tmp_path / "x.onnx", reader, method="kl")
    with pytest.raises(ValueError, match="activation_type"):
        quantize_onnx(course["image_fp32"], tmp_path / "x.onnx", reader, activation_type="int4")


def test_make_session_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="deploy"):
        make_session(tmp_path / "nope.onnx")


def test_min_cosine_bound_is_sane():
    assert 0.9 < _min_cosine(50) < 0.999
    assert math.isclose(_min_cosine(1, 30.0), 1 - 1 / 2000)
