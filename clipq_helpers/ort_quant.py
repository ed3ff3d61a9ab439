"""INT8 with ONNX Runtime: calibration data, quantization recipes, ORT inference and evaluation.

Chapter 8, ``python -m clipq_helpers.deploy`` and ``python -m benchmarks.run`` compare:

* ONNX Runtime's own ``quantize_static`` with its defaults (:func:`quantize_ort_default`):
  QDQ format, int8 activations (asymmetric, min-max), **per-tensor** weights
  (``per_channel=False`` is the default in onnxruntime 1.31), every operator it can quantize
  (attention's matrix products, Add, Softmax, Sigmoid ... too).
* The course pipeline (:func:`course_int8`, built on :func:`quantize_onnx`): SmoothQuant
  applied to the FP32 model where it keeps the function (:func:`smoothed_model`),
  symmetric per-channel INT8 weights, per-tensor static activations calibrated on the
  course's calibration split, only the Linear layers quantized (their outputs stay float,
  as in the course's fake-quant model).

Both read calibration data through :class:`ShapesCalibrationReader`; :func:`evaluate_onnx`
runs the course's evaluation (``clipq_helpers.evaluate``) on two ONNX towers through
:class:`OrtClip`.

The fast path on x86 (measured in ``benchmarks/results/latest.md``): activations stored as
**uint8** (VNNI multiplies uint8 by int8; with ``symmetric_activations`` the zero point is
128, the int8 grid shifted by 128); a QuantizeLinear/DequantizeLinear pair per consumer
(``DedicatedQDQPair``: a DequantizeLinear shared by q/k/v blocks ONNX Runtime's QDQ fusion
and leaves those MatMuls in float); MatMul outputs not re-quantized, so each Linear becomes
one integer GEMM with a float output (``MatMulIntegerToFloat``).

ONNX Runtime 1.31 gotchas handled here: ``quantize_static`` does not pass ``num_bins`` to
its Entropy calibrator (128 bins: one candidate threshold, i.e. min-max), so
:func:`calibrate_ranges` creates calibrators directly; the MinMax calibrator's
``max_intermediate_outputs`` drops data instead of merging it, so batches are fed one at a
time; the histogram calibrators fail on the text tower's attention mask, which holds
float32's minimum (the course calibrates only the Linears' inputs).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

__all__ = [
    "METHODS",
    "resized_pixels",
    "ShapesCalibrationReader",
    "linear_nodes",
    "calibrate_ranges",
    "quantize_onnx",
    "quantize_ort_default",
    "quantize_ort_dynamic",
    "smoothed_model",
    "smooth_vision_tower",
    "COURSE_FILES",
    "course_int8",
    "make_session",
    "ort_image_embeddings",
    "ort_text_embeddings",
    "OrtClip",
    "reference_embeddings",
    "evaluate_onnx",
]

#: Calibration methods of :func:`quantize_onnx` and their ONNX Runtime enums.
METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}

_IMAGE_INPUT = "pixel_values"
_TEXT_INPUTS = ("input_ids", "attention_mask")


# --------------------------------------------------------------------------- data


def resized_pixels(images: np.ndarray, size: int) -> np.ndarray:
    """Model input float32 ``(N, 3, size, size)`` from uint8 images ``(N, H, W, 3)``.

    Images already at ``size`` take the fast path (:func:`clipq_helpers.processor.pixels_from_uint8`);
    others are resized and centre-cropped by Chinese-CLIP's image processor.
    """
    from .processor import image_processor, pixels_from_uint8

    if images.shape[1] == size and images.shape[2] == size:
        return pixels_from_uint8(images).numpy()
    out = image_processor(size)(images=list(images), return_tensors="np")["pixel_values"]
    return np.ascontiguousarray(out, dtype=np.float32)


class ShapesCalibrationReader(CalibrationDataReader):
    """ONNX Runtime calibration data from the shapes world's calibration split.

    ``tower="image"`` yields ``{"pixel_values": float32 (B, 3, S, S)}`` (images resized to
    ``image_size`` like Chinese-CLIP's processor when it is not the split's 64 px);
    ``tower="text"`` yields ``{"input_ids", "attention_mask"}`` int64 ``(B, L)`` of the
    split's captions, padded to the longest caption of each batch.

    Args:
        tower: ``"image"`` or ``"text"``.
        n: number of calibration samples (first ``n`` of the split, at most 512).
        batch_size: samples per ``get_next()``.
        image_size: pixels of the model's input (image tower).
        tokenizer: the model's tokenizer (text tower; default: the course tokenizer).
    """

    def __init__(
        self,
        tower: str,
        n: int = 256,
        batch_size: int = 32,
        *,
        image_size: int = 64,
        tokenizer=None,
    ):
        from . import shapes

        if tower not in ("image", "text"):
            raise ValueError(f"tower must be 'image' or 'text', got {tower!r}")
        limit = shapes.SPLIT_SIZES["calibration"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= limit:
            raise ValueError(
                f"n must be an int in [1, {limit}] (calibration split size), got {n!r}"
            )
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.tower, self.n, self.batch_size = tower, n, batch_size
        split = shapes.make_split("calibration", n)
        self._batches: list[dict[str, np.ndarray]] = []
        for i in range(0, n, batch_size):
            if tower == "image":
                self._batches.append(
                    {_IMAGE_INPUT: resized_pixels(split.images[i : i + batch_size], image_size)}
                )
            else:
                if tokenizer is None:
                    from .models import load_tokenizer

                    tokenizer = load_tokenizer("pocket")
                enc = tokenizer(
                    list(split.captions[i : i + batch_size]), padding=True, return_tensors="np"
                )
                self._batches.append({k: np.asarray(enc[k], dtype=np.int64) for k in _TEXT_INPUTS})
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._it = iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


# --------------------------------------------------------------------------- quantization


def linear_nodes(model: str | Path | onnx.ModelProto) -> list[str]:
    """Names of the MatMul/Gemm nodes whose second input is a constant weight (the Linears).

    Attention's two matrix products (both inputs are activations) are not listed.
    """
    m = (
        model
        if isinstance(model, onnx.ModelProto)
        else onnx.load(str(model), load_external_data=False)
    )
    consts = {i.name for i in m.graph.initializer}
    consts |= {o for n in m.graph.node if n.op_type == "Constant" for o in n.output}
    return [
        n.name for n in m.graph.node if n.op_type in ("MatMul", "Gemm") and n.input[1] in consts
    ]


@contextlib.contextmanager
def _quiet_ort_logging() -> Iterator[None]:
    """Silence the quantization tool's advisory warnings (e.g. "consider pre-processing")."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _check_method(method: str) -> CalibrationMethod:
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    return METHODS[method]


