"""Outlier reports: statistics of every Linear's input, for both towers and for raw MiniLM.

Each row describes one ``nn.Linear`` input X (..., C): the per-tensor max |X|, high
percentiles, the per-channel max |X| and its max/median ratio (how far the tallest channel
sticks out), the top channels and the token positions where the largest values occur.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import shapes
from .evaluate import tokenize
from .processor import pixels_from_uint8
from .surgery import ROLE_INPUT, InputStats, collect_linear_inputs, linear_role
from .text import load_tokenizer

MINILM_SENTENCES = [
    "a red circle in the top left corner",
    "a small blue square on the right",
    "there is a large green triangle in the middle",
    "a yellow star is to the left of a purple hexagon",
    "an orange cross below a pink ring",
    "a photo of a cyan diamond",
    "the big circle is above the small square",
    "two shapes on a grey background",
]


@dataclass(frozen=True)
class OutlierRow:
    """Input statistics of one Linear (all magnitudes are max |x| style, float)."""

    name: str
    tower: str
    layer: int
    role: str
    fed_by: str
    channels: int
    tensor_absmax: float
    p99_9: float
    p99: float
    median_channel_absmax: float
    ratio: float  # max channel / median channel
    top_channels: tuple[tuple[int, float], ...]
    top_positions: tuple[tuple[int, float], ...]


def _quantile(x: torch.Tensor, q: float) -> float:
    if x.numel() > 8_000_000:
        x = x[:: (x.numel() // 8_000_000) + 1]
    return float(torch.quantile(x, q)) if x.numel() else float("nan")


def rows_from_stats(stats: dict[str, InputStats], tower: str, top: int = 3) -> list[OutlierRow]:
    """Turn hook statistics into report rows (one per Linear)."""
    rows = []
    for name, st in stats.items():
        ch = st.channel_absmax
        med = float(ch.median())
        vals, idx = ch.topk(min(top, len(ch)))
        pos: tuple = ()
        if st.position_absmax is not None:
            pv, pi = st.position_absmax.topk(min(top, len(st.position_absmax)))
            pos = tuple((int(i), round(float(v), 3)) for v, i in zip(pv, pi, strict=True))
        m = re.search(r"layers?\.(\d+)\.", name)
        rows.append(
            OutlierRow(
                name=name,
                tower=tower,
                layer=int(m.group(1)) if m else -1,
                role=linear_role(name),
                fed_by=ROLE_INPUT[linear_role(name)],
                channels=len(ch),
                tensor_absmax=round(float(ch.max()), 4),
                p99_9=round(_quantile(st.sample, 0.999), 4),
                p99=round(_quantile(st.sample, 0.99), 4),
                median_channel_absmax=round(med, 4),
                ratio=round(float(ch.max()) / med if med > 0 else float("inf"), 2),
                top_channels=tuple(
                    (int(i), round(float(v), 3)) for v, i in zip(vals, idx, strict=True)
                ),
                top_positions=pos,
            )
        )
    return rows


def pocket_stats(
    model, tokenizer, n: int = 128, split: str = "calibration"
) -> dict[str, dict[str, InputStats]]:
    """Linear-input statistics of both towers on ``n`` scenes of ``split``: {'text': ..., 'vision': ...}."""
    data = shapes.make_split(split, n)
    enc = tokenize(tokenizer, data.captions)
    px = pixels_from_uint8(data.images)
    text = collect_linear_inputs(model, lambda: model.get_text_features(**enc), prefix="text")
    vision = collect_linear_inputs(
        model, lambda: model.get_image_features(pixel_values=px), prefix="vision"
    )
    vision.update(
        collect_linear_inputs(
            model, lambda: model.get_image_features(pixel_values=px), prefix="visual_projection"
        )
    )
    text.update(
        collect_linear_inputs(
            model, lambda: model.get_text_features(**enc), prefix="text_projection"
        )
    )
    return {"text": text, "vision": vision}


def pocket_outlier_report(model, tokenizer, n: int = 128) -> list[OutlierRow]:
    """Outlier rows for both towers of a (pocket or real) Chinese-CLIP model."""
    st = pocket_stats(model, tokenizer, n)
    return rows_from_stats(st["text"], "text") + rows_from_stats(st["vision"], "vision")


def load_minilm():
    """The raw pretrained all-MiniLM-L6-v2 body (BertModel, eval) and its tokenizer, offline."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    from .train import minilm_dir

    d = minilm_dir()
    config = BertConfig.from_pretrained(d)
    config._attn_implementation = "eager"
    model = BertModel(config, add_pooling_layer=True)
    state = load_file(str(Path(d) / "model.safetensors"))
    model.load_state_dict(state, strict=False)
    return model.eval(), load_tokenizer(Path(d) / "vocab.txt", model_max_length=512)


def minilm_outlier_report(sentences: list[str] = MINILM_SENTENCES) -> list[OutlierRow]:
    """Outlier rows of the raw MiniLM body on English sentences (its own language)."""
    model, tok = load_minilm()
    enc = tok(sentences, padding=True, return_tensors="pt")
    st = collect_linear_inputs(model, lambda: model(**enc), prefix="encoder")
    return rows_from_stats(st, "minilm")


def as_records(rows: list[OutlierRow]) -> list[dict]:
    """Rows as plain dicts (e.g. for ``pandas.DataFrame``)."""
    return [asdict(r) for r in rows]


def markdown_table(rows: list[OutlierRow], roles: tuple[str, ...] = ("qkv", "fc1", "fc2")) -> str:
    """A compact markdown table of the rows with the given roles."""
    lines = [
        "| tower | layer | Linear | input | max | p99.9 | median ch. max | ratio | top channel |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.role in roles and not (r.role == "qkv" and not r.name.endswith(("q_proj", "query"))):
            ch, v = r.top_channels[0]
            lines.append(
                f"| {r.tower} | {r.layer} | {r.role} | {r.fed_by} | {r.tensor_absmax:.2f} | {r.p99_9:.2f} | "
                f"{r.median_channel_absmax:.2f} | {r.ratio:.1f} | {ch} ({v:.2f}) |"
            )
    return "\n".join(lines)


def plot_channel_absmax(stats: InputStats, title: str = "", ax=None, top: int = 3):
    """Bar plot of per-channel max |x| (the "few tall spikes" picture); returns the axes."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(7, 2.6))[1]
    ch = stats.channel_absmax.numpy()
    ax.bar(np.arange(len(ch)), ch, width=1.0, color="#0072B2")
    for i in np.argsort(ch)[::-1][:top]:
        ax.annotate(
            str(i), (i, ch[i]), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=8
        )
    ax.set_xlabel("输入通道 input channel")
    ax.set_ylabel("max |x|")
    ax.set_title(title)
    return ax
