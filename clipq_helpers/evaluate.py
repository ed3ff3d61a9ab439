"""Evaluation API: zero-shot accuracy, retrieval Recall@K, embedding cosine between two models.

All functions take a ``ChineseCLIPModel`` (FP32 or fake-quantized: anything with
``get_image_features`` / ``get_text_features``) and work on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from . import shapes
from .models import image_embeddings, text_embeddings
from .processor import pixels_from_uint8

ZERO_SHOT_TEMPLATE = "一张{}的图片"


@lru_cache(maxsize=8)
def _split(name: str, n: int | None = None) -> shapes.Split:
    return shapes.make_split(name, n)


def tokenize(tokenizer, texts: list[str]) -> dict[str, torch.Tensor]:
    """Batch-tokenise ``texts`` (padding to the longest); returns input_ids and attention_mask."""
    enc = tokenizer(list(texts), padding=True, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


@torch.no_grad()
def encode_images(model, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """L2-normalised image embeddings (N, D) float32 of uint8 images (N, H, W, 3)."""
    model.eval()
    out = [
        image_embeddings(model, pixels_from_uint8(images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return F.normalize(torch.cat(out).float(), dim=-1)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """L2-normalised text embeddings (N, D) float32."""
    model.eval()
    out = []
    for i in range(0, len(texts), batch_size):
        enc = tokenize(tokenizer, texts[i : i + batch_size])
        out.append(text_embeddings(model, enc["input_ids"], enc["attention_mask"]))
    return F.normalize(torch.cat(out).float(), dim=-1)


def class_names() -> list[tuple[str, str]]:
    """All colour-shape classes (colour, shape), in a fixed order."""
    return [(c, h) for c in shapes.COLOR_NAMES for h in shapes.SHAPES]


def class_prompts(color: str, shape: str, ensemble: bool = True) -> list[str]:
    """Prompts of one class: "一张{colour}{shape}的图片", plus (``ensemble``) a caption for every
    size and position, averaged into one class embedding (CLIP's prompt ensembling)."""
    prompts = [shapes.prompt(color, shape, ZERO_SHOT_TEMPLATE)]
    if ensemble:
        prompts += [
            shapes.describe(color, shape, s, p)
            for s in shapes.SIZE_NAMES
            for p in shapes.POSITION_NAMES
        ]
    return prompts


@torch.no_grad()
def class_embeddings(model, tokenizer, ensemble: bool = True) -> torch.Tensor:
    """L2-normalised class embeddings (64, D), one per colour-shape class (mean over its prompts)."""
    per_class = [class_prompts(c, h, ensemble) for c, h in class_names()]
    flat = [p for ps in per_class for p in ps]
    emb = encode_texts(model, tokenizer, flat).view(len(per_class), len(per_class[0]), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


@torch.no_grad()
def zero_shot_accuracy(model, tokenizer, split: str = "zeroshot", ensemble: bool = False) -> float:
    """Accuracy of classifying each image of ``split`` among all 64 colour-shape classes.

    The default split holds only colour-shape compositions never seen in training. By
    default a class is the single prompt "一张{colour}{shape}的图片"; with ``ensemble`` it is
    the mean embedding of the prompts of :func:`class_prompts`.
    """
    data = _split(split)
    classes = class_names()
    t = class_embeddings(model, tokenizer, ensemble)
    v = encode_images(model, data.images)
    pred = (v @ t.T).argmax(dim=1)
    truth = torch.tensor(
        [classes.index((s.objects[0].color, s.objects[0].shape)) for s in data.scenes]
    )
    return float((pred == truth).float().mean())


def recall_at_k(sim: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[int, float]:
    """Recall@K for a square similarity matrix whose diagonal holds the matching pairs (rows are queries)."""
    n = sim.shape[0]
    target = sim.diagonal().unsqueeze(1)
    rank = (sim > target).sum(dim=1)  # strict: ties count in favour of the true match
    return {k: float((rank < k).float().mean()) for k in ks if k <= n}


@dataclass(frozen=True)
class Report:
    """Standard evaluation: zero-shot accuracy on held-out compositions and retrieval recalls."""

    zero_shot: float
    zero_shot_seen: float
    t2i: dict[int, float]
    i2t: dict[int, float]

    def as_dict(self) -> dict[str, float]:
        d = {"zero_shot": self.zero_shot, "zero_shot_seen": self.zero_shot_seen}
        d.update({f"t2i_R@{k}": v for k, v in self.t2i.items()})
        d.update({f"i2t_R@{k}": v for k, v in self.i2t.items()})
        return d


@torch.no_grad()
def retrieval(
    model, tokenizer, split: str = "eval", n: int | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """Text->image and image->text Recall@1/5/10 on the hard retrieval benchmark."""
    data = _split(split, n)
    v = encode_images(model, data.images)
    t = encode_texts(model, tokenizer, data.captions)
    sim = t @ v.T
    return recall_at_k(sim), recall_at_k(sim.T)


def evaluate(model, tokenizer) -> Report:
    """The standard evaluation of the course (CPU, well under a minute for the pocket model)."""
    zs = zero_shot_accuracy(model, tokenizer)
    zs1 = zero_shot_accuracy(model, tokenizer, split="seen")
    t2i, i2t = retrieval(model, tokenizer)
    return Report(zs, zs1, t2i, i2t)


@torch.no_grad()
def embedding_cosine(
    model_a, model_b, tokenizer, split: str = "eval", n: int = 256
) -> dict[str, float]:
    """Mean cosine similarity between two models' embeddings of the same images and captions."""
    data = _split(split)
    imgs, caps = data.images[:n], data.captions[:n]
    img = (encode_images(model_a, imgs) * encode_images(model_b, imgs)).sum(-1)
    txt = (encode_texts(model_a, tokenizer, caps) * encode_texts(model_b, tokenizer, caps)).sum(-1)
    return {
        "image": float(img.mean()),
        "text": float(txt.mean()),
        "image_min": float(img.min()),
        "text_min": float(txt.min()),
    }
