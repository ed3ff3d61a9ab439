"""Export the two towers of a Chinese-CLIP model to ONNX (chapter 8).

* :func:`export_image_tower`: ``pixel_values`` float32 ``(B, 3, H, W)`` -> ``image_embeds``
  float32 ``(B, D)``, dynamic batch.
* :func:`export_text_tower`: ``input_ids``, ``attention_mask`` int64 ``(B, L)`` ->
  ``text_embeds`` float32 ``(B, D)``, dynamic batch and sequence length.

Both outputs are the projected, **un-normalised** embeddings, exactly what
:func:`clipq_helpers.models.image_embeddings` / :func:`~clipq_helpers.models.text_embeddings`
return (normalise them yourself before taking cosines).

Measured gotchas (DESIGN.md, "Deployment notes"): the exporter is the TorchScript one
(``dynamo=False``; the dynamo exporter needs ``onnxscript``, which the course does not
install), attention must be the eager implementation (the loader sets it), and the vision
embeddings check the image size, so the image tower is exported at the model's own size
(``config.vision_config.image_size``; only the batch axis is dynamic).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from .models import image_embeddings, text_embeddings

__all__ = [
    "ImageTower",
    "TextTower",
    "export_image_tower",
    "export_text_tower",
    "image_size",
    "IMAGE_INPUT",
    "IMAGE_OUTPUT",
    "TEXT_INPUTS",
    "TEXT_OUTPUT",
]

IMAGE_INPUT = "pixel_values"
IMAGE_OUTPUT = "image_embeds"
TEXT_INPUTS = ("input_ids", "attention_mask")
TEXT_OUTPUT = "text_embeds"


class ImageTower(nn.Module):
    """``pixel_values (B, 3, H, W) -> image_embeds (B, D)`` of a ``ChineseCLIPModel``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_embeddings(self.model, pixel_values)


class TextTower(nn.Module):
    """``input_ids, attention_mask (B, L) -> text_embeds (B, D)`` of a ``ChineseCLIPModel``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return text_embeddings(self.model, input_ids, attention_mask)


def image_size(model: nn.Module) -> int:
    """The image size (pixels) the vision embeddings of ``model`` accept."""
    return int(model.config.vision_config.image_size)


def _check_eager(model: nn.Module) -> None:
    cfg = getattr(model, "config", None)
    if cfg is None or not hasattr(cfg, "vision_config"):
        raise TypeError(
            f"expected a transformers ChineseCLIPModel, got {type(model).__name__}; "
            "load one with clipq_helpers.models.load_model()"
        )
    for sub in (cfg, cfg.text_config, cfg.vision_config):
        impl = getattr(sub, "_attn_implementation", None)
        if impl not in (None, "eager"):
            raise ValueError(
                f"attention implementation is {impl!r}; export needs 'eager' "
                "(clipq_helpers.models.load_model sets it)"
            )


def _export(module: nn.Module, args: tuple, path: Path, **kwargs) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    # The TorchScript exporter warns about tracing (python bools from shapes, deprecation
    # notices): expected here, and they would be noise in an executed chapter.
    with (
        torch.no_grad(),
        warnings.catch_warnings(),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=False, do_constant_folding=True, **kwargs)
    return path


def export_image_tower(model: nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Export the image tower of ``model`` (a ``ChineseCLIPModel``, eager attention) to ``path``.

    Input ``pixel_values`` float32 ``(B, 3, S, S)`` with ``S`` the model's image size
    (:func:`image_size`); output ``image_embeds`` float32 ``(B, D)``, the projected,
    un-normalised embedding. The batch axis is dynamic. Returns the path.
    """
    _check_eager(model)
    size = image_size(model)
    dummy = torch.zeros(2, 3, size, size)
    return _export(
        ImageTower(model),
        (dummy,),
        Path(path),
        input_names=[IMAGE_INPUT],
        output_names=[IMAGE_OUTPUT],
        dynamic_axes={IMAGE_INPUT: {0: "batch"}, IMAGE_OUTPUT: {0: "batch"}},
        opset_version=opset,
    )


def export_text_tower(model: nn.Module, path: str | Path, *, opset: int = 17) -> Path:
    """Export the text tower of ``model`` (a ``ChineseCLIPModel``, eager attention) to ``path``.

    Inputs ``input_ids`` and ``attention_mask`` int64 ``(B, L)``; output ``text_embeds``
    float32 ``(B, D)``, the projected, un-normalised embedding of the first ([CLS]) token.
    Batch and sequence axes are dynamic (``L`` up to the model's position-embedding size).
    Returns the path.
    """
    _check_eager(model)
    length = 8
    ids = torch.ones(2, length, dtype=torch.int64)
    mask = torch.ones(2, length, dtype=torch.int64)
    mask[1, length // 2 :] = 0  # a padded row, so masking is traced with real data
    axes = {0: "batch", 1: "sequence"}
    return _export(
        TextTower(model),
        (ids, mask),
        Path(path),
        input_names=list(TEXT_INPUTS),
        output_names=[TEXT_OUTPUT],
        dynamic_axes={TEXT_INPUTS[0]: axes, TEXT_INPUTS[1]: axes, TEXT_OUTPUT: {0: "batch"}},
        opset_version=opset,
    )
