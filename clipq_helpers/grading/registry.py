"""The registry of graded exercises: signature, output spec, tolerances, hints, time limits.

The stored cases themselves live in ``data/`` (see :mod:`.store`); how they are built is in
:mod:`.cases` (used by ``tools/build_grading_refs.py`` only, never at grading time).
Tolerances are explicit per exercise: integer codes must match exactly (dtype included);
floats within ``atol + rtol * |expected|``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .specs import Codes, FloatTensor, IntScalar, Scalar, Spec, StateOf, Threshold, TupleOf

__all__ = ["Exercise", "EXERCISES", "get", "ids"]


@dataclass(frozen=True)
class Exercise:
    """One graded function of the exercise contract (DESIGN.md)."""

    id: str
    function: str
    params: tuple[str, ...]  # positional parameters, in order
    signature: str  # as shown to learners, with defaults
    output: Spec
    hint: str  # the usual mistake: fallback hint for wrong values
    stub: str  # short hint for the generated ``raise NotImplementedError(...)`` stub
    # hint per mismatch kind (see specs.py); "value@<part>" for wrong values in one named part
    hints: dict[str, str] = field(default_factory=dict)
    time_limit: float = 10.0  # seconds per call
    mutates: tuple[str, ...] = ()  # parameters the function is meant to change in place
    collect: Callable[[dict[str, Any], Any], Any] | None = None  # what to compare

    def result_of(self, arguments: dict[str, Any], returned: Any) -> Any:
        """The value to compare: the return value, or what ``collect`` extracts."""
        return returned if self.collect is None else self.collect(arguments, returned)


# --------------------------------------------------------------------------- shared hints

_ROUND = (
    "round to the nearest code with torch.round (half to even: 0.5 -> 0, 1.5 -> 2, "
    "2.5 -> 2); floor, trunc, int() or .to(int8) on floats cut towards -inf or 0"
)
_NARROW = (
    "clamp to the narrow symmetric range [-(2^(b-1)-1), 2^(b-1)-1], i.e. [-127, 127] "
    "for 8 bits (-128 is not used, so the grid is symmetric around 0)"
)
_ZERO_SCALE = "an all-zero tensor gets scale 1.0 (a scale of 0 would divide by zero later)"


def _smooth_state(arguments: dict[str, Any], returned: Any) -> dict[str, Any]:
    """Parameters of the LayerNorm and Linears after ``smooth_layernorm_linears``."""
    ln, linears = arguments["ln"], arguments["linears"]
    state = {"ln.weight": ln.weight, "ln.bias": ln.bias}
    for i, lin in enumerate(linears):
        state[f"linears[{i}].weight"] = lin.weight
        state[f"linears[{i}].bias"] = lin.bias
    return state


_LIST = [
    Exercise(
        id="ch01.patchify",
        function="patchify",
        params=("images", "patch"),
        signature="patchify(images, patch)",
        output=FloatTensor(rtol=0.0, atol=0.0),
        hint=(
            "patches go in row-major order over the grid (left to right, then top to bottom) "
            "and each patch is flattened in (C, patch, patch) order, channel first, as "
            "Conv2d's weight.reshape(out, -1) sees it: reshape to (B, C, H/p, p, W/p, p), "
            "permute to (B, H/p, W/p, C, p, p), then reshape"
        ),
        stub="cut the image into a grid of patches, permute so each patch's (C, p, p) block is together, flatten",
        hints={
            "shape": "the result has shape (B, (H/p)*(W/p), C*p*p)",
            "dtype": "patchify only rearranges values: keep the input's dtype",
        },
    ),
    Exercise(
        id="ch01.clip_parameter_count",
        function="clip_parameter_count",
        params=("config",),
        signature="clip_parameter_count(config)",
        output=IntScalar(),
        hint=(
            "count every tensor of ChineseCLIPModel: text embeddings (vocab_size + "
            "max_position_embeddings + type_vocab_size rows of hidden_size, one LayerNorm), "
            "text layers, the patch Conv2d (num_channels * p * p * hidden, no bias), the [CLS] "
            "vector and (image_size // p) ** 2 + 1 position rows, the pre and post LayerNorm, "
            "vision layers, two projections without bias, and logit_scale; the text tower "
            "has no pooler"
        ),
        stub="sum embeddings, layers x (attention + MLP + 2 LayerNorms), LayerNorms, projections and logit_scale",
        hints={
            "type": "return the count as a Python int (a 0-d integer tensor works too)",
            "exception": "config is a dict like model.config.to_dict(): read config['text_config']['hidden_size'], ...",
        },
    ),
    Exercise(
        id="ch02.clip_logits",
        function="clip_logits",
        params=("img_emb", "txt_emb", "logit_scale"),
        signature="clip_logits(img_emb, txt_emb, logit_scale)",
        output=FloatTensor(rtol=1e-4, atol=1e-4),
        hint=(
            "normalise every embedding row to unit length (F.normalize(e, dim=-1)), then "
            "multiply the cosine similarities by exp(logit_scale): the model stores the log "
            "of the scale; rows are images, columns are texts (img @ txt.T)"
        ),
        stub="normalise each row, take all image-text dot products, scale by exp(logit_scale)",
        hints={
            "shape": "logits_per_image has one row per image and one column per text: (N_img, N_txt)",
            "exception": "logit_scale may be a Python float or a 0-d tensor: torch.as_tensor(logit_scale).exp() handles both",
        },
    ),
    Exercise(
        id="ch02.clip_loss",
        function="clip_loss",
        params=("logits_per_image",),
        signature="clip_loss(logits_per_image)",
        output=Scalar(rtol=1e-5, atol=1e-5),
        hint=(
            "average both directions: F.cross_entropy(logits, targets) over rows (image -> "
            "text) and F.cross_entropy(logits.T, targets) over columns (text -> image), with "
            "targets = torch.arange(N); the loss is their mean"
        ),
        stub="cross-entropy in both directions (rows and columns) with targets arange(N), averaged",
    ),
    Exercise(
        id="ch03.symmetric_scale",
        function="symmetric_scale",
        params=("x",),
        signature="symmetric_scale(x, bits=8)",
        output=Scalar(rtol=1e-6, atol=1e-12),
        hint=(
            "scale = max|x| / (2^(b-1) - 1): the largest *absolute* value divided by the "
            "largest code of the narrow range (127 for 8 bits, not 128 or 255)"
        ),
        stub="largest |x| divided by the largest code of the narrow range; mind the all-zero case",
        hints={"nan": _ZERO_SCALE},
    ),
    Exercise(
        id="ch03.quantize_symmetric",
        function="quantize_symmetric",
        params=("x", "scale"),
        signature="quantize_symmetric(x, scale, bits=8)",
        output=Codes(),
        hint=f"q = clamp(round(x / scale)): {_ROUND}; {_NARROW}",
        stub="divide, round half to even, clamp to the narrow range, cast to a small integer dtype",
        hints={
            "float_codes": "cast the clamped codes to the integer dtype: .to(torch.int8) for bits <= 8 (torch.int16 above)",
            "dtype": "use the smallest integer dtype that holds the codes: torch.int8 for bits <= 8, torch.int16 up to 16",
            "exception": "scale may be a Python float or a 0-d tensor; x / scale works with both",
        },
    ),
    Exercise(
        id="ch03.dequantize",
        function="dequantize",
        params=("q", "scale"),
        signature="dequantize(q, scale, zero_point=0)",
        output=FloatTensor(rtol=1e-5, atol=1e-5),
        hint=(
            "x_hat = scale * (q - zero_point) as float32; convert the codes first "
            "(q.to(torch.float32) or int32): uint8 arithmetic wraps around (0 - 128 = 128)"
        ),
        stub="leave the integer dtype before subtracting the zero point, then scale",
        hints={"dtype": "return float32: q.to(torch.float32) before subtracting and scaling"},
    ),
    Exercise(
        id="ch03.asymmetric_params",
        function="asymmetric_params",
        params=("x",),
        signature="asymmetric_params(x, bits=8)",
        output=TupleOf(scale=Scalar(rtol=1e-6, atol=1e-12), zero_point=IntScalar()),
        hint=(
            "use the range [lo, hi] = [min(x.min(), 0), max(x.max(), 0)] so that 0 is exactly "
            "representable; scale = (hi - lo) / (2^b - 1); zero_point = round(-lo / scale) "
            "clamped to [0, 2^b - 1] (positive when lo < 0); all zeros -> (1.0, 0)"
        ),
        stub="make the range contain 0 first; the zero point is the code that represents 0.0",
        hints={
            "nan": "an all-zero tensor gets (scale, zero_point) = (1.0, 0); do not divide by a zero range"
        },
    ),
    Exercise(
        id="ch03.quantize_asymmetric",
        function="quantize_asymmetric",
        params=("x", "scale", "zero_point"),
        signature="quantize_asymmetric(x, scale, zero_point, bits=8)",
        output=Codes(),
        hint=(
            f"q = clamp(round(x / scale) + zero_point, 0, 2^b - 1): {_ROUND}; clamp *after* "
            "adding the zero point, to [0, 255] for 8 bits, then cast to uint8"
        ),
        stub="divide, round, shift by the zero point, clamp to [0, 2**bits - 1], cast",
        hints={
            "float_codes": "cast the clamped codes to torch.uint8 (bits <= 8)",
            "dtype": "asymmetric codes are unsigned: torch.uint8 for bits <= 8",
        },
    ),
    Exercise(
        id="ch03.sqnr_db",
        function="sqnr_db",
        params=("x", "x_hat"),
        signature="sqnr_db(x, x_hat)",
        output=Scalar(rtol=1e-5, atol=1e-4),
        hint=(
            "SQNR compares powers in decibels: 10 * log10(sum(x^2) / sum((x - x_hat)^2)); use "
            "log10 (not the natural log), squares (not norms), and the factor 10 (not 20)"
        ),
        stub="signal power over noise power, in decibels",
        hints={
            "exception": "compute the sums with torch ((x ** 2).sum()) and keep them as tensors or floats; "
            "a perfect reconstruction has zero noise and gives inf"
        },
    ),
    Exercise(
        id="ch04.outlier_ratio",
        function="outlier_ratio",
        params=("x",),
        signature="outlier_ratio(x)",
        output=Scalar(rtol=1e-5, atol=1e-6),
        hint=(
            "m = per-channel max |x|, reducing over every dim except the last "
            "(x.abs().reshape(-1, x.shape[-1]).amax(dim=0)); return m.max() / m.median() "
            "with torch.median (the lower middle value for an even count); all zeros -> 1.0, "
            "a zero median with a nonzero max -> inf"
        ),
        stub="per-channel max |x| over every dim but the last, then the largest over the median (torch.median)",
        hints={
            "nan": (
                "an all-zero x gives 1.0 (nothing sticks out; 0 / 0 is NaN), and a zero median "
                "with a nonzero maximum gives math.inf"
            ),
            "shape": "return one number: float(m.max() / m.median()) or a 0-d tensor",
        },
    ),
    Exercise(
        id="ch04.levels_used",
        function="levels_used",
        params=("x", "scale"),
        signature="levels_used(x, scale, bits=8)",
        output=Codes(),
        hint=(
            "q = clamp(round(x / scale), -(2^(b-1)-1), 2^(b-1)-1) as for quantize_symmetric; "
            "then for each channel c (the last dim) count the distinct codes of q[..., c] "
            "over all leading dims; return an int64 tensor of shape (C,)"
        ),
        stub="quantize symmetrically (round, clamp to the narrow range), then count the distinct codes of each channel",
        hints={
            "shape": "one count per channel (the last dim of x): shape (C,), whatever the leading dims",
            "dtype": "return the counts as an int64 tensor: torch.tensor(list_of_ints) or .sum() of a bool tensor gives int64",
            "float_codes": "the counts are integers: return an int64 tensor (.to(torch.int64))",
            "type": "return a torch.Tensor of counts, one per channel (torch.tensor(counts))",
            "exception": "scale may be a float, a 0-d tensor or a (C,) tensor: x / scale broadcasts all three over the last dim",
        },
    ),
    Exercise(
        id="ch05.percentile_absmax",
        function="percentile_absmax",
        params=("x", "pct"),
        signature="percentile_absmax(x, pct)",
        output=Scalar(rtol=1e-5, atol=1e-7),
        hint=(
            "take the percentile of |x| over all elements with linear interpolation: "
            "torch.quantile(x.abs().flatten(), pct / 100) (numpy.percentile's default)"
        ),
        stub="a quantile of the magnitudes; pct is in percent",
        hints={
            "exception": "torch.quantile wants q in [0, 1]: pass pct / 100, on a flat float tensor"
        },
    ),
    Exercise(
        id="ch05.mse_best_clip",
        function="mse_best_clip",
        params=("x",),
        signature="mse_best_clip(x, bits=8, n_grid=100)",
        output=Scalar(rtol=1e-6, atol=1e-9),
        hint=(
            "try c_k = absmax * k / n_grid for k = 1..n_grid; for each, quantize with scale "
            "c_k / (2^(b-1)-1), round, clamp to [-(2^(b-1)-1), 2^(b-1)-1] (that clamp is the "
            "clipping), dequantize, and keep the c_k with the smallest MSE (smallest k on ties)"
        ),
        stub="loop over the candidate clips, fake-quantize with each, keep the one with the least MSE",
        time_limit=30.0,
        hints={"nan": "an all-zero x has absmax 0: return 0.0 without dividing by it"},
    ),
    Exercise(
        id="ch05.kl_threshold",
        function="kl_threshold",
        params=("hist", "bin_edges"),
        signature="kl_threshold(hist, bin_edges, bits=8)",
        output=Threshold(),
        hint=(
            "for i = 2^(b-1) .. len(hist): P = hist[:i] with the tail sum(hist[i:]) added to "
            "P[i-1]; Q = hist[:i] split into 2^(b-1) chunks (numpy.array_split sizes), each "
            "chunk's mass spread evenly over its bins where P != 0; smooth both as counts, "
            "*before* normalising (eps 1e-4 to zero bins, taken evenly from the others), then "
            "normalise; KL(P||Q) = sum p*log(p/q); "
            "return bin_edges[i] of the smallest KL"
        ),
        stub="loop over i: build P (tail folded in) and Q (merged chunks over P's nonzero bins), smooth, normalise, KL",
        time_limit=60.0,
    ),
    Exercise(
        id="ch06.quantize_per_channel",
        function="quantize_per_channel",
        params=("w",),
        signature="quantize_per_channel(w, bits=8, axis=0)",
        output=TupleOf(q=Codes(), scales=FloatTensor(rtol=1e-6, atol=1e-12)),
        hint=(
            "one scale per slice along `axis`: reduce |w| over every *other* dim (amax), "
            "scales = absmax / (2^(b-1)-1) as float32 of shape (w.shape[axis],), 1.0 for an "
            "all-zero channel; then round, clamp to the narrow range and cast, broadcasting "
            "the scales back along axis"
        ),
        stub="reduce |w| over every dim except axis, then quantize with scales broadcast along axis",
        hints={
            "shape": "scales has one entry per channel: shape (w.shape[axis],)",
            "nan": "an all-zero channel gets scale 1.0",
            "float_codes": "cast the codes to torch.int8 (bits <= 8)",
        },
    ),
    Exercise(
        id="ch06.quantize_per_token",
        function="quantize_per_token",
        params=("x",),
        signature="quantize_per_token(x, bits=8)",
        output=TupleOf(q=Codes(), scales=FloatTensor(rtol=1e-6, atol=1e-12)),
        hint=(
            "one scale per token, i.e. per row of the *last* dim: "
            "scales = x.abs().amax(dim=-1, keepdim=True) / (2^(b-1)-1) as float32 of shape "
            "(..., 1), 1.0 for an all-zero row; then round, clamp to the narrow range and cast"
        ),
        stub="reduce |x| over the last dim (keepdim), then quantize every row with its own scale",
        hints={
            "shape": "scales keeps every dim of x but the last, which becomes 1: shape (..., 1)",
            "nan": "an all-zero row (a padding token) gets scale 1.0",
            "float_codes": "cast the codes to torch.int8 (bits <= 8)",
        },
    ),
    Exercise(
        id="ch07.smooth_scales",
        function="smooth_scales",
        params=("act_absmax", "weight_absmax"),
        signature="smooth_scales(act_absmax, weight_absmax, alpha=0.5)",
        output=FloatTensor(rtol=1e-5, atol=1e-9),
        hint=(
            "s = act_absmax^alpha / weight_absmax^(1 - alpha), clamped at 1e-5 "
            "(.clamp(min=1e-5)): alpha is the exponent of the *activation* maxima"
        ),
        stub="powers of the two maxima, with floors of 1e-5",
        hints={"nan": "clamp weight_absmax at 1e-5 before dividing, and the result at 1e-5"},
    ),
    Exercise(
        id="ch07.smooth_layernorm_linears",
        function="smooth_layernorm_linears",
        params=("ln", "linears", "s"),
        signature="smooth_layernorm_linears(ln, linears, s)",
        output=StateOf(FloatTensor(rtol=1e-6, atol=1e-7)),
        hint=(
            "in place, under torch.no_grad(): ln.weight /= s and ln.bias /= s; every Linear's "
            "weight is scaled per *input column*: linear.weight *= s (broadcast as s[None, :]); "
            "biases of the Linears do not change"
        ),
        stub="in-place updates under torch.no_grad(); the Linear weights scale per input column",
        mutates=("ln", "linears"),
        collect=_smooth_state,
        hints={
            "exception": (
                "parameters require grad: change them inside `with torch.no_grad():` "
                "(e.g. ln.weight.div_(s)), and scale the input columns (s[None, :])"
            ),
            "value@ln": (
                "divide both ln.weight and ln.bias by s, in place: "
                "ln.weight.div_(s) and ln.bias.div_(s) under torch.no_grad()"
            ),
        },
    ),
    Exercise(
        id="ch08.int8_linear",
        function="int8_linear",
        params=("x_q", "x_scale", "w_q", "w_scale", "bias"),
        signature="int8_linear(x_q, x_scale, w_q, w_scale, bias)",
        output=FloatTensor(rtol=1e-5, atol=1e-4),
        hint=(
            "accumulate in int32: x_q.to(torch.int32) @ w_q.to(torch.int32).T (int8 @ int8 "
            "stays int8 in PyTorch and wraps around), then acc.float() * x_scale * w_scale "
            "(w_scale per output column) + bias (if not None)"
        ),
        stub="integer matmul accumulated in int32, then rescale, then add the bias",
        hints={
            "dtype": "return float32: acc.to(torch.float32) * x_scale * w_scale",
            "exception": "x_scale may be a float or a 0-d tensor, w_scale a float or an (N,) tensor, bias may be None",
        },
    ),
]

EXERCISES: dict[str, Exercise] = {ex.id: ex for ex in _LIST}


def ids() -> list[str]:
    """All registered exercise ids, in course order."""
    return list(EXERCISES)


def get(exercise_id: str) -> Exercise:
    """The registered exercise, or ``ValueError`` listing the known ids."""
    try:
        return EXERCISES[exercise_id]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown exercise id {exercise_id!r}; known ids: {', '.join(EXERCISES)}"
        ) from None
