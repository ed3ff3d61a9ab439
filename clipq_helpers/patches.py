"""Cutting images into ViT patches (chapter 1)."""

from __future__ import annotations

import torch

from ._checks import check_finite, check_nonempty, check_positive_int, ensure_tensor

__all__ = ["patchify"]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """Split images into flattened non-overlapping patches.

    Args:
        images: ``(B, C, H, W)``; H and W must be multiples of ``patch``. Any dtype
            (a pure rearrangement); float inputs must be finite.
        patch: patch side length in pixels.
    Returns:
        ``(B, (H/patch) * (W/patch), C * patch * patch)``: patches in row-major order over the
        patch grid (left to right, then top to bottom), each flattened in ``(C, patch, patch)``
        order, i.e. exactly what a ``Conv2d(C, D, kernel_size=patch, stride=patch)`` sees::

            patchify(x, p) @ conv.weight.reshape(D, -1).T + conv.bias
            == conv(x).flatten(2).transpose(1, 2)
    """
    images = ensure_tensor(images, "images")
    if images.dim() != 4:
        raise ValueError(f"images must be 4-D (B, C, H, W), got shape {tuple(images.shape)}")
    check_nonempty(images, "images")
    check_finite(images, "images")
    patch = check_positive_int(patch, "patch")
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(
            f"image size H x W = {h} x {w} is not divisible by patch = {patch}; "
            f"resize or crop to a multiple of the patch size"
        )
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, gh, gw, C, p, p)
    return x.reshape(b, gh * gw, c * patch * patch)
