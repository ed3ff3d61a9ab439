"""Chapter 8 lab: what an INT8 kernel computes, step by step, and the benchmark tables.

Integer arithmetic (section 1 of chapter 8):

* :func:`accumulator_bound`: the worst-case ``|sum_k q_x q_w|`` of a length-``K`` dot product
  and which integer/float formats hold it exactly.
* :func:`quantize_multiplier` / :func:`requantize_fixed_point`: the float multiplier
  ``M = s_x s_w / s_y`` as an integer ``m0`` (Q0.31) and a shift, applied with the rounding of
  gemmlowp / TensorFlow Lite's reference kernels (integer-only hardware does this).
* :func:`requantize_float`: the same with a float multiplier (ONNX Runtime's CPU kernels).
* :func:`bias_to_int32`: ``b_q = round(b / (s_x s_w))``, the bias in accumulator units.
* :class:`IntegerLinear` / :func:`integerize`: a W8A8 Linear that quantizes its input to
  int8 codes, runs ``torch._int_mm`` (int8 x int8 -> int32) and rescales; built from a
  calibrated :class:`~clipq_helpers.fakequant.QuantLinear`, so it can replace every
  Linear of a fake-quantized model. :func:`code_flips` compares the int8 input codes of a
  fake-quantized and an integer model, layer by layer.
* :func:`time_matmul`: median time of an int8 and a float32 matrix product (illustration).

ONNX and the CPU (section 2): :func:`onnx_op_counts` counts the operators of a model file,
:func:`ort_optimized_op_counts` those of the graph ONNX Runtime actually runs after its
fusions (QDQ pairs become integer kernels), :func:`qdq_summary` what a QDQ file quantizes
(activation types and zero points, per-channel weights); :func:`cpu_int8_flags` reports the
CPU's int8 instruction sets (:data:`INT8_FLAGS`).

Benchmarks (section 3): :func:`load_results` reads ``benchmarks/results/latest.json``
(``None`` if it has not been produced yet; :func:`default_results_path` finds it) and the
``*_table`` functions turn it into Markdown tables (header, rows).
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ._checks import check_float_tensor, check_int_tensor
from .fakequant import QuantLinear
from .int8 import int8_linear, int8_matmul

__all__ = [
    "INT16_MAX",
    "INT32_MAX",
    "FLOAT32_EXACT",
    "accumulator_bound",
    "quantize_multiplier",
    "requantize_fixed_point",
    "requantize_float",
    "bias_to_int32",
    "IntegerLinear",
    "integerize",
    "code_flips",
    "time_matmul",
    "onnx_op_counts",
    "ort_optimized_op_counts",
    "qdq_summary",
    "INT8_FLAGS",
    "cpu_int8_flags",
    "RESULT_KEYS",
    "default_results_path",
    "load_results",
    "machine_summary",
    "accuracy_table",
    "latency_table",
    "speedup_table",
    "size_table",
    "goals_table",
    "ablation_table",
]

INT16_MAX = 2**15 - 1
INT32_MAX = 2**31 - 1
#: Largest N such that every integer in [-N, N] is exactly representable in float32.
FLOAT32_EXACT = 2**24


# --------------------------------------------------------------------------- accumulators


def accumulator_bound(k: int, x_max: int = 127, w_max: int = 127) -> dict:
    """Worst case of an integer dot product of length ``k`` with ``|q_x| <= x_max``, ``|q_w| <= w_max``.

    Returns ``{"k", "bound" (= k * x_max * w_max), "bits" (signed bits needed),
    "int16", "int32", "float32_exact"}``: whether the bound fits int16 / int32, and whether
    every partial sum is an integer that float32 represents exactly (``<= 2^24``).
    """
    for v, name in ((k, "k"), (x_max, "x_max"), (w_max, "w_max")):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    bound = k * x_max * w_max
    return {
        "k": k,
        "bound": bound,
        "bits": bound.bit_length() + 1,  # + sign bit
        "int16": bound <= INT16_MAX,
        "int32": bound <= INT32_MAX,
        "float32_exact": bound <= FLOAT32_EXACT,
    }


# --------------------------------------------------------------------------- requantization


def quantize_multiplier(multiplier: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed-point form of a positive real multiplier (TensorFlow Lite's ``QuantizeMultiplier``).

    ``M = m0 * 2^-31 * 2^-shift`` with the integer ``m0`` in ``[2^30, 2^31)`` (a Q0.31
    number in [0.5, 1)) and an integer ``shift`` (a right shift; negative means a left
    shift, for ``M >= 1``).

    Args:
        multiplier: a float, or a float tensor of any shape (e.g. ``(N,)`` per channel).
    Returns:
        ``(m0, shift)``: int64 tensors of the multiplier's shape.
    """
    m = torch.as_tensor(multiplier, dtype=torch.float64)
    check_float_tensor(m, "multiplier")
    if bool((m <= 0).any()):
        raise ValueError("multiplier must be > 0 (it is a product and quotient of scales)")
    mantissa, exponent = torch.frexp(m)  # m = mantissa * 2^exponent, mantissa in [0.5, 1)
    m0 = torch.round(mantissa * 2.0**31).to(torch.int64)
    carry = m0 == 2**31  # mantissa rounded up to 1.0
    m0 = torch.where(carry, m0 // 2, m0)
    exponent = exponent.to(torch.int64) + carry.to(torch.int64)
    return m0, -exponent


def _rounding_doubling_high_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gemmlowp ``SaturatingRoundingDoublingHighMul``: round(a * b / 2^31), ties towards +inf.

    (The saturating case ``a = b = -2^31`` cannot occur: ``b = m0 > 0``.)
    """
    ab = a * b  # |a| < 2^31, 0 < b < 2^31: fits int64
    nudge = torch.where(ab >= 0, torch.tensor(1 << 30), torch.tensor(1 - (1 << 30)))
    return torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")


def _rounding_divide_by_pot(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """gemmlowp ``RoundingDivideByPOT``: round(x / 2^exponent), ties away from zero."""
    one = torch.ones_like(exponent)
    mask = torch.bitwise_left_shift(one, exponent) - 1
    remainder = torch.bitwise_and(x, mask)
    threshold = torch.bitwise_right_shift(mask, 1) + (x < 0).to(torch.int64)
    return torch.bitwise_right_shift(x, exponent) + (remainder > threshold).to(torch.int64)


def _check_acc(acc: object) -> torch.Tensor:
    acc = check_int_tensor(acc, "acc")
    if acc.dtype not in (torch.int32, torch.int64):
        raise TypeError(f"acc must be an int32 (or int64) accumulator, got {acc.dtype}")
    return acc


def _saturate(q: torch.Tensor, zero_point: int, bits: int, signed: bool) -> torch.Tensor:
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    dtype = torch.int8 if signed else torch.uint8
    return (q + zero_point).clamp(lo, hi).to(dtype)


def requantize_fixed_point(
    acc: torch.Tensor,
    m0: torch.Tensor,
    shift: torch.Tensor,
    zero_point: int = 0,
    *,
    signed: bool = True,
) -> torch.Tensor:
    """Integer-only requantization of an int32 accumulator to 8-bit output codes.

    ``q = saturate(round(round(acc * m0 / 2^31) / 2^shift) + zero_point)`` with int64
    multiplies and shifts only, as TensorFlow Lite's ``MultiplyByQuantizedMultiplier`` does
    with gemmlowp's ``SaturatingRoundingDoublingHighMul`` (ties towards +infinity) and
    ``RoundingDivideByPOT`` (ties away from zero). Within one unit of ``round(acc * M)``.

    Args:
        acc: int32 accumulator ``(..., N)`` (bias already added, in accumulator units).
        m0, shift: from :func:`quantize_multiplier`: scalars or ``(N,)`` per output channel.
        zero_point: output zero point (0 for symmetric int8).
        signed: int8 output ``[-128, 127]`` (True) or uint8 ``[0, 255]`` (False).
    Returns:
        int8 (or uint8) codes of ``acc``'s shape.
    """
    acc = _check_acc(acc).to(torch.int64)
    m0 = torch.as_tensor(m0, dtype=torch.int64)
    shift = torch.as_tensor(shift, dtype=torch.int64)
    if bool(((m0 < 2**30) | (m0 >= 2**31)).any()):
        raise ValueError("m0 must lie in [2^30, 2^31); get it from quantize_multiplier()")
    left = (-shift).clamp(min=0)  # M >= 1: shift left first (saturating to int32)
    right = shift.clamp(min=0)
    x = torch.bitwise_left_shift(acc, left).clamp(-(2**31), 2**31 - 1)
    q = _rounding_divide_by_pot(_rounding_doubling_high_mul(x, m0), right)
    return _saturate(q, int(zero_point), 8, signed)


def requantize_float(
    acc: torch.Tensor,
    multiplier: float | torch.Tensor,
    zero_point: int = 0,
    *,
    signed: bool = True,
) -> torch.Tensor:
    """Requantization with a float32 multiplier: ``saturate(round(float(acc) * M) + zero_point)``.

    Rounding is half to even (``torch.round``), as in ONNX Runtime's CPU requantization.
    ``multiplier``: a float or ``(N,)`` per output channel. Returns int8 (or uint8) codes.
    """
    acc = _check_acc(acc)
    m = torch.as_tensor(multiplier, dtype=torch.float32)
    q = torch.round(acc.to(torch.float32) * m).to(torch.int64)
    return _saturate(q, int(zero_point), 8, signed)


def bias_to_int32(
    bias: torch.Tensor, x_scale: float | torch.Tensor, w_scale: float | torch.Tensor
) -> torch.Tensor:
    """The bias in accumulator units: ``round(bias / (x_scale * w_scale))``, int32.

    ``bias`` float ``(N,)``; ``w_scale`` a scalar or ``(N,)`` per channel. The error of the
    int32 bias is at most half an accumulator unit, ``0.5 * x_scale * w_scale`` per output.
    """
    bias = check_float_tensor(bias, "bias")
    s = torch.as_tensor(x_scale, dtype=torch.float32) * torch.as_tensor(
        w_scale, dtype=torch.float32
    )
    b = torch.round(bias.detach().to(torch.float32) / s)
    if bool((b.abs() > INT32_MAX).any()):
        raise ValueError("bias / (x_scale * w_scale) does not fit int32: the scales are too small")
    return b.to(torch.int32)


# --------------------------------------------------------------------------- integer Linear


def _input_codes(x: torch.Tensor, scale: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """int8 codes of ``x`` and their scale, with the float operations of ``FastQuantLinear``.

    ``scale`` a 0-d tensor (static per-tensor) or None (dynamic per-token, one scale per row).
    """
    if scale is None:
        amax = x.detach().abs().amax(dim=-1, keepdim=True)
        scale = (amax / 127).clamp(min=torch.finfo(torch.float32).tiny)
        scale = torch.where(amax == 0, torch.ones_like(scale), scale)
    return torch.round(x / scale).clamp_(-127, 127).to(torch.int8), scale


class IntegerLinear(nn.Module):
    """A W8A8 Linear that runs an integer GEMM (inference only).

    forward: ``x`` float32 ``(..., K)`` -> int8 codes ``round(x / s_x)`` clamped to
    [-127, 127] (the same float operations as ``FastQuantLinear``, so the same codes) ->
    ``acc = x_q @ w_q.T`` in int32 (``torch._int_mm``) -> float32 ``(..., N)``.

    Two ways to add the bias:

    * ``bias_mode="float"``: ``acc * s_x * s_w + b`` (``clipq_helpers.int8.int8_linear``),
      the computation that a fake-quantized ``F.linear`` simulates;
    * ``bias_mode="int32"``: ``(acc + b_q) * (s_x * s_w)`` with ``b_q`` from
      :func:`bias_to_int32`, as integer-only kernels store it.

    ``acc_absmax`` records the largest ``|acc|`` seen (for the overflow discussion).
    Activations: static per-tensor symmetric (``x_scale`` a 0-d tensor) or per-token
    dynamic (``x_scale=None``: one scale per row, computed in forward).
    """

    def __init__(
        self,
        w_q: torch.Tensor,
        w_scale: torch.Tensor,
        x_scale: torch.Tensor | None,
        bias: torch.Tensor | None = None,
        *,
        bias_mode: str = "float",
    ) -> None:
        super().__init__()
        if w_q.dtype != torch.int8 or w_q.dim() != 2:
            raise TypeError(
                f"w_q must be a 2-D int8 tensor (N, K), got {w_q.dtype} {tuple(w_q.shape)}"
            )
        if bias_mode not in ("float", "int32"):
            raise ValueError(f"bias_mode must be 'float' or 'int32', got {bias_mode!r}")
        if bias_mode == "int32" and x_scale is None:
            raise ValueError("bias_mode='int32' needs a static activation scale (x_scale)")
        self.out_features, self.in_features = w_q.shape
        self.bias_mode = bias_mode
        self.register_buffer("w_q", w_q.detach().clone())
        self.register_buffer("w_q_t", w_q.detach().T.contiguous())  # (K, N) for _int_mm
        self.register_buffer("w_scale", torch.as_tensor(w_scale, dtype=torch.float32).clone())
        self.register_buffer(
            "x_scale",
            None if x_scale is None else torch.as_tensor(x_scale, dtype=torch.float32).reshape(()),
        )
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.register_buffer(
            "bias_q",
            None
            if bias is None or bias_mode == "float"
            else bias_to_int32(bias, self.x_scale, self.w_scale),
        )
        self.acc_absmax = 0
        self.track_acc = False

    @classmethod
    def from_quant_linear(cls, ql: QuantLinear, *, bias_mode: str = "float") -> IntegerLinear:
        """Build from a (calibrated) 8-bit symmetric ``QuantLinear`` with the same scales and codes."""
        if not isinstance(ql, QuantLinear):
            raise TypeError(f"expected a QuantLinear, got {type(ql).__name__}")
        if ql.w_bits != 8 or ql.a_bits != 8 or not ql.a_symmetric:
            raise ValueError(
                "IntegerLinear runs int8 x int8 GEMMs: it needs w_bits=8, a_bits=8 and symmetric "
                f"activations, got {ql.extra_repr()}"
            )
        if ql.w_granularity == "per_group":
            raise ValueError(
                "per-group weight scales sit inside the sum over K: an int8 GEMM cannot apply "
                "them (chapter 6); use per_tensor or per_channel weights"
            )
        if ql.a_granularity == "per_tensor" and not ql.calibrated:
            raise ValueError("the QuantLinear is not calibrated; calibrate it (or freeze()) first")
        w_q, w_scale = ql.weight_qparams()
        x_scale = ql.act_scale if ql.a_granularity == "per_tensor" else None
        return cls(w_q, w_scale, x_scale, ql.bias, bias_mode=bias_mode)

    def quantize_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int8 codes ``(..., K)`` and the scale (0-d, or ``(..., 1)`` per token)."""
        return _input_codes(x, self.x_scale)

    def accumulate(self, x_q: torch.Tensor) -> torch.Tensor:
        """int32 ``x_q @ w_q.T`` of shape ``(..., N)``."""
        acc = int8_matmul(x_q.reshape(-1, self.in_features), self.w_q_t)
        return acc.reshape(*x_q.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"shape mismatch: input has shape {tuple(x.shape)} but the layer expects "
                f"(..., {self.in_features})"
            )
        x_q, s_x = self.quantize_input(x.float())
        if self.bias_mode == "float" and not self.track_acc:
            return int8_linear(x_q, s_x, self.w_q, self.w_scale, self.bias).to(x.dtype)
        acc = self.accumulate(x_q)
        if self.track_acc:
            self.acc_absmax = max(self.acc_absmax, int(acc.abs().max()))
        if self.bias_mode == "float":  # the operations of int8_linear, in its order
            out = acc.to(torch.float32) * s_x * self.w_scale
            if self.bias is not None:
                out = out + self.bias
        else:
            if self.bias_q is not None:
                acc = acc + self.bias_q
            out = acc.to(torch.float32) * (s_x * self.w_scale)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        w = "per_channel" if self.w_scale.numel() > 1 else "per_tensor"
        a = "per_token" if self.x_scale is None else "per_tensor static"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"W8 {w}, A8 {a}, int32 accumulation, bias {self.bias_mode}"
        )


