"""The shipped pocket checkpoint: card metrics reproduce, outliers are real, acceptance bars."""

import json

import pytest

from clipq_helpers import evaluate as ev
from clipq_helpers import models, outliers

POCKET = models.POCKET_DIR
pytestmark = pytest.mark.skipif(
    not (POCKET / "metrics.json").is_file(), reason="pocket checkpoint not built yet"
)


@pytest.fixture(scope="module")
def model_and_tok():
    return models.load_model("pocket"), models.load_tokenizer("pocket")


@pytest.fixture(scope="module")
def card_metrics():
    return json.loads((POCKET / "metrics.json").read_text())


def test_checkpoint_size():
    assert (POCKET / "model.safetensors").stat().st_size <= 40 * 2**20


def test_card_metrics_reproduce(model_and_tok, card_metrics):
    got = ev.evaluate(*model_and_tok).as_dict()
    for k, v in card_metrics.items():
        assert abs(got[k] - v) <= 0.001, (k, got[k], v)


def test_card_shows_the_metrics(card_metrics):
    card = (POCKET / "MODEL_CARD.md").read_text()
    for k in ("zero_shot", "zero_shot_seen", "t2i_R@1", "i2t_R@1"):
        assert f"{100 * card_metrics[k]:.1f}%" in card, k


def test_retrieval_benchmark_is_not_saturated(card_metrics):
    assert 0.50 <= card_metrics["t2i_R@1"] <= 0.95


def test_zero_shot_bar(card_metrics):
    assert card_metrics["zero_shot"] >= 0.85


def test_measured_outlier_in_a_layernorm_fed_linear(model_and_tok):
    rows = outliers.pocket_outlier_report(*model_and_tok, n=64)
    ln_fed = [r for r in rows if r.fed_by == "LayerNorm output" and r.tower == "text"]
    assert max(r.ratio for r in ln_fed) >= 15
