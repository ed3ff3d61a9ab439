"""Figures and tables of the architecture and loss chapters (chapters 1 and 2).

Pure helpers compute what a figure shows (:func:`tower_shapes`, :func:`parameter_breakdown`,
:func:`softmax_at_temperatures`); the drawing functions take a matplotlib ``Axes`` or return a
``Figure`` and never call ``plt.show()``. Call :func:`clipq_helpers.plots.use_cjk_font` first
so that Chinese labels render.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Rectangle

__all__ = [
    "COMPONENTS",
    "clip_parameter_count",
    "dual_tower_figure",
    "draw_patch_grid",
    "image_grid",
    "markdown_table",
    "parameter_breakdown",
    "similarity_heatmap",
    "softmax_at_temperatures",
    "tower_shapes",
]

Stage = tuple[str, tuple[int, ...]]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def tower_shapes(config, batch: int = 1, seq_len: int = 16) -> dict[str, list[Stage]]:
    """Tensor shapes along both towers of a ``ChineseCLIPModel``, read from its config.

    Args:
        config: a ``transformers.ChineseCLIPConfig`` (``model.config``).
        batch: batch size B (images and captions).
        seq_len: number of tokens T of a caption, [CLS] and [SEP] included.
    Returns:
        ``{"vision": [...], "text": [...], "joint": [...]}``: lists of ``(stage, shape)`` in
        data-flow order, e.g. ``("patch embedding", (B, n, D))`` with ``n = (H / p) ** 2``.
    """
    batch = _positive_int(batch, "batch")
    seq_len = _positive_int(seq_len, "seq_len")
    v, t = config.vision_config, config.text_config
    size, patch = v.image_size, v.patch_size
    if size % patch:
        raise ValueError(f"image_size {size} is not a multiple of patch_size {patch}")
    grid = size // patch
    n, dv, dt, proj = grid * grid, v.hidden_size, t.hidden_size, config.projection_dim
    vision = [
        ("pixel_values", (batch, v.num_channels, size, size)),
        (f"patch embedding: Conv2d {patch}x{patch}, stride {patch}", (batch, n, dv)),
        ("+ [CLS] token, + position embeddings, LayerNorm", (batch, n + 1, dv)),
        (
            f"{v.num_hidden_layers} x encoder layer ({v.num_attention_heads} heads, MLP {v.intermediate_size})",
            (batch, n + 1, dv),
        ),
        ("[CLS] output, LayerNorm", (batch, dv)),
        ("visual_projection (no bias)", (batch, proj)),
    ]
    text = [
        ("caption -> tokenizer -> input_ids", (batch, seq_len)),
        ("token + position + type embeddings", (batch, seq_len, dt)),
        (
            f"{t.num_hidden_layers} x encoder layer ({t.num_attention_heads} heads, MLP {t.intermediate_size})",
            (batch, seq_len, dt),
        ),
        ("[CLS] output (position 0)", (batch, dt)),
        ("text_projection (no bias)", (batch, proj)),
    ]
    joint = [("L2-normalise, exp(logit_scale) * I @ T.T", (batch, batch))]
    return {"vision": vision, "text": text, "joint": joint}


def _shape_text(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.08",
            facecolor=color,
            edgecolor="#333333",
            linewidth=0.8,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=9.5)


def _arrow(ax: Axes, x0: float, y0: float, x1: float, y1: float) -> None:
    ax.annotate(
        "",
        xy=(x1, y1),
        xytext=(x0, y0),
        arrowprops=dict(arrowstyle="-|>", color="#333333", linewidth=0.9),
    )


def dual_tower_figure(
    config, batch: int = 1, seq_len: int = 16, title: str | None = None
) -> Figure:
    """Data-flow diagram of Chinese-CLIP's two towers with the tensor shapes of ``config``.

    Every shape is computed by :func:`tower_shapes`, so the figure shows the model it is given.
    Returns a new ``Figure`` (not shown).
    """
    shapes = tower_shapes(config, batch, seq_len)
    vision, text, joint = shapes["vision"], shapes["text"], shapes["joint"]
    rows = max(len(vision), len(text))
    fig, ax = plt.subplots(figsize=(8.4, 0.9 * (rows + 2) + 0.4))
    ax.set_xlim(0, 10)
    ax.set_ylim(-1.5, rows + 0.6)
    ax.axis("off")
    w, h = 4.5, 0.68
    columns = (
        (2.5, "图像塔 vision tower (ViT)", vision, "#DCEBF7"),
        (7.5, "文本塔 text tower (BERT/RoBERTa)", text, "#FBE7CC"),
    )
    bottoms = []
    for x, head, stages, color in columns:
        ax.text(x, rows + 0.3, head, ha="center", va="center", fontsize=11)
        # spread the stages over the same height so both columns end level
        ys = np.linspace(rows - 0.4, 0.5, len(stages))
        for i, (label, shape) in enumerate(stages):
            _box(ax, x, ys[i], w, h, f"{label}\n{_shape_text(shape)}", color)
            if i:
                _arrow(ax, x, ys[i - 1] - h / 2, x, ys[i] + h / 2)
        bottoms.append((x, ys[-1] - h / 2))
    label, shape = joint[0]
    _box(ax, 5.0, -1.0, 5.4, h, f"{label}\nlogits_per_image {_shape_text(shape)}", "#D5EFE6")
    for x, y in bottoms:
        _arrow(ax, x, y, 5.0 + (x - 5.0) * 0.45, -1.0 + h / 2)
    if title:
        ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return fig


def image_grid(
    images: Sequence[np.ndarray] | np.ndarray,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    size: float = 1.7,
    fontsize: float = 8.0,
) -> Figure:
    """A grid of RGB images (each ``(H, W, 3)`` uint8 or float in [0, 1]) with optional titles.

    Returns a new ``Figure``; titles may be Chinese and may contain newlines.
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    if titles is not None and len(titles) != n:
        raise ValueError(f"got {n} images but {len(titles)} titles; expected one title per image")
    ncols = min(n, 8) if ncols is None else _positive_int(ncols, "ncols")
    nrows = -(-n // ncols)
    extra = 0.0 if titles is None else 0.17 * max(str(t).count("\n") + 1 for t in titles)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, (size + extra) * nrows), squeeze=False
    )
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(np.asarray(images[i]))
            if titles is not None:
                ax.set_title(str(titles[i]), fontsize=fontsize)
    fig.tight_layout()
    return fig


