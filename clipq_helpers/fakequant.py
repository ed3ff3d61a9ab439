"""``QuantLinear``: a fake-quantized (simulated) W/A-quantized replacement for ``nn.Linear``.

Fake quantization computes in floating point with values snapped to the integer grid
(``dequantize(quantize(.))``), so the result equals what an integer kernel with the same
scales produces, up to float rounding of the accumulation (see ``int8.int8_linear``).

Weights: quantized once (cached, recomputed only if the weight tensor changes in place),
symmetric, ``per_tensor`` / ``per_channel`` (one scale per output row) / ``per_group``
(one scale per ``group_size`` input columns of each row).
Activations: ``per_tensor`` static (the scale comes from calibration with an observer) or
``per_token`` dynamic (one symmetric scale per row of the input, computed on the fly).

Typical use::

    ql = QuantLinear.from_linear(linear, w_bits=8, a_bits=8, a_observer="percentile")
    ql.start_calibration()      # forward records input statistics, returns the FP output
    for x in calib_batches:
        ql(x)
    ql.freeze()                 # activation scale fixed; forward now fake-quantizes

Inference only: no straight-through gradient flows through the rounding.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_bits, check_float_tensor, check_positive_int
from .calibrate import MinMaxObserver, Observer, make_observer
from .quantize import (
    _TINY,
    dequantize,
    dequantize_per_group,
    fake_quant_asymmetric,
    fake_quant_symmetric,
    quantize_per_channel,
    quantize_per_group,
    quantize_per_token,
    quantize_symmetric,
    symmetric_scale,
)

__all__ = ["QuantLinear"]

W_GRANULARITIES = ("per_tensor", "per_channel", "per_group")
A_GRANULARITIES = ("per_tensor", "per_token")
ObserverSpec = str | Observer | Callable[[], Observer]


class QuantLinear(nn.Module):
    """Linear layer with fake-quantized weights and inputs.

    Args:
        in_features, out_features, bias: as ``nn.Linear``.
        w_bits: weight bits (2..16), or None to keep FP weights.
        a_bits: activation bits (2..16), or None to keep FP activations (weight-only).
        w_granularity: ``"per_tensor"``, ``"per_channel"`` (per output row) or ``"per_group"``.
        group_size: input columns per group for ``"per_group"`` (must divide in_features).
        a_granularity: ``"per_tensor"`` (static, needs calibration) or ``"per_token"``
            (dynamic, symmetric, one scale per row of the last dim).
        a_observer: for static activations: ``"minmax"``, ``"percentile"``, ``"mse"``,
            ``"entropy"``, an ``Observer`` instance (copied) or a factory returning one.
        a_symmetric: symmetric (narrow signed range) or asymmetric (unsigned, zero point)
            static activation quantization; asymmetric needs the min-max observer.

    Input ``(..., in_features)`` float, output ``(..., out_features)`` in the input's dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        w_bits: int | None = 8,
        a_bits: int | None = 8,
        w_granularity: str = "per_channel",
        group_size: int = 128,
        a_granularity: str = "per_tensor",
        a_observer: ObserverSpec = "minmax",
        a_symmetric: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.w_bits = None if w_bits is None else check_bits(w_bits, "w_bits")
        self.a_bits = None if a_bits is None else check_bits(a_bits, "a_bits")
        if w_granularity not in W_GRANULARITIES:
            raise ValueError(
                f"w_granularity must be one of {W_GRANULARITIES}, got {w_granularity!r}"
            )
        if a_granularity not in A_GRANULARITIES:
            raise ValueError(
                f"a_granularity must be one of {A_GRANULARITIES}, got {a_granularity!r}"
            )
        self.w_granularity = w_granularity
        self.group_size = check_positive_int(group_size, "group_size")
        if w_granularity == "per_group" and in_features % self.group_size:
            raise ValueError(
                f"in_features = {in_features} is not a multiple of group_size = {group_size}"
            )
        self.a_granularity = a_granularity
        self.a_symmetric = bool(a_symmetric)
        self.observer: Observer | None = None
        if self.a_bits is not None and a_granularity == "per_tensor":
            self.observer = make_observer(a_observer)
            if not self.a_symmetric and not isinstance(self.observer, MinMaxObserver):
                raise ValueError(
                    "asymmetric activation quantization (a_symmetric=False) needs the "
                    f"'minmax' observer, got {type(self.observer).__name__}"
                )
        elif self.a_bits is not None and not self.a_symmetric:
            raise ValueError("per_token activation quantization is symmetric only")

        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        self.bias = nn.Parameter(torch.empty(out_features, **factory)) if bias else None
        if device != "meta":
            lin = nn.Linear(in_features, out_features, bias=bias, **factory)
            with torch.no_grad():
                self.weight.copy_(lin.weight)
                if self.bias is not None:
                    self.bias.copy_(lin.bias)

        self.calibrating = False
        self.register_buffer("act_scale", torch.tensor(1.0, dtype=torch.float32))
        self.register_buffer("act_zero_point", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("act_calibrated", torch.tensor(False))
        self._w_cache: torch.Tensor | None = None
        self._w_cache_key: tuple | None = None

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_linear(cls, linear: nn.Linear, **config) -> QuantLinear:
        """Wrap an existing ``nn.Linear``; its weight and bias Parameters are shared, not copied.

        ``config``: the keyword arguments of :class:`QuantLinear` (w_bits, a_bits, ...).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
        q = cls(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            device="meta",
            **config,
        )
        q.weight = linear.weight
        q.bias = linear.bias
        q.quantized_weight()
        return q

    # ------------------------------------------------------------------ weights

    def weight_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight codes and scales for the configured granularity.

        Returns ``(q (out, in), scales)`` with scales 0-d (per_tensor), ``(out,)``
        (per_channel) or ``(out, in // group_size)`` (per_group).
        """
        if self.w_bits is None:
            raise RuntimeError("weights are not quantized (w_bits=None)")
        w = self.weight.detach()
        if self.w_granularity == "per_tensor":
            s = symmetric_scale(w, self.w_bits)
            return quantize_symmetric(w, s, self.w_bits), s
        if self.w_granularity == "per_channel":
            return quantize_per_channel(w, self.w_bits, axis=0)
        return quantize_per_group(w, self.w_bits, self.group_size)

    def quantized_weight(self) -> torch.Tensor:
        """Fake-quantized weight ``(out, in)`` in the weight's dtype (cached)."""
        w = self.weight
        if self.w_bits is None:
            return w
        key = (id(w), w.data_ptr(), w._version, w.dtype, w.device)
        if self._w_cache is None or self._w_cache_key != key:
            q, s = self.weight_qparams()
            if self.w_granularity == "per_group":
                w_fq = dequantize_per_group(q, s)
            elif self.w_granularity == "per_channel":
                w_fq = dequantize(q, s.unsqueeze(1))
            else:
                w_fq = dequantize(q, s)
            self._w_cache = w_fq.to(device=w.device, dtype=w.dtype)
            self._w_cache_key = key
        return self._w_cache

    # ------------------------------------------------------------------ calibration

    @property
    def needs_calibration(self) -> bool:
        """True for static per-tensor activation quantization."""
        return self.observer is not None

    @property
    def calibrated(self) -> bool:
        """True once a static activation scale is set (always True if none is needed)."""
        return not self.needs_calibration or bool(self.act_calibrated)

    def start_calibration(self) -> QuantLinear:
        """Reset the observer and enter calibrating mode (forward records stats, returns FP)."""
        if self.observer is not None:
            self.observer.reset()
        self.act_calibrated.fill_(False)
        self.calibrating = True
        return self

    def freeze(self) -> QuantLinear:
        """Finish calibration: fix the activation scale (and zero point) from the observer."""
        if self.observer is not None:
            if self.observer.count == 0:
                raise RuntimeError(
                    "QuantLinear.freeze(): the observer has seen no data; run forward passes "
                    "in calibrating mode (start_calibration()) first"
                )
            assert self.a_bits is not None
            if self.a_symmetric:
                scale, zp = self.observer.scale(self.a_bits), 0
            else:
                assert isinstance(self.observer, MinMaxObserver)
                scale, zp = self.observer.asymmetric_params(self.a_bits)
            self.set_activation_qparams(scale, zp)
        self.calibrating = False
        return self

    def set_activation_qparams(self, scale: float | torch.Tensor, zero_point: int = 0) -> None:
        """Set the static activation scale (and zero point) directly, e.g. from hooks."""
        s = torch.as_tensor(scale, dtype=torch.float32).reshape(())
        if not bool(torch.isfinite(s)) or float(s) <= 0:
            raise ValueError(f"activation scale must be finite and > 0, got {float(s)}")
        self.act_scale.copy_(s)
        self.act_zero_point.fill_(int(zero_point))
        self.act_calibrated.fill_(True)

    # ------------------------------------------------------------------ forward

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize an input ``(..., in_features)`` as forward does."""
        if self.a_bits is None:
            return x
        if self.a_granularity == "per_token":
            q, s = quantize_per_token(x, self.a_bits)
            return dequantize(q, s).to(x.dtype)
        if not bool(self.act_calibrated):
            raise RuntimeError(
                "QuantLinear: the static activation scale is not calibrated; call "
                "start_calibration(), run calibration batches, then freeze() (or use "
                "a_granularity='per_token', or set_activation_qparams(...))"
            )
        if self.a_symmetric:
            return fake_quant_symmetric(x, self.act_scale, self.a_bits)
        return fake_quant_asymmetric(x, self.act_scale, self.act_zero_point, self.a_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_float_tensor(x, "x")
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"shape mismatch: input has shape {tuple(x.shape)} but the layer expects "
                f"(..., {self.in_features})"
            )
        if self.calibrating:
            if self.observer is not None:
                self.observer.update(x)
            return F.linear(x, self.weight, self.bias)
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        w = "FP" if self.w_bits is None else f"W{self.w_bits} {self.w_granularity}"
        if self.w_granularity == "per_group" and self.w_bits is not None:
            w += f"({self.group_size})"
        if self.a_bits is None:
            a = "A: FP"
        elif self.a_granularity == "per_token":
            a = f"A{self.a_bits} per_token"
        else:
            kind = "symmetric" if self.a_symmetric else "asymmetric"
            a = f"A{self.a_bits} per_tensor ({self.observer.name}, {kind})"  # type: ignore[union-attr]
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, {w}, {a}"
        )


class FastQuantLinear(QuantLinear):
    """:class:`QuantLinear` whose forward skips the per-call input validation.

    ``QuantLinear`` scans every input for NaN/Inf, which triples the cost of a small model's
    forward pass on a CPU. Inside a calibrated model the inputs are the model's own
    activations, so this computes the same float32 values, bit for bit (symmetric
    per-tensor static or per-token dynamic activations; weights from the cached
    ``quantized_weight()``) without the scans. Calibration mode, asymmetric activations,
    non-float32 inputs, wrong shapes and an uncalibrated static scale all defer to
    :class:`QuantLinear` (and so get its errors).
    """

    def _fast(self, x: torch.Tensor) -> bool:
        return (
            not self.calibrating
            and isinstance(x, torch.Tensor)
            and x.dtype == torch.float32
            and self.a_bits is not None
            and self.a_symmetric
            and x.shape[-1] == self.in_features
            and (self.a_granularity == "per_token" or bool(self.act_calibrated))
        )

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().quantize_input(x)
        qmax = 2 ** (self.a_bits - 1) - 1
        if self.a_granularity == "per_token":
            amax = x.detach().abs().amax(dim=-1, keepdim=True)
            s = (amax / qmax).clamp_(min=_TINY)
            s = torch.where(amax == 0, torch.ones_like(s), s)
        else:
            s = self.act_scale
        return torch.round(x / s).clamp_(-qmax, qmax).mul_(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().forward(x)
        return F.linear(self.quantize_input(x), self.quantized_weight(), self.bias)
