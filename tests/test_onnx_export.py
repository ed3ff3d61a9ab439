"""ONNX export of both towers: names, dynamic axes, and equivalence with PyTorch."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch

from clipq_helpers.evaluate import tokenize
from clipq_helpers.models import image_embeddings, load_model, load_tokenizer, text_embeddings
from clipq_helpers.onnx_export import export_image_tower, export_text_tower, image_size
from clipq_helpers.ort_quant import make_session

# float32 ONNX Runtime vs PyTorch: the same operations in a different order; relative error
# of a few float32 epsilons per layer, far below this bound (relative to the largest value)
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def pocket():
    return load_model("pocket")


@pytest.fixture(scope="module")
def exported(pocket, tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return {
        "image": export_image_tower(pocket, d / "image.onnx"),
        "text": export_text_tower(pocket, d / "text.onnx"),
    }


def _max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(1.0, float(np.abs(b).max())))


def test_graph_names_and_dynamic_axes(exported):
    img = onnx.load(str(exported["image"]), load_external_data=False).graph
    assert [i.name for i in img.input] == ["pixel_values"]
    assert [o.name for o in img.output] == ["image_embeds"]
    dims = img.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [3, 64, 64]
    assert img.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    txt = onnx.load(str(exported["text"]), load_external_data=False).graph
    assert [i.name for i in txt.input] == ["input_ids", "attention_mask"]
    assert [o.name for o in txt.output] == ["text_embeds"]
    for inp in txt.input:
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.INT64
        assert all(d.dim_param for d in inp.type.tensor_type.shape.dim)  # batch and sequence


@pytest.mark.parametrize("batch", [1, 5])
def test_image_tower_matches_pytorch(pocket, exported, batch):
    x = torch.randn(
        batch,
        3,
        image_size(pocket),
        image_size(pocket),
        generator=torch.Generator().manual_seed(batch),
    )
    with torch.no_grad():
        ref = image_embeddings(pocket, x).numpy()
    out = make_session(exported["image"]).run(None, {"pixel_values": x.numpy()})[0]
    assert out.shape == ref.shape == (batch, pocket.config.projection_dim)
    assert _max_rel_diff(out, ref) < REL_TOL


@pytest.mark.parametrize(
    "texts", [["红色圆形"], ["一个红色的大圆形在左上角", "蓝色", "一张绿色三角形的图片"]]
)
def test_text_tower_matches_pytorch_with_padding(pocket, exported, texts):
    enc = tokenize(load_tokenizer("pocket"), texts)
    with torch.no_grad():
        ref = text_embeddings(pocket, enc["input_ids"], enc["attention_mask"]).numpy()
    feeds = {k: enc[k].numpy() for k in ("input_ids", "attention_mask")}
    out = make_session(exported["text"]).run(None, feeds)[0]
    assert out.shape == ref.shape == (len(texts), pocket.config.projection_dim)
    assert _max_rel_diff(out, ref) < REL_TOL


def test_padding_does_not_change_the_text_embedding(exported):
    """The attention mask is live in the graph: extra padding leaves a caption's embedding alone."""
    tok = load_tokenizer("pocket")
    short = tokenize(tok, ["红色圆形"])
    padded = tokenize(tok, ["红色圆形", "一个红色的大圆形在左上角的图片"])
    s = make_session(exported["text"])
    a = s.run(None, {k: short[k].numpy() for k in ("input_ids", "attention_mask")})[0][0]
    b = s.run(None, {k: padded[k].numpy() for k in ("input_ids", "attention_mask")})[0][0]
    assert padded["input_ids"].shape[1] > short["input_ids"].shape[1]
    assert _max_rel_diff(b, a) < REL_TOL


def test_export_rejects_non_eager_attention(pocket, tmp_path):
    m = copy.deepcopy(pocket)
    m.config.vision_config._attn_implementation = "sdpa"
    with pytest.raises(ValueError, match="eager"):
        export_image_tower(m, tmp_path / "x.onnx")


def test_export_rejects_other_modules(tmp_path):
    with pytest.raises(TypeError, match="ChineseCLIPModel"):
        export_text_tower(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