def draw_patch_grid(
    ax: Axes, image: np.ndarray, patch: int, number: bool = False, color: str = "white"
) -> int:
    """Show ``image`` (H, W, 3) on ``ax`` with the ViT patch grid drawn over it.

    Args:
        patch: patch side in pixels; H and W must be multiples of it.
        number: write each patch's index (row-major, the order of the token sequence).
    Returns:
        the number of patches, (H / patch) * (W / patch).
    """
    patch = _positive_int(patch, "patch")
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be (H, W, C), got shape {image.shape}")
    height, width = image.shape[:2]
    if height % patch or width % patch:
        raise ValueError(f"image size {height}x{width} is not a multiple of patch {patch}")
    ax.imshow(image, extent=(0, width, height, 0), interpolation="nearest")
    for x in range(0, width + 1, patch):
        ax.axvline(x, color=color, linewidth=0.6)
    for y in range(0, height + 1, patch):
        ax.axhline(y, color=color, linewidth=0.6)
    rows, cols = height // patch, width // patch
    if number:
        for r in range(rows):
            for c in range(cols):
                ax.text(
                    (c + 0.5) * patch,
                    (r + 0.5) * patch,
                    str(r * cols + c),
                    color=color,
                    ha="center",
                    va="center",
                    fontsize=max(4.0, 80.0 / cols),
                )
    ax.set_xticks([])
    ax.set_yticks([])
    return rows * cols


def similarity_heatmap(
    ax: Axes,
    sim: torch.Tensor | np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    title: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "viridis",
    annotate: bool = False,
):
    """Heatmap of a similarity (or logit) matrix with the matching pairs (diagonal) outlined.

    Returns the ``AxesImage`` (for a colour bar).
    """
    m = sim.detach().cpu().numpy() if isinstance(sim, torch.Tensor) else np.asarray(sim)
    if m.ndim != 2:
        raise ValueError(f"sim must be 2-D, got shape {m.shape}")
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    for i in range(min(m.shape)):
        ax.add_patch(
            Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#D55E00", linewidth=1.4)
        )
    if annotate:
        mid = (np.nanmax(m) + np.nanmin(m)) / 2
        for (r, c), value in np.ndenumerate(m):
            ax.text(
                c,
                r,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > mid else "white",
            )
    for labels, setter, n in (
        (row_labels, ax.set_yticks, m.shape[0]),
        (col_labels, ax.set_xticks, m.shape[1]),
    ):
        if labels is None:
            setter([])
        else:
            if len(labels) != n:
                raise ValueError(f"expected {n} labels, got {len(labels)}")
            setter(range(n), labels=list(labels), fontsize=7.5)
    if col_labels is not None:
        for label in ax.get_xticklabels():
            label.set_rotation(60)
            label.set_horizontalalignment("right")
    if title:
        ax.set_title(title, fontsize=10)
    return im