class _OneBatch(CalibrationDataReader):
    def __init__(self, batch: dict[str, np.ndarray]):
        self._batch: dict[str, np.ndarray] | None = batch

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch, self._batch = self._batch, None
        return batch


def calibrate_ranges(
    fp32_path: str | Path,
    reader: CalibrationDataReader,
    *,
    method: str = "minmax",
    op_types: Sequence[str] | None = ("MatMul", "Gemm"),
    symmetric: bool = True,
    num_bins: int = 2048,
    num_quantized_bins: int = 128,
    percentile: float = 99.999,
    cache_path: str | Path | None = None,
):
    """Run an ONNX Runtime calibrator over ``reader`` and return its ``TensorsData`` ranges.

    The calibrator is created directly (``create_calibrator``), because ``quantize_static``
    does not pass ``num_bins`` through: its Entropy calibrator then keeps 128 bins, which
    leaves one candidate threshold (= min-max). Here Entropy and Percentile use
    ``num_bins`` (default 2048). ``cache_path``: also write the ranges as a JSON calibration
    cache that ``quantize_static(calibration_cache_path=...)`` reads.
    """
    calib_method = _check_method(method)
    if hasattr(reader, "rewind"):
        reader.rewind()
    options: dict[str, Any] = {"symmetric": symmetric}
    if method == "entropy":
        options.update(num_bins=num_bins, num_quantized_bins=num_quantized_bins)
    else:
        options.update(num_bins=num_bins, percentile=percentile)
    with (
        tempfile.TemporaryDirectory(prefix="clipq-calib-") as tmp,
        _quiet_ort_logging(),
        contextlib.redirect_stdout(io.StringIO()),  # the histogram calibrators print
    ):
        calibrator = create_calibrator(
            Path(fp32_path),
            list(op_types) if op_types else [],
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=calib_method,
            use_external_data_format=False,
            extra_options=options,
        )
        # One batch per collect_data call: the ranges/histograms are merged after each call,
        # so memory stays at one batch of intermediate outputs. (ORT 1.31's own
        # ``max_intermediate_outputs`` clears the outputs without merging them first.)
        while (batch := reader.get_next()) is not None:
            calibrator.collect_data(_OneBatch(batch))
        ranges = calibrator.compute_data()
        del calibrator
    if cache_path is not None:
        save_tensors_data(ranges, Path(cache_path))
    return ranges


