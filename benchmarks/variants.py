"""The ONNX files the benchmarks compare, built from one PyTorch model.

Every variant is one tower file: FP32 (the export), the course's INT8 pipeline and its
ablations, and ONNX Runtime's own quantizers as peers (see :data:`VARIANTS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from clipq_helpers import ort_quant
from clipq_helpers.onnx_export import export_image_tower, export_text_tower, image_size

#: variant id -> what it is (rows of the accuracy and size tables).
VARIANTS = {
    "fp32": "FP32 (the exported model)",
    "int8-course": "course pipeline: SmoothQuant, per-channel symmetric INT8 weights, "
    "per-tensor static uint8 activations (asymmetric, min-max), only the Linears",
    "int8-course-sym": "course pipeline with symmetric activations (the NPU's grid)",
    "int8-course-nosq": "course pipeline without SmoothQuant",
    "int8-ort-minmax": "ONNX Runtime quantize_static, defaults (MinMax)",
    "int8-ort-entropy": "quantize_static defaults, calibrate_method=Entropy (default 128 bins)",
    "int8-ort-entropy-512": "quantize_static defaults, Entropy calibrator created directly with 512 "
    "bins (quantize_static cannot pass num_bins; 2048 bins take minutes in its Python loop)",
    "int8-ort-percentile": "quantize_static defaults, calibrate_method=Percentile (99.999)",
    "int8-ort-dynamic": "ONNX Runtime quantize_dynamic (per-channel weights, the Linears)",
}

#: the cheap set (``--quick``).
QUICK_VARIANTS = ("fp32", "int8-course", "int8-ort-minmax")


def _reader(tower: str, n: int, model, tokenizer):
    if tower == "image":
        return ort_quant.ShapesCalibrationReader("image", n, image_size=image_size(model))
    return ort_quant.ShapesCalibrationReader("text", n, tokenizer=tokenizer)


def build(
    model,
    tokenizer,
    work: Path,
    variants: Sequence[str],
    towers: Sequence[str] = ("image", "text"),
    *,
    calib_n: int = 256,
    alpha: float = 0.5,
    log=print,
) -> tuple[dict[tuple[str, str], Path], dict[tuple[str, str], str]]:
    """Build ``variants`` of ``towers`` of ``model`` under ``work``.

    Returns ({(tower, variant): path}, {(tower, variant): error message}): ONNX Runtime's own
    quantizers can fail on a tower (e.g. its histogram calibrators on the text tower's
    attention mask, which holds float32's minimum); such a failure is recorded, not raised.
    """
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    work.mkdir(parents=True, exist_ok=True)
    out: dict[tuple[str, str], Path] = {}
    errors: dict[tuple[str, str], str] = {}
    course = {
        "int8-course": dict(alpha=alpha),
        "int8-course-sym": dict(alpha=alpha, symmetric_activations=True),
        "int8-course-nosq": dict(alpha=None),
    }
    for variant, kwargs in course.items():
        if variant not in variants:
            continue
        log(f"  {variant}: {', '.join(towers)}")
        paths = ort_quant.course_int8(
            model, tokenizer, work / variant, calib_n=calib_n, towers=towers, **kwargs
        )
        for tower in towers:
            out[(tower, variant)] = paths[f"{tower}_int8"]
            out.setdefault((tower, "fp32"), paths[f"{tower}_fp32"])
    for tower in towers:
        if (tower, "fp32") not in out:
            export = export_image_tower if tower == "image" else export_text_tower
            out[(tower, "fp32")] = export(model, work / f"{tower}_fp32.onnx")
    peers = {
        "int8-ort-minmax": dict(method=None),
        "int8-ort-entropy": dict(method="entropy"),
        "int8-ort-entropy-512": dict(method="entropy", num_bins=512),
        "int8-ort-percentile": dict(method="percentile"),
    }
    for variant in variants:
        for tower in towers:
            dst = work / variant / f"{tower}_int8.onnx"
            try:
                if variant in peers:
                    log(f"  {variant}: {tower}")
                    reader = _reader(tower, calib_n, model, tokenizer)
                    out[(tower, variant)] = ort_quant.quantize_ort_default(
                        out[(tower, "fp32")], dst, reader, **peers[variant]
                    )
                elif variant == "int8-ort-dynamic":
                    log(f"  {variant}: {tower}")
                    out[(tower, variant)] = ort_quant.quantize_ort_dynamic(
                        out[(tower, "fp32")], dst
                    )
            except Exception as err:  # a peer that fails is a result, not a crash
                msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                log(f"  {variant}: {tower} FAILED: {msg}")
                errors[(tower, variant)] = msg
    return out, errors