def integerize(
    q_model: nn.Module, *, bias_mode: str = "float", track_acc: bool = False
) -> nn.Module:
    """A deep copy of a fake-quantized model with every ``QuantLinear`` run as an :class:`IntegerLinear`.

    ``q_model`` is e.g. the output of :func:`clipq_helpers.ptq.quantize_model` with 8-bit
    symmetric weights and activations. ``track_acc=True`` makes each layer record its
    largest ``|accumulator|`` in ``acc_absmax``.
    """
    out = copy.deepcopy(q_model).eval()
    found = [n for n, m in out.named_modules() if isinstance(m, QuantLinear)]
    if not found:
        raise ValueError("q_model has no QuantLinear: quantize it first (ptq.quantize_model)")

    def factory(name: str, ql: nn.Module) -> nn.Module:
        il = IntegerLinear.from_quant_linear(ql, bias_mode=bias_mode)
        il.track_acc = track_acc
        return il

    for name in found:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        setattr(parent, child, factory(name, out.get_submodule(name)))
    return out


@torch.no_grad()
def code_flips(
    q_model: nn.Module, int_model: nn.Module, run: Callable[[nn.Module], object]
) -> dict[str, tuple[int, int, int]]:
    """Compare the int8 input codes of every quantized Linear in two runs of the same input.

    ``run(model)`` runs one model (e.g. ``lambda m: encode_texts(m, tok, captions)``); it is
    called once on the fake-quantized ``q_model`` and once on ``int_model``
    (:func:`integerize` of it). Both quantize their inputs with the same scales, so their
    codes differ only where a tiny float difference upstream moved a value across a
    rounding boundary.

    Returns ``{layer name: (codes that differ, codes in all, largest |difference|)}``.
    """
    codes: dict[str, list[list[torch.Tensor]]] = {}

    def record(model: nn.Module, which: int) -> list:
        handles = []
        for name, mod in model.named_modules():
            if isinstance(mod, QuantLinear) and which == 0:

                def hook(m, args, _n=name):
                    scale = m.act_scale if m.a_granularity == "per_tensor" else None
                    q = _input_codes(args[0].detach().float(), scale)[0]
                    codes.setdefault(_n, [[], []])[0].append(q.to(torch.int16))

            elif isinstance(mod, IntegerLinear) and which == 1:

                def hook(m, args, _n=name):
                    codes.setdefault(_n, [[], []])[1].append(
                        m.quantize_input(args[0].detach().float())[0].to(torch.int16)
                    )

            else:
                continue
            handles.append(mod.register_forward_pre_hook(hook))
        return handles

    for which, model in enumerate((q_model, int_model)):
        handles = record(model, which)
        try:
            run(model)
        finally:
            for h in handles:
                h.remove()
    out = {}
    for name, (a, b) in codes.items():
        if len(a) != len(b):
            raise ValueError(f"{name}: the two runs called this layer a different number of times")
        a, b = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
        d = (a - b).abs()
        out[name] = (int((d > 0).sum()), a.numel(), int(d.max()))
    return out


