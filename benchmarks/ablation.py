"""The fast path, one ingredient at a time: INT8 variants of one image tower, timed side by side.

Each step changes one thing between ONNX Runtime's ``quantize_static`` defaults and the
course pipeline, so the table in ``latest.md`` shows which choice buys which speed-up.
"""

from __future__ import annotations

from pathlib import Path

from clipq_helpers import ort_quant
from clipq_helpers.ort_quant import _quiet_ort_logging

#: step id -> (what changes, how to build it, session optimisation level).
STEPS = {
    "ort-fp32": "FP32, ONNX Runtime (graph optimisation level ALL)",
    "ort-fp32-fused": "FP32 after onnxruntime.transformers' optimizer (fused attention, "
    "SkipLayerNorm, QuickGelu)",
    "ort-default": "quantize_static defaults: QDQ, int8 activations, per-tensor weights, "
    "every quantizable op",
    "default+dedicated": "... + DedicatedQDQPair (q/k/v no longer share one DequantizeLinear)",
    "linears-int8act": "only the Linears (per-channel weights, float MatMul outputs), "
    "int8 activations",
    "linears-uint8act": "... with uint8 activations (asymmetric): the course pipeline's settings",
    "linears-uint8sym": "... uint8 activations, symmetric (zero point 128, the NPU grid)",
    "linears-uint8-outq": "... + MatMul outputs re-quantized (QLinearMatMul)",
    "linears-uint8-qoperator": "... in QOperator format instead of QDQ",
    "linears-uint8-basic": "... run with graph optimisation level BASIC (no QDQ fusion)",
    "linears-uint8-extended": "... run with graph optimisation level EXTENDED",
    "linears-uint8-prefused": "... quantizing the optimizer-fused FP32 graph instead",
    "ort-dynamic": "quantize_dynamic (activation scales computed per call)",
}


def build(
    fp32: Path,
    work: Path,
    calib_n: int,
    image_size: int,
    num_heads: int,
    hidden_size: int,
    log=print,
) -> dict[str, tuple]:
    """{step: (onnx path, session level)} for the image tower ``fp32``."""
    work.mkdir(parents=True, exist_ok=True)

    def reader():
        return ort_quant.ShapesCalibrationReader("image", calib_n, image_size=image_size)

    def quant(name, **kw):
        log(f"  ablation: {name}")
        return ort_quant.quantize_onnx(fp32, work / f"{name}.onnx", reader(), **kw)

    def fused():
        from onnxruntime.transformers.optimizer import optimize_model

        log("  ablation: ort-fp32-fused")
        with _quiet_ort_logging():
            m = optimize_model(
                str(fp32),
                model_type="clip",
                num_heads=num_heads,
                hidden_size=hidden_size,
                opt_level=0,
            )
        path = work / "ort-fp32-fused.onnx"
        m.save_model_to_file(str(path))
        return path

    def default_dedicated():
        from onnxruntime.quantization import quantize_static

        log("  ablation: default+dedicated")
        path = work / "default-dedicated.onnx"
        with _quiet_ort_logging():
            quantize_static(
                str(fp32), str(path), reader(), extra_options={"DedicatedQDQPair": True}
            )
        return path

    log("  ablation: ort-default")
    course = quant("linears-uint8act", symmetric_activations=False)
    fused_fp32 = fused()
    log("  ablation: linears-uint8-prefused")
    prefused = ort_quant.quantize_onnx(
        fused_fp32, work / "linears-uint8-prefused.onnx", reader(), symmetric_activations=False
    )
    return {
        "ort-fp32": (fp32, "all"),
        "ort-fp32-fused": (fused_fp32, "all"),
        "ort-default": (
            ort_quant.quantize_ort_default(fp32, work / "ort-default.onnx", reader()),
            "all",
        ),
        "default+dedicated": (default_dedicated(), "all"),
        "linears-int8act": (
            quant("linears-int8act", symmetric_activations=False, activation_type="int8"),
            "all",
        ),
        "linears-uint8act": (course, "all"),
        "linears-uint8sym": (quant("linears-uint8sym", symmetric_activations=True), "all"),
        "linears-uint8-outq": (
            quant("linears-uint8-outq", symmetric_activations=False, quantize_outputs=True),
            "all",
        ),
        "linears-uint8-qoperator": (
            quant("linears-uint8-qop", symmetric_activations=False, quant_format="qoperator"),
            "all",
        ),
        "linears-uint8-basic": (course, "basic"),
        "linears-uint8-extended": (course, "extended"),
        "linears-uint8-prefused": (prefused, "all"),
        "ort-dynamic": (ort_quant.quantize_ort_dynamic(fp32, work / "ort-dynamic.onnx"), "all"),
    }