def quantize_onnx(
    fp32_path: str | Path,
    int8_path: str | Path,
    reader: CalibrationDataReader,
    *,
    method: str = "minmax",
    per_channel: bool = True,
    symmetric_activations: bool = True,
    activation_type: str = "uint8",
    linears_only: bool = True,
    quantize_outputs: bool = False,
    reduce_range: bool = False,
    num_bins: int = 2048,
    percentile: float = 99.999,
    quant_format: str = "qdq",
    nodes_to_exclude: Sequence[str] = (),
) -> Path:
    """Static INT8 quantization of an ONNX model with ``quantize_static`` (the course's settings).

    Args:
        method: activation calibration, ``"minmax"``, ``"entropy"`` or ``"percentile"``
            (the calibrator is created directly so that ``num_bins`` is honoured).
        per_channel: one symmetric INT8 scale per weight output channel (else per tensor).
        symmetric_activations: per-tensor activation scale from ``max|x|`` with the zero
            point in the middle of the range (the NPU constraint of the course).
        activation_type: ``"uint8"`` (fast on x86: VNNI multiplies uint8 x int8; with
            symmetric activations the zero point is 128, the same grid as int8) or ``"int8"``.
        linears_only: quantize only MatMul/Gemm with constant weights (the Linears);
            attention's products, LayerNorm, Softmax, GELU stay float (as in the course's
            fake-quant model). ``False``: every operator ONNX Runtime can quantize.
        quantize_outputs: also quantize the MatMul outputs (extra rounding; off by default).
        reduce_range: 7-bit weights (for x86 CPUs without VNNI, where uint8 x int8 products
            can saturate 16-bit intermediate sums).
        quant_format: ``"qdq"`` (QuantizeLinear/DequantizeLinear around float ops, fused by
            ONNX Runtime) or ``"qoperator"`` (QLinearMatMul / MatMulInteger nodes).
        nodes_to_exclude: ONNX node names to keep in float (mixed precision).
    Returns:
        ``int8_path``.
    """
    calib_method = _check_method(method)
    if activation_type not in ("uint8", "int8"):
        raise ValueError(f"activation_type must be 'uint8' or 'int8', got {activation_type!r}")
    if quant_format not in ("qdq", "qoperator"):
        raise ValueError(f"quant_format must be 'qdq' or 'qoperator', got {quant_format!r}")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    int8_path.parent.mkdir(parents=True, exist_ok=True)
    op_types = ["MatMul", "Gemm"] if linears_only else None
    nodes = linear_nodes(fp32_path) if linears_only else None
    extra: dict[str, Any] = {
        "ActivationSymmetric": symmetric_activations,
        "WeightSymmetric": True,
        "DedicatedQDQPair": True,
    }
    if not quantize_outputs:
        extra["OpTypesToExcludeOutputQuantization"] = ["MatMul", "Gemm"]
    _quantize_from_calibration(
        fp32_path,
        int8_path,
        reader,
        {
            "method": method,
            "op_types": op_types,
            "symmetric": symmetric_activations,
            "num_bins": num_bins,
            "percentile": percentile,
        },
        quant_format=QuantFormat.QDQ if quant_format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=op_types,
        per_channel=per_channel,
        reduce_range=reduce_range,
        activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
        weight_type=QuantType.QInt8,
        nodes_to_quantize=nodes,
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=calib_method,
        extra_options=extra,
    )
    return int8_path