# --------------------------------------------------------------------------- timing


def time_matmul(m: int, k: int, n: int, repeats: int = 7, seed: int = 0) -> dict[str, float]:
    """Median milliseconds of ``(m, k) @ (k, n)`` as int8 -> int32 (``torch._int_mm``) and float32.

    An illustration only (one shape, random codes, whatever threads torch uses): real
    latency of whole models is measured by ``python -m benchmarks.run``.
    Returns ``{"int8_ms", "float32_ms", "speedup"}``.
    """
    gen = torch.Generator().manual_seed(seed)
    a = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
    b = torch.randint(-127, 128, (k, n), generator=gen, dtype=torch.int8)
    af, bf = a.float(), b.float()

    def med(fn: Callable[[], object]) -> float:
        fn()  # warm-up
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(ts)

    t_int = med(lambda: int8_matmul(a, b))
    t_fp = med(lambda: af @ bf)
    return {"int8_ms": t_int, "float32_ms": t_fp, "speedup": t_fp / t_int}


# --------------------------------------------------------------------------- ONNX graphs


def onnx_op_counts(path: str | Path) -> Counter:
    """``Counter`` of operator types (``domain:op`` for non-standard domains) in an ONNX file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    model = onnx.load(str(path), load_external_data=False)
    return Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}"
        for n in model.graph.node
    )


def ort_optimized_op_counts(path: str | Path, level: str = "extended") -> Counter:
    """Operator counts of the graph that ONNX Runtime's CPU provider runs after its fusions.

    ``level``: ``"basic"``, ``"extended"`` (default; QDQ pairs around MatMul/Gemm fuse into
    integer kernels here) or ``"all"`` (adds layout changes).
    """
    import onnxruntime as ort

    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise ValueError(f"level must be one of {sorted(levels)}, got {level!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return onnx_op_counts(Path(tmp) / "optimized.onnx")


def qdq_summary(path: str | Path) -> dict:
    """What a QDQ model quantizes, read from its QuantizeLinear/DequantizeLinear nodes.

    Activations are the inputs of ``QuantizeLinear`` nodes; weights are ``DequantizeLinear``
    nodes whose input is a stored integer tensor. Returns::

        {"activations": number of QuantizeLinear nodes,
         "activation_types": Counter of zero-point dtypes ("uint8", "int8"),
         "activation_zero_points": sorted distinct zero points,
         "weights": number of stored quantized weights,
         "weight_types": Counter of their dtypes,
         "weights_per_channel": how many have one scale per output channel}
    """
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    model = onnx.load(str(path), load_external_data=False)
    const = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            const[n.output[0]] = n.attribute[0].t

    def dtype(t) -> str:
        return onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name

    act_types: Counter = Counter()
    zps: set[int] = set()
    w_types: Counter = Counter()
    n_act = n_w = n_pc = 0
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            n_act += 1
            if len(n.input) > 2 and n.input[2] in const:
                zp = const[n.input[2]]
                act_types[dtype(zp)] += 1
                zps.update(int(v) for v in numpy_helper.to_array(zp).reshape(-1))
        elif n.op_type == "DequantizeLinear" and n.input[0] in const:
            w = const[n.input[0]]
            if dtype(w) not in ("int8", "uint8"):
                continue
            n_w += 1
            w_types[dtype(w)] += 1
            scale = const.get(n.input[1])
            if scale is not None and int(np.prod(scale.dims)) > 1:
                n_pc += 1
    return {
        "activations": n_act,
        "activation_types": act_types,
        "activation_zero_points": sorted(zps),
        "weights": n_w,
        "weight_types": w_types,
        "weights_per_channel": n_pc,
    }


# --------------------------------------------------------------------------- CPU features

#: x86 CPU flags (as in ``/proc/cpuinfo``) that matter for int8 GEMMs, with what they add.
INT8_FLAGS = {
    "avx2": "256-bit integer SIMD; u8 x s8 pairs summed into int16 (VPMADDUBSW, saturates)",
    "avx512bw": "512-bit byte/word integer SIMD (the same VPMADDUBSW path, twice as wide)",
    "avx512_vnni": "VPDPBUSD: four u8 x s8 products summed straight into int32, no int16 step",
    "avx_vnni": "the same VNNI instruction on 256-bit registers",
    "amx_int8": "AMX tile matrix multiply for int8",
}


def cpu_int8_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, bool]:
    """Which of :data:`INT8_FLAGS` this CPU reports (all False where ``cpuinfo`` is unreadable)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return dict.fromkeys(INT8_FLAGS, False)
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            flags.update(line.split(":", 1)[-1].split())
    return {f: f in flags for f in INT8_FLAGS}


