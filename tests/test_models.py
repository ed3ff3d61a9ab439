"""The three model tiers behind one loader, the tokenizer and the processor."""

import subprocess
import sys
import time

import pytest
import torch

from clipq_helpers import models, shapes, text
from clipq_helpers.processor import pixels_from_uint8

POCKET = (models.POCKET_DIR / "model.safetensors").is_file()
needs_pocket = pytest.mark.skipif(not POCKET, reason="pocket checkpoint not built yet")


def test_tokenizer_is_character_level():
    tok = models.load_tokenizer("pocket")
    ids = tok("一个红色的大圆形在左上角")["input_ids"]
    toks = tok.convert_ids_to_tokens(ids)
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert toks[1:-1] == list("一个红色的大圆形在左上角")
    assert tok.convert_ids_to_tokens(tok("猫")["input_ids"])[1] == "[UNK]"


def test_vocab_covers_the_world():
    vocab = set(text.course_vocab())
    assert set(shapes.all_characters()) <= vocab
    assert text.course_vocab()[:5] == list(text.SPECIAL_TOKENS)


def test_fast_pixels_equal_processor():
    imgs = shapes.make_split("calibration", 3).images
    proc = models.load_processor("pocket") if POCKET else None
    if proc is None:
        from clipq_helpers.processor import image_processor

        ip = image_processor(shapes.IMAGE_SIZE)
    else:
        ip = proc.image_processor
    ref = ip(images=list(imgs), return_tensors="pt")["pixel_values"]
    assert torch.allclose(pixels_from_uint8(imgs), ref, atol=1e-5)


@needs_pocket
def test_pocket_loads_fast_and_runs():
    t = time.perf_counter()
    model = models.load_model("pocket")
    elapsed = time.perf_counter() - t
    assert elapsed < 5.0, f"pocket model took {elapsed:.1f} s to load"
    assert all(p.dtype == torch.float32 for p in model.parameters())
    tok = models.load_tokenizer("pocket")
    enc = tok(["一张红色圆形的图片"], return_tensors="pt")
    with torch.no_grad():
        t = models.text_embeddings(model, enc["input_ids"], enc["attention_mask"])
        v = models.image_embeddings(
            model, pixels_from_uint8(shapes.make_split("calibration", 2).images)
        )
    assert t.shape == (1, model.config.projection_dim) and v.shape == (
        2,
        model.config.projection_dim,
    )


@needs_pocket
def test_pocket_load_is_deterministic():
    a = models.load_model("pocket").state_dict()
    b = models.load_model("pocket").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_base_random_has_the_real_architecture():
    model = models.load_model("base-random")
    n = models.count_parameters(model)
    assert 185e6 < n < 191e6, n  # ~188M like the real checkpoint
    vc, tc = model.config.vision_config, model.config.text_config
    assert (vc.hidden_size, vc.num_hidden_layers, vc.num_attention_heads, vc.intermediate_size) == (
        768,
        12,
        12,
        3072,
    )
    assert (
        tc.hidden_size,
        tc.num_hidden_layers,
        tc.num_attention_heads,
        tc.intermediate_size,
        tc.vocab_size,
    ) == (768, 12, 12, 3072, 21128)
    px = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        out = model.vision_model(pixel_values=px)
        assert out.last_hidden_state.shape == (1, 197, 768)  # 14 x 14 patches + CLS
        assert models.image_embeddings(model, px).shape == (1, 512)
        ids = torch.tensor([[101, 800, 801, 102]])
        assert models.text_embeddings(model, ids, torch.ones_like(ids)).shape == (1, 512)
    assert abs(model.logit_scale.item() - 2.6592) < 1e-4


def test_base_random_is_seeded():
    a = models.load_model("base-random", seed=1).visual_projection.weight
    b = models.load_model("base-random", seed=1).visual_projection.weight
    assert torch.equal(a, b)


def test_unknown_name():
    with pytest.raises(ValueError, match="expected 'pocket', 'base-random' or a hub id"):
        models.load_model("tiny")


_BLOCKED = """
import socket
def _no(*a, **k):
    raise OSError("network blocked by the test")
socket.create_connection = _no
socket.socket.connect = lambda *a, **k: _no()
from clipq_helpers.models import load_model, ModelUnavailableError
try:
    load_model("OFA-Sys/chinese-clip-vit-base-patch16")
except ModelUnavailableError as e:
    print("CLEAR:", e)
"""


@pytest.mark.parametrize("offline_env", ["1", ""])
def test_hub_id_offline_raises_clear_error(tmp_path, offline_env):
    env = {
        "HF_HOME": str(tmp_path),
        "HF_HUB_OFFLINE": offline_env,
        "PATH": "/usr/bin:/bin",
        "HF_HUB_ETAG_TIMEOUT": "2",
        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
    }
    r = subprocess.run(
        [sys.executable, "-c", _BLOCKED], capture_output=True, text=True, env=env, timeout=120
    )
    assert "CLEAR:" in r.stdout, r.stdout + r.stderr
    assert "load_model('pocket')" in r.stdout


def test_never_trust_remote_code():
    src = (models.PACKAGE_DIR / "models.py").read_text()
    assert "trust_remote_code=True" not in src and "torch.load" not in src
