"""Tests of clipq_helpers.figures: the shapes and counts the chapter figures show are right."""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from transformers import ChineseCLIPConfig, ChineseCLIPModel  # noqa: E402

from clipq_helpers import figures  # noqa: E402
from clipq_helpers.plots import use_cjk_font  # noqa: E402


def tiny_config(image_size: int = 16, patch: int = 4) -> ChineseCLIPConfig:
    """A ChineseCLIPConfig small enough to build and run in milliseconds."""
    return ChineseCLIPConfig(
        text_config=dict(
            vocab_size=30,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=24,
            max_position_embeddings=16,
        ),
        vision_config=dict(
            hidden_size=12,
            intermediate_size=20,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=patch,
        ),
        projection_dim=8,
    )


@pytest.fixture(scope="module")
def tiny_model() -> ChineseCLIPModel:
    torch.manual_seed(0)
    return ChineseCLIPModel(tiny_config()).eval()


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# --- tower_shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("batch,seq_len", [(1, 5), (3, 7)])
def test_tower_shapes_match_a_forward_pass(tiny_model, batch, seq_len):
    cfg = tiny_model.config
    shapes = figures.tower_shapes(cfg, batch=batch, seq_len=seq_len)
    pixels = torch.randn(batch, 3, cfg.vision_config.image_size, cfg.vision_config.image_size)
    ids = torch.randint(0, cfg.text_config.vocab_size, (batch, seq_len))
    seen = {}
    emb = tiny_model.vision_model.embeddings
    hooks = [
        emb.patch_embedding.register_forward_hook(
            lambda m, i, o: seen.__setitem__("patches", o.flatten(2).transpose(1, 2).shape)
        ),
        emb.register_forward_hook(lambda m, i, o: seen.__setitem__("vis_emb", o.shape)),
        tiny_model.text_model.embeddings.register_forward_hook(
            lambda m, i, o: seen.__setitem__("txt_emb", o.shape)
        ),
    ]
    with torch.no_grad():
        out = tiny_model(input_ids=ids, pixel_values=pixels)
        for h in hooks:
            h.remove()
        # ChineseCLIPModel overwrites vision_model_output.pooler_output with the projection
        vis = tiny_model.vision_model(pixel_values=pixels)
    vision = [s for _, s in shapes["vision"]]
    text = [s for _, s in shapes["text"]]
    assert vision == [
        tuple(pixels.shape),
        tuple(seen["patches"]),
        tuple(seen["vis_emb"]),
        tuple(vis.last_hidden_state.shape),
        tuple(vis.pooler_output.shape),
        tuple(out.image_embeds.shape),
    ]
    assert text == [
        tuple(ids.shape),
        tuple(seen["txt_emb"]),
        tuple(out.text_model_output.last_hidden_state.shape),
        (batch, cfg.text_config.hidden_size),
        tuple(out.text_embeds.shape),
    ]
    assert [s for _, s in shapes["joint"]] == [tuple(out.logits_per_image.shape)]