# --------------------------------------------------------------------------- benchmark results

#: Top-level keys of ``benchmarks/results/latest.json`` and the keys of their rows.
RESULT_KEYS = {
    "machine": ("cpu", "cores", "threads", "vnni", "onnxruntime", "torch", "python", "date"),
    "command": None,
    "accuracy": ("model", "variant", "runtime", "zero_shot", "t2i_R@1"),
    "latency": ("model", "tower", "batch", "runtime", "median_ms"),
    "size": ("model", "tower", "variant", "bytes"),
    "goals": ("goal", "target", "measured", "met"),
}


def default_results_path(start: str | Path | None = None) -> Path:
    """``benchmarks/results/latest.json`` of the course repository.

    Searched upwards from ``start`` (default: the working directory, e.g. ``book/`` while the
    book builds), then next to the installed ``clipq_helpers`` package. The path is returned
    even if the file does not exist yet.
    """
    rel = Path("benchmarks") / "results" / "latest.json"
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "benchmarks").is_dir():
            return folder / rel
    return Path(__file__).resolve().parents[1] / rel


def load_results(path: str | Path) -> dict | None:
    """The benchmark results file, checked against :data:`RESULT_KEYS`; ``None`` if it does not exist.

    Raises ``ValueError`` naming the first missing key if the file is malformed.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path} is not valid JSON ({err}); regenerate it with python -m benchmarks.run"
        ) from None
    for key, row_keys in RESULT_KEYS.items():
        if key not in res:
            raise ValueError(
                f"{path} has no {key!r} entry; regenerate it with python -m benchmarks.run"
            )
        if row_keys is None:
            continue
        rows = [res[key]] if key == "machine" else res[key]
        if not isinstance(rows, list):
            raise ValueError(f"{path}: {key!r} must be a list of rows")
        for i, row in enumerate(rows):
            missing = [k for k in row_keys if k not in row]
            if missing:
                raise ValueError(f"{path}: {key}[{i}] lacks {missing}")
    return res


def machine_summary(res: dict) -> str:
    """One line: CPU, cores/threads, VNNI, library versions and date of a results file."""
    m = res["machine"]
    vnni = "yes" if m["vnni"] else "no"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['threads']} thread(s) used, VNNI: {vnni}; "
        f"onnxruntime {m['onnxruntime']}, torch {m['torch']}, Python {m['python']}; {m['date']}"
    )


def _fmt(v: object, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def accuracy_table(res: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the accuracy results, in file order."""
    header = ["model", "variant", "runtime", "zero-shot", "t2i R@1", "t2i R@5", "i2t R@1"]
    header += ["cos image", "cos text"]
    rows = [
        [
            r["model"],
            r["variant"],
            r["runtime"],
            _fmt(r.get("zero_shot"), ".3f"),
            _fmt(r.get("t2i_R@1"), ".3f"),
            _fmt(r.get("t2i_R@5"), ".3f"),
            _fmt(r.get("i2t_R@1"), ".3f"),
            _fmt(r.get("cosine_image"), ".4f"),
            _fmt(r.get("cosine_text"), ".4f"),
        ]
        for r in res["accuracy"]
    ]
    return header, rows


