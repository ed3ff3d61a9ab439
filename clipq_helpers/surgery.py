"""Hooks and model surgery, in one place.

* :func:`collect_linear_inputs` records statistics of the input of every ``nn.Linear``
  (forward pre-hooks), the raw material of outlier reports and calibration.
* :func:`replace_linears` swaps ``nn.Linear`` modules for wrappers (e.g. ``QuantLinear``).
* :func:`linear_role` names what feeds a Linear in a Chinese-CLIP tower.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

_ROLES = (
    (re.compile(r"(self_attn\.(q|k|v)_proj|attention\.self\.(query|key|value))$"), "qkv"),
    (re.compile(r"(self_attn\.out_proj|attention\.output\.dense)$"), "attn_out"),
    (re.compile(r"(mlp\.fc1|intermediate\.dense)$"), "fc1"),
    (re.compile(r"(mlp\.fc2|(?<!attention\.)output\.dense)$"), "fc2"),
    (re.compile(r"(text_projection|visual_projection)$"), "projection"),
)

#: What feeds each role's input, for the tables of chapter 4.
ROLE_INPUT = {
    "qkv": "LayerNorm output",
    "attn_out": "attention context",
    "fc1": "LayerNorm output",
    "fc2": "GELU output",
    "projection": "pooled [CLS] (LayerNorm output in the vision tower)",
    "other": "other",
}


def linear_role(name: str) -> str:
    """Role of a Linear from its qualified name: 'qkv', 'attn_out', 'fc1', 'fc2', 'projection' or 'other'."""
    for pattern, role in _ROLES:
        if pattern.search(name):
            return role
    return "other"


def iter_linears(model: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Linear]]:
    """(qualified name, module) of every ``nn.Linear`` whose name starts with ``prefix``."""
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name.startswith(prefix):
            yield name, mod


@dataclass
class InputStats:
    """Running statistics of one Linear's input X of shape (..., C).

    Attributes:
        channel_absmax: float32 (C,), max |X| per input channel.
        position_absmax: float32 (T,), max |X| per token position (if X is (B, T, C)).
        sample: float32 (S,), a deterministic subsample of |X| for percentiles.
    """

    channel_absmax: torch.Tensor | None = None
    position_absmax: torch.Tensor | None = None
    samples: list[torch.Tensor] = field(default_factory=list)
    numel: int = 0

    def update(self, x: torch.Tensor, sample_stride: int) -> None:
        x = x.detach().float()
        a = x.abs()
        cmax = a.reshape(-1, a.shape[-1]).amax(0)
        self.channel_absmax = (
            cmax if self.channel_absmax is None else torch.maximum(self.channel_absmax, cmax)
        )
        if a.ndim == 3:
            pmax = a.amax(dim=(0, 2))
            if self.position_absmax is None:
                self.position_absmax = pmax
            else:
                n = max(len(pmax), len(self.position_absmax))
                old = torch.nn.functional.pad(
                    self.position_absmax, (0, n - len(self.position_absmax))
                )
                self.position_absmax = torch.maximum(
                    old, torch.nn.functional.pad(pmax, (0, n - len(pmax)))
                )
        self.samples.append(a.reshape(-1)[::sample_stride].clone())
        self.numel += a.numel()

    @property
    def sample(self) -> torch.Tensor:
        return torch.cat(self.samples) if self.samples else torch.empty(0)


def collect_linear_inputs(
    model: nn.Module,
    run: Callable[[], object],
    prefix: str = "",
    sample_stride: int = 7,
) -> dict[str, InputStats]:
    """Run ``run()`` (which calls the model) with hooks on every Linear under ``prefix``.

    Returns {linear name: InputStats}. Hooks are always removed, even on error.
    """
    stats: dict[str, InputStats] = {}
    handles = []
    for name, mod in iter_linears(model, prefix):
        stats[name] = InputStats()

        def hook(_mod, args, _name=name):
            stats[_name].update(args[0], sample_stride)

        handles.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return stats


def replace_linears(
    model: nn.Module,
    factory: Callable[[str, nn.Linear], nn.Module],
    include: Callable[[str, nn.Linear], bool] = lambda name, mod: True,
) -> list[str]:
    """Replace in place each ``nn.Linear`` for which ``include(name, module)`` by ``factory(name, module)``.

    Returns the names replaced. Use on a copy (``copy.deepcopy``) to keep the FP32 model.
    """
    targets = [(n, m) for n, m in iter_linears(model) if include(n, m)]
    for name, mod in targets:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, factory(name, mod))
    return [n for n, _ in targets]
