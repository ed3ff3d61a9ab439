"""The INT8 ONNX files run in a fresh process that cannot import torch: onnxruntime + numpy only."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from clipq_helpers.models import load_model, load_tokenizer
from clipq_helpers.ort_quant import course_int8, make_session

# A sys.meta_path finder that makes torch, transformers and the course package unimportable,
# then inference with onnxruntime and numpy alone; the outputs go to a .npz for comparison.
CHILD = textwrap.dedent(
    """
    import sys

    BLOCKED = ("torch", "transformers", "clipq_helpers", "safetensors")

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("torch could be imported: the blocker does not work")

    import numpy as np
    import onnxruntime as ort

    image_path, text_path, inputs, out = sys.argv[1:5]
    x = np.load(inputs)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    img = ort.InferenceSession(image_path, opts, providers=["CPUExecutionProvider"])
    txt = ort.InferenceSession(text_path, opts, providers=["CPUExecutionProvider"])
    image_embeds = img.run(["image_embeds"], {"pixel_values": x["pixels"]})[0]
    text_embeds = txt.run(
        ["text_embeds"], {"input_ids": x["input_ids"], "attention_mask": x["attention_mask"]}
    )[0]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    if loaded:
        raise SystemExit(f"blocked modules were loaded: {loaded}")
    np.savez(out, image=image_embeds, text=text_embeds)
    print("ok", image_embeds.shape, text_embeds.shape)
    """
)


@pytest.fixture(scope="module")
def int8_files(tmp_path_factory):
    model, tok = load_model("pocket"), load_tokenizer("pocket")
    return course_int8(model, tok, tmp_path_factory.mktemp("int8"), calib_n=16)


def test_int8_towers_run_without_torch(int8_files, tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    tok = load_tokenizer("pocket")
    enc = tok(["红色圆形在左上角", "一个蓝色的小三角形"], padding=True, return_tensors="np")
    ids = enc["input_ids"].astype(np.int64)
    mask = enc["attention_mask"].astype(np.int64)
    np.savez(tmp_path / "in.npz", pixels=pixels, input_ids=ids, attention_mask=mask)
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    out = tmp_path / "out.npz"
    proc = subprocess.run(
        [
            sys.executable,
            "-I",  # isolated: no user site, no PYTHONPATH, no current folder on sys.path
            str(script),
            str(int8_files["image_int8"]),
            str(int8_files["text_int8"]),
            str(tmp_path / "in.npz"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = np.load(out)
    # the same files run in this process give the same numbers
    img = make_session(int8_files["image_int8"]).run(None, {"pixel_values": pixels})[0]
    txt = make_session(int8_files["text_int8"]).run(
        None, {"input_ids": ids, "attention_mask": mask}
    )[0]
    dim = load_model("pocket").config.projection_dim
    assert got["image"].shape == img.shape == (3, dim)
    assert got["text"].shape == txt.shape == (2, dim)
    np.testing.assert_allclose(got["image"], img, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["text"], txt, rtol=1e-5, atol=1e-5)