def softmax_at_temperatures(sims: torch.Tensor, temperatures: Sequence[float]) -> torch.Tensor:
    """Softmax of cosine similarities ``sims`` (K,) divided by each temperature: (len(temperatures), K)."""
    sims = torch.as_tensor(sims).detach().to(torch.float64)
    if sims.dim() != 1:
        raise ValueError(f"sims must be 1-D (K,), got shape {tuple(sims.shape)}")
    taus = torch.as_tensor(list(temperatures), dtype=torch.float64)
    if taus.numel() == 0 or bool((taus <= 0).any()):
        raise ValueError(f"temperatures must be positive, got {list(temperatures)}")
    return torch.softmax(sims[None, :] / taus[:, None], dim=1)


#: Components of a ``ChineseCLIPModel`` in display order: (label, parameter-name prefixes).
COMPONENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("text: word embeddings", ("text_model.embeddings.word_embeddings.",)),
    ("text: position + type embeddings, LayerNorm", ("text_model.embeddings.",)),
    ("text: encoder layers", ("text_model.encoder.",)),
    ("text: pooler", ("text_model.pooler.",)),
    ("vision: patch embedding (Conv2d)", ("vision_model.embeddings.patch_embedding.",)),
    ("vision: [CLS] + position embeddings", ("vision_model.embeddings.",)),
    ("vision: pre/post LayerNorm", ("vision_model.pre_layrnorm.", "vision_model.post_layernorm.")),
    ("vision: encoder layers", ("vision_model.encoder.",)),
    ("projections (text + visual)", ("text_projection.", "visual_projection.")),
    ("logit_scale", ("logit_scale",)),
)


def parameter_breakdown(model: torch.nn.Module) -> dict[str, int]:
    """Parameter count of each component of a ``ChineseCLIPModel`` (labels of :data:`COMPONENTS`).

    Every parameter is counted once, under the first component whose prefix matches; the
    values sum to the model's total. Components without parameters are left out. Raises
    ValueError for a parameter no component claims (the model is not a ChineseCLIPModel).
    """
    counts = {label: 0 for label, _ in COMPONENTS}
    for name, p in model.named_parameters():
        for label, prefixes in COMPONENTS:
            if name.startswith(prefixes):
                counts[label] += p.numel()
                break
        else:
            raise ValueError(
                f"parameter {name!r} belongs to no known component; expected a ChineseCLIPModel"
            )
    return {k: v for k, v in counts.items() if v}


def clip_parameter_count(config) -> int:
    """Number of parameters of the ``ChineseCLIPModel`` that ``config`` describes.

    The model is built on PyTorch's ``meta`` device (shapes only, no memory, no weights),
    so this is the model's own count, also for the 188 M-parameter ViT-B/16, in well under a
    second. Reference of the exercise ``ch01.clip_parameter_count``.

    Args:
        config: a ``ChineseCLIPConfig`` or a dict like ``model.config.to_dict()`` (keys
            ``projection_dim``, ``text_config``, ``vision_config``).
    """
    from transformers import ChineseCLIPConfig, ChineseCLIPModel

    if isinstance(config, dict):
        config = ChineseCLIPConfig(**config)
    if not isinstance(config, ChineseCLIPConfig):
        raise TypeError(
            f"config must be a ChineseCLIPConfig or a dict, got {type(config).__name__}"
        )
    with torch.device("meta"):
        model = ChineseCLIPModel(config)
    return sum(p.numel() for p in model.parameters())


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub/MyST Markdown table; display it with ``IPython.display.Markdown``.

    Cells are converted with ``str``; ``|`` inside a cell is escaped. Every row must have
    as many cells as ``header``.
    """
    if not header:
        raise ValueError("header must name at least one column")
    empty = [i for i, h in enumerate(header) if not str(h).strip()]
    if empty:  # screen readers announce a column by its header (axe: empty-table-header)
        raise ValueError(f"header cells {empty} are empty: name every column")

    def line(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    out = [line(header), "|" + "---|" * len(header)]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(
                f"row {i} has {len(row)} cells, expected {len(header)} (one per header column)"
            )
        out.append(line(row))
    return "\n".join(out)
