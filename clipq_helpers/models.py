"""One loader for the course's three model tiers.

* ``"pocket"`` (default): the small Chinese-CLIP this project trains on the shapes world and
  ships in ``clipq_helpers/pocket/`` (safetensors, fp16 storage, upcast to float32 on load).
* a hub id such as ``"OFA-Sys/chinese-clip-vit-base-patch16"``: the real model, when online.
* ``"base-random"``: the real ViT-B/16 + RoBERTa-base architecture with seeded random weights,
  for shape tests and speed/size benchmarks (speed does not depend on weight values).

It also hides the transformers-5 API detail that ``get_image_features`` / ``get_text_features``
return output objects: :func:`image_embeddings` and :func:`text_embeddings` return tensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import ChineseCLIPConfig, ChineseCLIPModel, ChineseCLIPProcessor

from . import processor as _proc
from . import text as _text

PACKAGE_DIR = Path(__file__).resolve().parent
POCKET_DIR = PACKAGE_DIR / "pocket"
BASE_CONFIG_FILE = PACKAGE_DIR / "configs" / "chinese-clip-vit-base-patch16.json"
REAL_MODEL_ID = "OFA-Sys/chinese-clip-vit-base-patch16"
TIERS = ("pocket", "base-random")


class ModelUnavailableError(RuntimeError):
    """The requested model cannot be loaded here (e.g. a hub id while offline)."""


def pocket_config(vocab_size: int) -> ChineseCLIPConfig:
    """Config of the pocket model: MiniLM-L6-H384 text tower, small ViT (64 px, patch 8)."""
    return ChineseCLIPConfig(
        text_config=dict(
            vocab_size=vocab_size,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            hidden_act="gelu",
            max_position_embeddings=_text.MAX_LENGTH,
            type_vocab_size=2,
            layer_norm_eps=1e-12,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            pad_token_id=0,
        ),
        vision_config=dict(
            hidden_size=192,
            intermediate_size=768,
            num_hidden_layers=6,
            num_attention_heads=3,
            image_size=64,
            patch_size=8,
            hidden_act="quick_gelu",
            layer_norm_eps=1e-5,
            attention_dropout=0.0,
            projection_dim=256,
        ),
        projection_dim=256,
        logit_scale_init_value=2.6592,
    )


def base_config() -> ChineseCLIPConfig:
    """Config of the real ``OFA-Sys/chinese-clip-vit-base-patch16`` architecture (no download)."""
    d = json.loads(BASE_CONFIG_FILE.read_text(encoding="utf-8"))
    d.pop("_comment", None)
    return ChineseCLIPConfig(**d)


def _eager(model: ChineseCLIPModel) -> ChineseCLIPModel:
    model.config._attn_implementation = "eager"
    for sub in (model.config.text_config, model.config.vision_config):
        sub._attn_implementation = "eager"
    return model


def load_pocket(directory: str | Path = POCKET_DIR) -> ChineseCLIPModel:
    """Load the shipped pocket checkpoint (safetensors), upcast to float32, in eval mode."""
    directory = Path(directory)
    weights = directory / "model.safetensors"
    if not weights.is_file():
        raise ModelUnavailableError(
            f"pocket checkpoint not found at {weights}. Reinstall the course (pip install -r requirements.txt) "
            "or rebuild it with `python -m clipq_helpers.train`."
        )
    config = ChineseCLIPConfig.from_pretrained(directory)
    model = ChineseCLIPModel(config)
    state = {k: v.to(torch.float32) for k, v in load_file(str(weights)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise ModelUnavailableError(
            f"checkpoint does not match the config: missing {missing}, unexpected {unexpected}"
        )
    return _eager(model).eval()


def load_model(name: str = "pocket", *, seed: int = 0) -> ChineseCLIPModel:
    """Load a model tier by name; returns ``ChineseCLIPModel`` in eval mode, float32, eager attention.

    Args:
        name: ``"pocket"`` (default), ``"base-random"`` or a hub id like ``"OFA-Sys/chinese-clip-vit-base-patch16"``.
        seed: seed of the random weights of ``"base-random"``.
    """
    if name == "pocket":
        return load_pocket()
    if name == "base-random":
        torch.manual_seed(seed)
        return _eager(ChineseCLIPModel(base_config())).eval()
    if "/" not in name:
        raise ValueError(
            f"unknown model {name!r}; expected 'pocket', 'base-random' or a hub id like {REAL_MODEL_ID!r}"
        )
    return _eager(_from_hub(ChineseCLIPModel, name)).eval()


def _from_hub(cls, name: str):
    """``cls.from_pretrained(name)`` with safetensors only and a clear error when the hub is unreachable."""
    try:
        return cls.from_pretrained(name, use_safetensors=True, trust_remote_code=False)
    except (OSError, ValueError) as err:  # transformers raises OSError for offline / missing files
        offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
        raise ModelUnavailableError(
            f"could not load {name!r} from the Hugging Face hub{' (HF_HUB_OFFLINE is set)' if offline else ''}: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}\n"
            f'To use the real model, go online once and run `python -c "from clipq_helpers.models import load_model; '
            f"load_model('{name}')\"` (it is cached afterwards), or use load_model('pocket') offline."
        ) from None


def load_tokenizer(name: str = "pocket"):
    """Tokenizer of a tier: the course vocabulary for pocket/base-random, the hub's for a hub id."""
    if name in TIERS:
        return _text.load_tokenizer(POCKET_DIR / "vocab.txt")
    from transformers import BertTokenizer

    try:
        return BertTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelUnavailableError(
            f"could not load the tokenizer of {name!r} from the hub ({type(err).__name__}); use 'pocket' offline"
        ) from None


def load_processor(name: str = "pocket") -> ChineseCLIPProcessor:
    """``ChineseCLIPProcessor`` of a tier (image size 64 for pocket, 224 for base-random / the real model)."""
    if name == "pocket":
        return _proc.make_processor(
            load_tokenizer(name),
            ChineseCLIPConfig.from_pretrained(POCKET_DIR).vision_config.image_size,
        )
    if name == "base-random":
        return _proc.make_processor(load_tokenizer(name), base_config().vision_config.image_size)
    try:
        return ChineseCLIPProcessor.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise ModelUnavailableError(
            f"could not load the processor of {name!r} from the hub ({type(err).__name__}); use 'pocket' offline"
        ) from None


def image_embeddings(model: ChineseCLIPModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected image embeddings (N, projection_dim), float32, NOT normalised."""
    out = model.get_image_features(pixel_values=pixel_values)
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def text_embeddings(
    model: ChineseCLIPModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Projected text embeddings (N, projection_dim), float32, NOT normalised."""
    out = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())
