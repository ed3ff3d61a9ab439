"""Stored grading cases: ``data/<exercise_id>.json`` + ``data/<exercise_id>.safetensors``.

The JSON file lists the cases (name, hint, arguments, expected result, extras); tensors are
referenced by key and live in the safetensors file. No pickle anywhere.

Value encoding (JSON):

* ``null``, booleans, ints, strings, finite floats: themselves;
* ``{"float": "inf"}`` / ``"-inf"`` / ``"nan"``: non-finite floats;
* ``{"tensor": key}``: a tensor from the safetensors file (a fresh copy on every decode);
* ``{"list": [...]}``, ``{"tuple": [...]}``, ``{"dict": {...}}``: containers;
* ``{"module": "LayerNorm" | "Linear", "weight": ..., "bias": ...}``: a torch module built
  from stored parameters (``eps`` for LayerNorm).
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["DATA_DIR", "FORMAT", "paths", "load", "decode", "Encoder", "write"]

DATA_DIR = Path(__file__).resolve().parent / "data"
FORMAT = 1


def paths(exercise_id: str, data_dir: Path | None = None) -> tuple[Path, Path]:
    """(json path, safetensors path) of an exercise's stored cases."""
    d = data_dir or DATA_DIR
    return d / f"{exercise_id}.json", d / f"{exercise_id}.safetensors"


@cache
def _load_cached(exercise_id: str, data_dir: str) -> tuple[dict, dict[str, torch.Tensor]]:
    jpath, tpath = paths(exercise_id, Path(data_dir))
    meta = json.loads(jpath.read_text(encoding="utf-8"))
    tensors = load_file(str(tpath)) if tpath.exists() else {}
    return meta, tensors


def load(exercise_id: str, data_dir: Path | None = None) -> tuple[dict, dict[str, torch.Tensor]]:
    """The stored (metadata, tensors) of an exercise; cached, never hand these to learner code."""
    return _load_cached(exercise_id, str(data_dir or DATA_DIR))


def decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Decode a stored value; tensors and modules are fresh copies."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, list):
        raise ValueError("bare JSON lists are not a stored value; use {'list': [...]}")
    if "tensor" in obj:
        return tensors[obj["tensor"]].clone()
    if "float" in obj:
        return float(obj["float"])
    if "list" in obj:
        return [decode(x, tensors) for x in obj["list"]]
    if "tuple" in obj:
        return tuple(decode(x, tensors) for x in obj["tuple"])
    if "dict" in obj:
        return {k: decode(v, tensors) for k, v in obj["dict"].items()}
    if "module" in obj:
        return _build_module(obj, tensors)
    raise ValueError(f"unknown stored value {obj!r}")


def _build_module(obj: dict, tensors: dict[str, torch.Tensor]) -> nn.Module:
    weight = tensors[obj["weight"]["tensor"]]
    bias = tensors[obj["bias"]["tensor"]] if obj.get("bias") else None
    if obj["module"] == "LayerNorm":
        mod = nn.LayerNorm(weight.shape[0], eps=obj.get("eps", 1e-5), bias=bias is not None)
    elif obj["module"] == "Linear":
        mod = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        raise ValueError(f"unknown module type {obj['module']!r}")
    with torch.no_grad():
        mod.weight.copy_(weight)
        if bias is not None:
            mod.bias.copy_(bias)
    return mod


class Encoder:
    """Collects tensors under unique keys while encoding values to JSON-able objects."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def tensor(self, t: torch.Tensor, key: str) -> dict:
        if key in self.tensors:
            raise ValueError(f"duplicate tensor key {key!r}")
        self.tensors[key] = t.detach().clone().contiguous()
        return {"tensor": key}

    def encode(self, v: Any, key: str) -> Any:
        if v is None or isinstance(v, bool | int | str):
            return v
        if isinstance(v, float):
            return v if math.isfinite(v) else {"float": str(v)}
        if isinstance(v, torch.Tensor):
            return self.tensor(v, key)
        if isinstance(v, nn.LayerNorm):
            out = {
                "module": "LayerNorm",
                "eps": float(v.eps),
                "weight": self.tensor(v.weight, f"{key}.weight"),
            }
            if v.bias is not None:
                out["bias"] = self.tensor(v.bias, f"{key}.bias")
            return out
        if isinstance(v, nn.Linear):
            out = {"module": "Linear", "weight": self.tensor(v.weight, f"{key}.weight")}
            if v.bias is not None:
                out["bias"] = self.tensor(v.bias, f"{key}.bias")
            return out
        if isinstance(v, list):
            return {"list": [self.encode(x, f"{key}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, tuple):
            return {"tuple": [self.encode(x, f"{key}.{i}") for i, x in enumerate(v)]}
        if isinstance(v, dict):
            return {"dict": {k: self.encode(x, f"{key}.{k}") for k, x in v.items()}}
        raise TypeError(f"cannot store a {type(v).__name__} ({key})")


def write(
    exercise_id: str, meta: dict, tensors: dict[str, torch.Tensor], data_dir: Path | None = None
) -> list[Path]:
    """Write the JSON and safetensors files (deterministic bytes); returns their paths."""
    jpath, tpath = paths(exercise_id, data_dir)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(
        json.dumps(meta, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    save_file(dict(sorted(tensors.items())), str(tpath))
    tpath.chmod(0o644)  # safetensors creates files readable by the owner only
    _load_cached.cache_clear()
    return [jpath, tpath]