def quantize_ort_default(
    fp32_path: str | Path,
    int8_path: str | Path,
    reader: CalibrationDataReader,
    method: str | None = None,
    *,
    num_bins: int | None = None,
) -> Path:
    """ONNX Runtime's ``quantize_static`` with only the required arguments (the peer).

    ``method`` (optional) only changes ``calibrate_method``; everything else stays at
    onnxruntime's defaults: QDQ, int8 activations and weights, ``per_channel=False``, all
    supported operators, and for Entropy the default 128 histogram bins (which leaves one
    candidate threshold, so it equals MinMax). ``num_bins``: calibrate with a calibrator
    created directly with that many bins (the only way to change it), then quantize with
    the same defaults from those ranges.
    """
    if hasattr(reader, "rewind"):
        reader.rewind()
    Path(int8_path).parent.mkdir(parents=True, exist_ok=True)
    if num_bins is None:
        kwargs = {} if method is None else {"calibrate_method": _check_method(method)}
        with _quiet_ort_logging(), contextlib.redirect_stdout(io.StringIO()):
            quantize_static(str(fp32_path), str(int8_path), reader, **kwargs)
        return Path(int8_path)
    method = method or "entropy"
    _quantize_from_calibration(
        fp32_path,
        int8_path,
        reader,
        {"method": method, "op_types": None, "symmetric": False, "num_bins": num_bins},
        calibrate_method=_check_method(method),
    )
    return Path(int8_path)


