"""CLIP's contrastive head: similarity logits and the symmetric InfoNCE loss (chapter 2)."""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F

from ._checks import check_finite, check_float_tensor

__all__ = ["clip_logits", "clip_loss"]


def _logit_scale_tensor(logit_scale: float | torch.Tensor) -> torch.Tensor:
    if isinstance(logit_scale, torch.Tensor):
        if not logit_scale.is_floating_point():
            raise TypeError(
                f"logit_scale must be a float or a floating-point tensor, got {logit_scale.dtype}"
            )
        if logit_scale.numel() != 1:
            raise ValueError(
                f"logit_scale must be a single number (0-d tensor), got shape "
                f"{tuple(logit_scale.shape)}"
            )
        check_finite(logit_scale, "logit_scale")
        return logit_scale.reshape(())
    if isinstance(logit_scale, bool) or not isinstance(logit_scale, numbers.Real):
        raise TypeError(
            f"logit_scale must be a float or a 0-d tensor, got {type(logit_scale).__name__}"
        )
    if not torch.isfinite(torch.tensor(float(logit_scale))):
        raise ValueError(f"logit_scale contains NaN/Inf ({logit_scale}); expected a finite float")
    return torch.tensor(float(logit_scale))


def clip_logits(
    img_emb: torch.Tensor, txt_emb: torch.Tensor, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """Image-text similarity logits ``exp(logit_scale) * normalize(img) @ normalize(txt).T``.

    Args:
        img_emb: float ``(N, D)`` image embeddings (after the projection).
        txt_emb: float ``(M, D)`` text embeddings.
        logit_scale: the *log* of the temperature scale (CLIP stores ``log(1/0.07) = 2.6592``),
            a float or a 0-d tensor (e.g. ``model.logit_scale``; gradients flow through it).
    Returns:
        ``logits_per_image`` ``(N, M)`` in the embeddings' dtype; ``logits_per_text`` is its
        transpose. Rows are L2-normalised with ``F.normalize`` (eps 1e-12, so an all-zero
        embedding gives a zero row instead of NaN).
    """
    img_emb = check_float_tensor(img_emb, "img_emb")
    txt_emb = check_float_tensor(txt_emb, "txt_emb")
    if img_emb.dim() != 2 or txt_emb.dim() != 2:
        raise ValueError(
            f"img_emb and txt_emb must be 2-D (N, D) and (M, D), got shapes "
            f"{tuple(img_emb.shape)} and {tuple(txt_emb.shape)}"
        )
    if img_emb.shape[1] != txt_emb.shape[1]:
        raise ValueError(
            f"shape mismatch: img_emb has shape {tuple(img_emb.shape)} but txt_emb has shape "
            f"{tuple(txt_emb.shape)}; expected the same embedding size D"
        )
    scale = _logit_scale_tensor(logit_scale).to(device=img_emb.device)
    img = F.normalize(img_emb, dim=-1)
    txt = F.normalize(txt_emb, dim=-1)
    return scale.exp().to(img.dtype) * (img @ txt.T)


def clip_loss(logits_per_image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE: ``(CE(rows, arange(N)) + CE(columns, arange(N))) / 2``.

    Args:
        logits_per_image: float ``(N, N)``; row i = image i against all texts, the matching
            text of image i is text i.
    Returns:
        0-d tensor (differentiable).
    """
    logits = check_float_tensor(logits_per_image, "logits_per_image")
    if logits.dim() != 2 or logits.shape[0] != logits.shape[1]:
        raise ValueError(
            f"logits_per_image must be square (N, N) with matching pairs on the diagonal, "
            f"got shape {tuple(logits.shape)}"
        )
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
