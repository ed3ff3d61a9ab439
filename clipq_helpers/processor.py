"""Image and text preprocessing compatible with ``ChineseCLIPProcessor`` conventions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers import ChineseCLIPProcessor

if TYPE_CHECKING:
    from transformers.models.chinese_clip.image_processing_pil_chinese_clip import (
        ChineseCLIPImageProcessorPil,
    )

#: CLIP's normalisation constants (RGB), used by Chinese-CLIP too.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def image_processor(size: int) -> ChineseCLIPImageProcessorPil:
    """Chinese-CLIP's image processor (PIL backend; no torchvision needed) for ``size`` pixels."""
    from transformers.models.chinese_clip.image_processing_pil_chinese_clip import (
        ChineseCLIPImageProcessorPil,
    )

    return ChineseCLIPImageProcessorPil(
        size={"height": size, "width": size},
        crop_size={"height": size, "width": size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )


def make_processor(tokenizer, size: int) -> ChineseCLIPProcessor:
    """A ``ChineseCLIPProcessor`` pairing ``tokenizer`` with the image processor for ``size``."""
    return ChineseCLIPProcessor(image_processor=image_processor(size), tokenizer=tokenizer)


def pixels_from_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Fast path for images already at the model's size.

    Args:
        images: uint8 (N, H, W, 3) RGB.
    Returns:
        float32 (N, 3, H, W), rescaled to [0, 1] and normalised with CLIP mean/std; equal to
        what :func:`image_processor` produces for images already of size H x W.
    """
    x = torch.as_tensor(np.asarray(images))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, H, W, 3), got {tuple(x.shape)} {x.dtype}"
        )
    x = x.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()