def test_tower_shapes_of_the_real_architecture_have_196_patches():
    from clipq_helpers.models import base_config

    vision = dict(figures.tower_shapes(base_config(), batch=2)["vision"])
    patch_stage = next(k for k in vision if k.startswith("patch embedding"))
    n_patches = (224 // 16) ** 2
    assert vision[patch_stage] == (2, n_patches, 768)
    assert (2, n_patches + 1, 768) in vision.values()


@pytest.mark.parametrize(
    "kwargs,error",
    [
        (dict(batch=0), ValueError),
        (dict(seq_len=-1), ValueError),
        (dict(batch=2.0), TypeError),
        (dict(batch=True), TypeError),
    ],
)
def test_tower_shapes_rejects_bad_sizes(kwargs, error):
    with pytest.raises(error, match="batch|seq_len"):
        figures.tower_shapes(tiny_config(), **kwargs)


def test_tower_shapes_rejects_image_not_multiple_of_patch():
    with pytest.raises(ValueError, match="multiple"):
        figures.tower_shapes(tiny_config(image_size=18, patch=4))


# --- parameter_breakdown -----------------------------------------------------------------


def test_parameter_breakdown_sums_to_the_total_and_groups_by_tower(tiny_model):
    bd = figures.parameter_breakdown(tiny_model)
    assert sum(bd.values()) == sum(p.numel() for p in tiny_model.parameters())
    text = sum(v for k, v in bd.items() if k.startswith("text:"))
    vision = sum(v for k, v in bd.items() if k.startswith("vision:"))
    assert text == sum(p.numel() for p in tiny_model.text_model.parameters())
    assert vision == sum(p.numel() for p in tiny_model.vision_model.parameters())
    cfg = tiny_model.config
    assert bd["text: word embeddings"] == cfg.text_config.vocab_size * cfg.text_config.hidden_size
    assert bd["logit_scale"] == 1
    proj = cfg.projection_dim * (cfg.text_config.hidden_size + cfg.vision_config.hidden_size)
    assert bd["projections (text + visual)"] == proj
    assert list(bd) == [label for label, _ in figures.COMPONENTS if label in bd]


def test_parameter_breakdown_rejects_other_models():
    with pytest.raises(ValueError, match="no known component"):
        figures.parameter_breakdown(torch.nn.Linear(3, 2))


def test_clip_parameter_count_is_the_models_own_count(tiny_model):
    cfg = tiny_model.config
    real = sum(p.numel() for p in tiny_model.parameters())
    assert figures.clip_parameter_count(cfg) == real
    assert figures.clip_parameter_count(cfg.to_dict()) == real
    wider = tiny_config(image_size=32, patch=8)
    torch.manual_seed(0)
    assert figures.clip_parameter_count(wider) == sum(
        p.numel() for p in ChineseCLIPModel(wider).parameters()
    )
    with pytest.raises(TypeError, match="ChineseCLIPConfig or a dict"):
        figures.clip_parameter_count(42)


# --- softmax_at_temperatures -------------------------------------------------------------


def test_softmax_at_temperatures_matches_softmax_and_sharpens():
    sims = torch.tensor([0.3, 0.1, -0.2, 0.25])
    taus = [2.0, 1.0, 0.1, 0.01]
    p = figures.softmax_at_temperatures(sims, taus)
    assert p.shape == (len(taus), len(sims))
    torch.testing.assert_close(p.sum(dim=1), torch.ones(len(taus), dtype=p.dtype))
    for k, tau in enumerate(taus):
        torch.testing.assert_close(p[k], torch.softmax(sims.double() / tau, dim=0))
    top = p[:, 0]
    assert bool((top[1:] > top[:-1]).all())  # lower temperature, more mass on the max


def test_softmax_at_temperatures_accepts_a_tensor_that_requires_grad():
    sims = torch.tensor([0.2, 0.1], requires_grad=True)
    assert figures.softmax_at_temperatures(sims, [0.5]).shape == (1, 2)


@pytest.mark.parametrize(
    "sims,taus", [([0.1, 0.2], [0.0]), ([0.1], [-1.0]), ([0.1], []), ([[0.1, 0.2]], [1.0])]
)
def test_softmax_at_temperatures_rejects_bad_input(sims, taus):
    with pytest.raises(ValueError):
        figures.softmax_at_temperatures(torch.tensor(sims), taus)


# --- markdown_table ----------------------------------------------------------------------


def test_markdown_table_layout_and_escaping():
    text = figures.markdown_table(["a", "b"], [[1, "x|y"], ["中文", 2.5]])
    assert text.splitlines() == [
        "| a | b |",
        "|---|---|",
        "| 1 | x\\|y |",
        "| 中文 | 2.5 |",
    ]


def test_markdown_table_rejects_ragged_rows():
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        figures.markdown_table(["a", "b"], [[1, 2], [3]])
    with pytest.raises(ValueError, match="header"):
        figures.markdown_table([], [])


def test_markdown_table_rejects_empty_header_cells():
    with pytest.raises(ValueError, match=r"header cells \[0\] are empty"):
        figures.markdown_table(["", "b"], [[1, 2]])


# --- drawing -----------------------------------------------------------------------------


def test_image_grid_shows_every_image_with_its_title():
    images = np.zeros((5, 8, 8, 3), np.uint8)
    titles = [f"image {i}" for i in range(5)]
    fig = figures.image_grid(images, titles, ncols=3)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(shown) == 5
    assert [ax.get_title() for ax in shown] == titles


def test_image_grid_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        figures.image_grid([])
    with pytest.raises(ValueError, match="one title per image"):
        figures.image_grid(np.zeros((2, 4, 4, 3)), ["a"])


def test_draw_patch_grid_counts_patches_and_draws_the_grid():
    fig, ax = plt.subplots()
    n = figures.draw_patch_grid(ax, np.zeros((24, 16, 3)), 8, number=True)
    assert n == (24 // 8) * (16 // 8)
    assert len(ax.lines) == (16 // 8 + 1) + (24 // 8 + 1)
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(i) for i in range(n))
    with pytest.raises(ValueError, match="multiple"):
        figures.draw_patch_grid(ax, np.zeros((20, 16, 3)), 8)


def test_similarity_heatmap_outlines_the_diagonal():
    fig, ax = plt.subplots()
    sim = torch.eye(4) * 0.8
    im = figures.similarity_heatmap(ax, sim, list("abcd"), list("wxyz"), annotate=True)
    assert isinstance(im, AxesImage)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted(b.get_xy() for b in boxes) == [(i - 0.5, i - 0.5) for i in range(4)]
    assert len(ax.texts) == 16
    with pytest.raises(ValueError, match="expected 4 labels"):
        figures.similarity_heatmap(ax, sim, list("abc"))


def test_dual_tower_figure_labels_every_shape_and_renders_chinese(tiny_model):
    with matplotlib.rc_context(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph would warn
        use_cjk_font()
        fig = figures.dual_tower_figure(tiny_model.config, batch=2, seq_len=6, title="双塔")
        fig.canvas.draw()
    text = "\n".join(t.get_text() for t in fig.axes[0].texts)
    for stages in figures.tower_shapes(tiny_model.config, 2, 6).values():
        for label, shape in stages:
            assert label in text
            assert "(" + ", ".join(map(str, shape)) + ")" in text
    assert "图像塔" in text and "文本塔" in text
