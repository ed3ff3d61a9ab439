"""A CPU smoke run of the training command and the MiniLM initialisation."""

import json

import torch

from clipq_helpers import train
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
        ]
    )
    rep = json.loads((out / "train_report.json").read_text())
    assert len(rep["log"]) >= 2 and all(r["loss"] > 0 for r in rep["log"])
    assert (out / "model.safetensors").stat().st_size > 1_000_000
    assert set(rep["metrics"]) >= {"zero_shot", "t2i_R@1", "i2t_R@1"}
