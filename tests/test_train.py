"""A CPU smoke run of the training command and the MiniLM initialisation."""

import json

import numpy as np
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