def _quantize_from_calibration(
    fp32_path: str | Path,
    int8_path: str | Path,
    reader: CalibrationDataReader,
    calibration: dict[str, Any],
    **quantize_kwargs: Any,
) -> None:
    """Calibrate with :func:`calibrate_ranges` (``calibration``: its keyword arguments) into
    a temporary range cache, then run ``quantize_static(**quantize_kwargs)`` from that cache."""
    with tempfile.TemporaryDirectory(prefix="clipq-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        calibrate_ranges(fp32_path, reader, cache_path=cache, **calibration)
        with _quiet_ort_logging():
            quantize_static(
                str(fp32_path),
                str(int8_path),
                None,
                calibration_cache_path=str(cache),
                **quantize_kwargs,
            )


def quantize_ort_dynamic(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """ONNX Runtime's ``quantize_dynamic`` (weights INT8 offline, activations per call), Linears only."""
    Path(int8_path).parent.mkdir(parents=True, exist_ok=True)
    with _quiet_ort_logging():
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
            nodes_to_quantize=linear_nodes(fp32_path),
        )
    return Path(int8_path)


# --------------------------------------------------------------------------- SmoothQuant


def _group_input_absmax(model, keys: Sequence[str], run: Callable[[], None]) -> dict:
    """Per-channel max |input| of the Linears named ``keys`` while ``run()`` runs (running max)."""
    import torch

    got: dict[str, torch.Tensor] = {}
    handles = []
    for key in keys:

        def hook(_m, args, _key=key):
            a = args[0].detach().abs().flatten(0, -2).amax(dim=0).float()
            got[_key] = a if _key not in got else torch.maximum(got[_key], a)

        handles.append(model.get_submodule(key).register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    missing = [k for k in keys if k not in got]
    if missing:
        raise ValueError(f"calibration data never reached {missing[:3]}; pass images and captions")
    return got


def smoothed_model(
    model,
    images: np.ndarray | None,
    captions: Sequence[str] | None,
    tokenizer=None,
    *,
    alpha: float = 0.5,
    towers: Sequence[str] = ("vision", "text"),
    batch_size: int = 64,
):
    """A deep copy of ``model`` with SmoothQuant applied where it keeps the FP32 function.

    The groups are :func:`clipq_helpers.sq_lab.smooth_groups`: in the pre-LN vision tower
    every LayerNorm is folded into the Linears it feeds (``smooth_layernorm_linears``:
    exact, free); in the post-LN text tower a LayerNorm's output is also the residual
    stream, so its smoothing is compensated by an explicit per-channel multiply on the
    residual (``residual="compensate"``: exact, one Mul per block in the ONNX graph).
    ``s = smooth_scales(act, w, alpha)`` with ``act`` the per-channel max |input| over the
    calibration ``images`` (uint8 ``(N, H, W, 3)``) and ``captions``.
    """
    import torch

    from .evaluate import tokenize
    from .sq_lab import smooth_groups, smoothed_copy

    towers = tuple(towers)
    groups = smooth_groups(model, towers)
    size = int(model.config.vision_config.image_size)

    def run() -> None:
        if "vision" in towers:
            for i in range(0, len(images), batch_size):
                px = torch.from_numpy(resized_pixels(images[i : i + batch_size], size))
                model.get_image_features(pixel_values=px)
        if "text" in towers:
            for i in range(0, len(captions), batch_size):
                model.get_text_features(**tokenize(tokenizer, list(captions[i : i + batch_size])))

    if "vision" in towers and (images is None or len(images) == 0):
        raise ValueError("smoothing the vision tower needs calibration images (N, H, W, 3), N >= 1")
    if "text" in towers and (not captions or tokenizer is None):
        raise ValueError("smoothing the text tower needs calibration captions and the tokenizer")
    act = _group_input_absmax(model, [g.key for g in groups], run)
    out, _scales = smoothed_copy(model, groups, act, alpha, residual="compensate")
    return out


def smooth_vision_tower(model, images: np.ndarray, alpha: float = 0.5, batch_size: int = 64):
    """:func:`smoothed_model` of the vision tower only (pre-LN: every fold is exact and free)."""
    return smoothed_model(
        model, images, None, alpha=alpha, towers=("vision",), batch_size=batch_size
    )


# --------------------------------------------------------------------------- pipeline


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="step", leave=False)


#: Output files of :func:`course_int8` in ``out_dir``.
COURSE_FILES = {
    "image_fp32": "image_fp32.onnx",
    "image_int8": "image_int8.onnx",
    "text_fp32": "text_fp32.onnx",
    "text_int8": "text_int8.onnx",
}


def course_int8(
    model,
    tokenizer,
    out_dir: str | Path,
    *,
    alpha: float | None = 0.5,
    calib_n: int = 256,
    method: str = "minmax",
    symmetric_activations: bool = False,
    towers: Sequence[str] = ("image", "text"),
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """The course's INT8 pipeline: FP32 export, SmoothQuant, static W8A8 with ONNX Runtime.

    For each tower in ``towers``:

    1. export the FP32 tower (``image_fp32.onnx`` / ``text_fp32.onnx``);
    2. SmoothQuant with migration strength ``alpha`` (:func:`smoothed_model`, calibrated on
       ``calib_n`` images / captions of the calibration split; ``alpha=None`` skips it),
       exported to a temporary FP32 file (same function as step 1);
    3. :func:`quantize_onnx` of that file with the course settings: per-channel symmetric
       INT8 weights, per-tensor static activations (``symmetric_activations``: the NPU's
       symmetric grid; default asymmetric uint8, the CPU's native format) calibrated with
       ``method`` on the same ``calib_n`` samples, only the Linears
       (``image_int8.onnx`` / ``text_int8.onnx``).

    Args:
        model: a ``ChineseCLIPModel`` (eager attention; :func:`clipq_helpers.models.load_model`).
        tokenizer: its tokenizer (:func:`clipq_helpers.models.load_tokenizer`).
        progress: show a tqdm progress bar.
        log: called with a line of text before each step.
    Returns:
        {"image_fp32", "image_int8", "text_fp32", "text_int8"} -> paths (the towers asked for).
    """
    from . import shapes
    from .onnx_export import export_image_tower, export_text_tower, image_size

    towers = tuple(towers)
    if not towers or any(t not in ("image", "text") for t in towers):
        raise ValueError(f"towers must name 'image' and/or 'text', got {towers!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    say = log or (lambda _msg: None)
    split = shapes.make_split("calibration", calib_n)
    paths: dict[str, Path] = {}
    with _progress(3 * len(towers), progress, "course INT8") as bar:
        smooth = None
        if alpha is not None:
            sq_towers = tuple({"image": "vision", "text": "text"}[t] for t in towers)
            say(f"SmoothQuant (alpha={alpha}) calibrated on {calib_n} images and captions")
            smooth = smoothed_model(
                model, split.images, split.captions, tokenizer, alpha=alpha, towers=sq_towers
            )
        with tempfile.TemporaryDirectory(prefix="clipq-smooth-") as tmp:
            for tower in towers:
                export = export_image_tower if tower == "image" else export_text_tower
                say(f"exporting the FP32 {tower} tower")
                paths[f"{tower}_fp32"] = export(model, out_dir / COURSE_FILES[f"{tower}_fp32"])
                bar.update()
                source = paths[f"{tower}_fp32"]
                if smooth is not None:
                    source = export(smooth, Path(tmp) / f"{tower}_smooth.onnx")
                bar.update()
                say(f"calibrating and quantizing the {tower} tower ({method})")
                if tower == "image":
                    reader = ShapesCalibrationReader("image", calib_n, image_size=image_size(model))
                else:
                    reader = ShapesCalibrationReader("text", calib_n, tokenizer=tokenizer)
                paths[f"{tower}_int8"] = quantize_onnx(
                    source,
                    out_dir / COURSE_FILES[f"{tower}_int8"],
                    reader,
                    method=method,
                    symmetric_activations=symmetric_activations,
                )
                bar.update()
    return paths


# --------------------------------------------------------------------------- inference


def make_session(path: str | Path, threads: int = 1, *, level: str = "all") -> ort.InferenceSession:
    """A CPU ``InferenceSession`` with ``threads`` intra-op threads (1 inter-op thread).

    ``level``: graph optimisation ``"basic"``, ``"extended"`` or ``"all"`` (the default, which
    also fuses QuantizeLinear/DequantizeLinear pairs into integer kernels).
    """
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if level not in levels:
        raise ValueError(f"level must be one of {sorted(levels)}, got {level!r}")
    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model {path} not found; create it with clipq_helpers.deploy")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.graph_optimization_level = levels[level]
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _as_session(s) -> ort.InferenceSession:
    return s if isinstance(s, ort.InferenceSession) else make_session(s)


def ort_image_embeddings(session, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Un-normalised image embeddings float32 ``(N, D)`` of ``pixels`` float32 ``(N, 3, S, S)``.

    ``session``: an ``InferenceSession`` of an image tower, or the path of its ONNX file.
    """
    sess = _as_session(session)
    x = np.ascontiguousarray(np.asarray(pixels, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"pixels must be float32 (N, 3, S, S), got shape {x.shape}")
    out = [
        sess.run(None, {_IMAGE_INPUT: x[i : i + batch_size]})[0]
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def ort_text_embeddings(
    session, input_ids: np.ndarray, attention_mask: np.ndarray, batch_size: int = 256
) -> np.ndarray:
    """Un-normalised text embeddings float32 ``(N, D)`` of int64 ``input_ids``/``attention_mask`` ``(N, L)``."""
    sess = _as_session(session)
    ids = np.asarray(input_ids, dtype=np.int64)
    mask = np.asarray(attention_mask, dtype=np.int64)
    if ids.ndim != 2 or ids.shape != mask.shape:
        raise ValueError(
            f"input_ids and attention_mask must be int64 (N, L) of one shape, got {ids.shape} and {mask.shape}"
        )
    out = [
        sess.run(
            None, {"input_ids": ids[i : i + batch_size], "attention_mask": mask[i : i + batch_size]}
        )[0]
        for i in range(0, len(ids), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


class OrtClip:
    """Two ONNX towers behind the two methods the course's evaluation calls.

    ``get_image_features(pixel_values=...)`` and ``get_text_features(input_ids=...,
    attention_mask=...)`` take and return torch tensors like a ``ChineseCLIPModel``, so the
    functions of :mod:`clipq_helpers.evaluate` run unchanged on ONNX Runtime.

    ``cache``: an optional dict shared between instances; embeddings are memoised by
    (tower file, input bytes), so towers shared by two variants are run once.
    """

    def __init__(self, image_onnx, text_onnx, threads: int = 1, cache: dict | None = None):
        self._towers = {}
        for tower, src in (("image", image_onnx), ("text", text_onnx)):
            sess = src if isinstance(src, ort.InferenceSession) else make_session(src, threads)
            key = str(Path(src).resolve()) if isinstance(src, str | Path) else id(src)
            self._towers[tower] = (sess, key)
        self._cache = cache if cache is not None else {}

    def eval(self) -> OrtClip:
        return self

    def _memo(self, tower: str, arrays: tuple[np.ndarray, ...], fn) -> np.ndarray:
        sess, key = self._towers[tower]
        h = hashlib.blake2b(digest_size=16)
        for a in arrays:
            h.update(str(a.shape).encode())
            h.update(np.ascontiguousarray(a).tobytes())
        k = (key, h.hexdigest())
        if k not in self._cache:
            self._cache[k] = fn(sess, *arrays)
        return self._cache[k]

    def get_image_features(self, pixel_values):
        import torch

        x = pixel_values.numpy()
        return torch.from_numpy(self._memo("image", (x,), ort_image_embeddings).copy())

    def get_text_features(self, input_ids, attention_mask=None):
        import torch

        mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
        arrays = (input_ids.numpy().astype(np.int64), mask.numpy().astype(np.int64))
        return torch.from_numpy(self._memo("text", arrays, ort_text_embeddings).copy())


def reference_embeddings(model, tokenizer, n: int | None = None) -> dict[str, Any]:
    """L2-normalised embeddings (torch float32) of the first ``n`` eval-split images and captions.

    ``model``: a ``ChineseCLIPModel`` or an :class:`OrtClip`. ``n=None``: the whole split.
    """
    from .evaluate import _split, encode_images, encode_texts

    data = _split("eval", n)
    return {
        "image": encode_images(model, data.images),
        "text": encode_texts(model, tokenizer, data.captions),
    }


def evaluate_onnx(
    image_onnx,
    text_onnx,
    tokenizer,
    reference=None,
    *,
    threads: int = 1,
    n: int | None = None,
    cache: dict | None = None,
) -> dict[str, float]:
    """The course's standard evaluation of two ONNX towers (paths or sessions).

    Returns what :func:`clipq_helpers.evaluate.evaluate` reports (``zero_shot``,
    ``zero_shot_seen``, ``t2i_R@1/5/10``, ``i2t_R@1/5/10``), computed by the same functions,
    and with ``reference`` (a PyTorch model, or :func:`reference_embeddings` of one with the
    same ``n``) ``cosine_image`` / ``cosine_text``: the mean cosine between these and the
    reference's embeddings over the eval split (``cosine_*_min``: the worst one).

    ``n``: retrieval and cosines on the first ``n`` eval pairs only (a quick check;
    ``None``, the default, is the full benchmark of ``evaluate``).
    """
    from .evaluate import Report, retrieval, zero_shot_accuracy

    clip = OrtClip(image_onnx, text_onnx, threads, cache)
    zs = zero_shot_accuracy(clip, tokenizer)
    zs_seen = zero_shot_accuracy(clip, tokenizer, split="seen")
    t2i, i2t = retrieval(clip, tokenizer, n=n)
    out = Report(zs, zs_seen, t2i, i2t).as_dict()
    if reference is not None:
        ref = (
            reference
            if isinstance(reference, dict)
            else reference_embeddings(reference, tokenizer, n)
        )
        mine = reference_embeddings(clip, tokenizer, n)
        for key in ("image", "text"):
            if mine[key].shape != ref[key].shape:
                raise ValueError(
                    f"reference {key} embeddings have shape {tuple(ref[key].shape)}, expected "
                    f"{tuple(mine[key].shape)}: compute them with reference_embeddings(model, tokenizer, n={n})"
                )
            cos = (mine[key] * ref[key]).sum(-1)
            out[f"cosine_{key}"] = float(cos.mean())
            out[f"cosine_{key}_min"] = float(cos.min())
    return out