def latency_table(
    res: dict, baseline: str | None = None, batches: Sequence[int] | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): median ms per runtime (columns, in file order) for each (model, tower, batch).

    ``baseline``: a runtime name; each other runtime's cell then also shows its speed-up
    over the baseline measured in the same run (``baseline_ms / ms``).
    ``batches``: keep only these batch sizes.
    """
    lat = [r for r in res["latency"] if batches is None or r["batch"] in batches]
    runtimes = list(dict.fromkeys(r["runtime"] for r in lat))
    keys = list(dict.fromkeys((r["model"], r["tower"], r["batch"]) for r in lat))
    ms = {(r["model"], r["tower"], r["batch"], r["runtime"]): r["median_ms"] for r in lat}
    header = ["model", "tower", "batch"] + [f"{rt} (ms)" for rt in runtimes]
    rows = []
    for key in keys:
        base = ms.get((*key, baseline)) if baseline else None
        cells = []
        for rt in runtimes:
            v = ms.get((*key, rt))
            if v is None:
                cells.append("–")
            elif base is not None and rt != baseline:
                cells.append(f"{v:.2f} ({base / v:.2f}x)")
            else:
                cells.append(f"{v:.2f}")
        rows.append([key[0], key[1], str(key[2]), *cells])
    return header, rows


def speedup_table(
    res: dict, runtime: str, baselines: Sequence[str]
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): how many times faster ``runtime`` is than each baseline runtime.

    One row per (model, tower, batch) where ``runtime`` was timed; ``baseline_ms / ms`` from
    the medians of the same run, "–" where a baseline is missing.
    """
    ms = {
        (r["model"], r["tower"], r["batch"], r["runtime"]): r["median_ms"] for r in res["latency"]
    }
    keys = list(dict.fromkeys((m, t, b) for (m, t, b, rt) in ms if rt == runtime))
    header = ["model", "tower", "batch", f"{runtime} (ms)"] + [f"vs {b}" for b in baselines]
    rows = []
    for key in keys:
        v = ms[(*key, runtime)]
        cells = [f"{ms[(*key, b)] / v:.2f}x" if (*key, b) in ms else "–" for b in baselines]
        rows.append([key[0], key[1], str(key[2]), f"{v:.2f}", *cells])
    return header, rows


