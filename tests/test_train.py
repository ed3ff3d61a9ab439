"""A CPU smoke run of the training command and the MiniLM initialisation."""

import json

import numpy as np
import pytest
import torch

from clipq_helpers import train
from clipq_helpers.contrastive import clip_loss
from clipq_helpers.models import load_pocket
from clipq_helpers.outliers import load_minilm


def test_initial_model_copies_minilm():
    model, report = train.build_initial_model(seed=0)
    minilm, _ = load_minilm()
    a = model.text_model.encoder.layer[2].intermediate.dense.weight
    b = minilm.encoder.layer[2].intermediate.dense.weight
    assert torch.equal(a, b)
    assert report["rows_copied"] >= 10 and report["vocab_size"] > report["rows_copied"]


def test_training_smoke(tmp_path):
    out = tmp_path / "run"
    train.main(
        [
            "--steps",
            "3",
            "--batch-size",
            "16",
            "--group-size",
            "8",
            "--warmup",
            "1",
            "--eval-every",
            "0",
            "--out",
            str(out),
            "--cpu",
            "--threads",
            "1",
            "--p-prompt",
            "0.5",
            "--skip-eval",
        ]
    )
    rep = json.loads((out / "train_report.json").read_text())
    assert len(rep["log"]) >= 2 and all(r["loss"] > 0 for r in rep["log"])
    assert (out / "model.safetensors").stat().st_size > 1_000_000
    model = load_pocket(out)  # the saved checkpoint loads and runs
    with torch.no_grad():
        emb = model.get_image_features(pixel_values=torch.zeros(1, 3, 64, 64)).pooler_output
    assert emb.shape == (1, model.config.projection_dim) and torch.isfinite(emb).all()


def test_multi_positive_loss_reduces_to_clip_loss():
    logits = torch.randn(6, 6, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(
        train.multi_positive_clip_loss(logits, np.eye(6, dtype=bool)), clip_loss(logits)
    )


def test_multi_positive_loss_does_not_punish_true_matches():
    # caption 0 is true of images 0 and 1: putting all its mass on image 1 costs less than on image 2
    match = np.eye(3, dtype=bool)
    match[0, 1] = True
    on1 = torch.tensor([[0.0, 0, 0], [9, 9, 0], [0, 0, 9]])  # logits_per_image (image, text)
    on2 = torch.tensor([[0.0, 0, 0], [0, 9, 0], [9, 0, 9]])
    assert train.multi_positive_clip_loss(on1, match) < train.multi_positive_clip_loss(on2, match)


def test_saved_initial_model_is_bitwise_the_built_one(tmp_path):
    path = train.save_initial_model(tmp_path / "init.safetensors", seed=0)
    built, report = train.build_initial_model(seed=0)
    loaded, loaded_report = train.load_initial_model(path)
    a, b = built.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {k: loaded_report[k] for k in report} == report
    assert len(loaded_report["init_file_sha256"]) == 64


def test_init_file_must_come_from_save_init(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="--save-init"):
        train.load_initial_model(bad)


def test_parallel_prefetch_is_deterministic():
    def first(n):
        data = train._ParallelPrefetch(seed=3, batch_size=16, group_size=8, p_prompt=0.3, workers=2)
        try:
            return [data.next() for _ in range(n)]
        finally:
            data.close()

    a, b = first(3), first(3)
    for (ia, ca, ma), (ib, cb, mb) in zip(a, b, strict=True):
        assert np.array_equal(ia, ib) and ca == cb and np.array_equal(ma, mb)
    assert not np.array_equal(a[0][0], a[1][0])  # workers draw different streams