def size_table(res: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows): bytes on disk as MiB per (model, tower) and variant, and the ratio to the first."""
    keys = list(dict.fromkeys((r["model"], r["tower"]) for r in res["size"]))
    variants = list(dict.fromkeys(r["variant"] for r in res["size"]))
    size = {(r["model"], r["tower"], r["variant"]): r["bytes"] for r in res["size"]}
    header = ["model", "tower"] + [f"{v} (MiB)" for v in variants]
    rows = []
    for key in keys:
        first = next((size[(*key, v)] for v in variants if (*key, v) in size), None)
        cells = []
        for v in variants:
            b = size.get((*key, v))
            if b is None:
                cells.append("–")
            elif b == first:
                cells.append(f"{b / 2**20:.2f}")
            else:
                cells.append(f"{b / 2**20:.2f} ({b / first:.3f}x)")
        rows.append([key[0], key[1], *cells])
    return header, rows


def goals_table(res: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the goals: target, measured value, met or not."""
    rows = [
        [g["goal"], str(g["target"]), str(g["measured"]), "met" if g["met"] else "**not met**"]
        for g in res["goals"]
    ]
    return ["goal", "target", "measured", "met?"], rows


def ablation_table(res: dict, baseline: str = "ort-fp32") -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the optional ``"ablation"`` rows (fast-path steps), empty rows if absent.

    Each row: step, median ms, speed-up over the ``baseline`` step, cosine to FP32.
    """
    abl = res.get("ablation") or []
    base = next((r["median_ms"] for r in abl if r.get("step") == baseline), None)
    header = ["step", "median (ms)", f"vs {baseline}", "cosine to FP32"]
    rows = [
        [
            f"`{r['step']}`",
            f"{r['median_ms']:.1f}",
            f"{base / r['median_ms']:.2f}x" if base else "–",
            _fmt(r.get("cosine"), ".5f"),
        ]
        for r in abl
    ]
    return header, rows
