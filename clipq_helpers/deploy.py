"""From a Chinese-CLIP checkpoint to INT8 ONNX files, in one command (chapter 8's recipe).

    python -m clipq_helpers.deploy --model pocket --out deploy/pocket
    python -m clipq_helpers.deploy --model base-random --out deploy/base --calib-n 32
    python -m clipq_helpers.deploy --model OFA-Sys/chinese-clip-vit-base-patch16 --out deploy/real

Writes ``image_fp32.onnx``, ``image_int8.onnx``, ``text_fp32.onnx``, ``text_int8.onnx`` and
``deploy_report.json`` (settings, file sizes, max abs difference of the FP32 ONNX towers to
PyTorch, cosine of the INT8 towers to FP32) to ``--out``. The INT8 files need only
``onnxruntime`` and ``numpy`` to run. A hub id needs the network once (then it is cached);
``pocket`` and ``base-random`` work offline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

#: the course pipeline's default SmoothQuant strength and calibration size
DEFAULT_ALPHA = 0.5
DEFAULT_CALIB_N = 256


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m clipq_helpers.deploy",
        description=(
            "Export both towers of a Chinese-CLIP model to ONNX and quantize them to INT8 with "
            "the course pipeline: SmoothQuant folded into the FP32 model, per-channel symmetric "
            "INT8 weights, per-tensor static activations calibrated on the course's calibration "
            "split, only the Linear layers quantized (ONNX Runtime QDQ)."
        ),
        epilog=(
            "examples:\n"
            "  python -m clipq_helpers.deploy --model pocket --out deploy/pocket\n"
            "  python -m clipq_helpers.deploy --model OFA-Sys/chinese-clip-vit-base-patch16 "
            "--out deploy/real\n\n"
            "Outputs in --out: image_fp32.onnx, image_int8.onnx, text_fp32.onnx, text_int8.onnx,\n"
            "deploy_report.json. Run the INT8 files with onnxruntime alone, e.g.\n"
            "  onnxruntime.InferenceSession('deploy/pocket/image_int8.onnx').run(None, "
            "{'pixel_values': x})"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default="pocket",
        help="'pocket' (default, offline), 'base-random' (real ViT-B/16 size, random weights, "
        "offline) or a Hugging Face hub id such as OFA-Sys/chinese-clip-vit-base-patch16 "
        "(needs the network once; safetensors only)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument(
        "--alpha",
        type=float,
        default=DEFAULT_ALPHA,
        help="SmoothQuant migration strength in [0, 1] (default %(default)s); "
        "use --no-smoothquant to skip it",
    )
    p.add_argument("--no-smoothquant", action="store_true", help="quantize without SmoothQuant")
    p.add_argument(
        "--calib-n",
        type=int,
        default=DEFAULT_CALIB_N,
        help="calibration images and captions from the shapes world's calibration split "
        "(1-512, default %(default)s)",
    )
    p.add_argument(
        "--method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="activation calibration (default %(default)s)",
    )
    p.add_argument(
        "--symmetric-activations",
        action="store_true",
        help="symmetric activation grid (an NPU's constraint); default asymmetric uint8, the "
        "CPU's native format",
    )
    p.add_argument(
        "--towers",
        choices=("both", "image", "text"),
        default="both",
        help="which towers to export (default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 0.0 <= args.alpha <= 1.0:
        p.error(f"--alpha must be in [0, 1], got {args.alpha}")
    if not 1 <= args.calib_n <= 512:
        p.error(f"--calib-n must be in [1, 512] (the calibration split's size), got {args.calib_n}")
    if args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.out.exists() and not args.out.is_dir():
        p.error(f"--out {args.out} exists and is not a folder")


def verify(model, tokenizer, paths: dict, threads: int = 1, n: int = 16) -> dict:
    """FP32 ONNX vs PyTorch (max abs diff) and INT8 vs FP32 ONNX (cosine) on ``n`` eval samples."""
    import numpy as np
    import torch

    from . import shapes
    from .evaluate import tokenize
    from .models import image_embeddings, text_embeddings
    from .onnx_export import image_size
    from .ort_quant import make_session, ort_image_embeddings, ort_text_embeddings, resized_pixels

    data = shapes.make_split("eval", n)
    out: dict = {}

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return float((a * b).sum(1).mean())

    if "image_fp32" in paths:
        px = resized_pixels(data.images, image_size(model))
        with torch.no_grad():
            ref = image_embeddings(model, torch.from_numpy(px)).numpy()
        f = ort_image_embeddings(make_session(paths["image_fp32"], threads), px)
        q = ort_image_embeddings(make_session(paths["image_int8"], threads), px)
        out["image"] = {
            "fp32_max_abs_diff_vs_pytorch": float(np.abs(f - ref).max()),
            "pytorch_max_abs": float(np.abs(ref).max()),
            "int8_cosine_vs_fp32": cos(q, f),
        }
    if "text_fp32" in paths:
        enc = tokenize(tokenizer, data.captions)
        with torch.no_grad():
            ref = text_embeddings(model, enc["input_ids"], enc["attention_mask"]).numpy()
        ids, mask = enc["input_ids"].numpy(), enc["attention_mask"].numpy()
        f = ort_text_embeddings(make_session(paths["text_fp32"], threads), ids, mask)
        q = ort_text_embeddings(make_session(paths["text_int8"], threads), ids, mask)
        out["text"] = {
            "fp32_max_abs_diff_vs_pytorch": float(np.abs(f - ref).max()),
            "pytorch_max_abs": float(np.abs(ref).max()),
            "int8_cosine_vs_fp32": cos(q, f),
        }
    out["samples"] = n
    return out


def deploy(args: argparse.Namespace) -> dict:
    """Run the pipeline for parsed ``args``; returns the report (also written to the folder)."""
    import torch
    from tqdm.auto import tqdm

    from .models import load_model, load_tokenizer
    from .ort_quant import course_int8

    torch.set_num_threads(args.threads)
    towers = ("image", "text") if args.towers == "both" else (args.towers,)
    progress = not args.no_progress
    t0 = time.perf_counter()
    with tqdm(total=4, desc="deploy", disable=not progress, unit="step") as bar:
        bar.set_postfix_str(f"loading {args.model}")
        model = load_model(args.model)
        tokenizer = load_tokenizer(args.model)
        bar.update()
        bar.set_postfix_str("export + SmoothQuant + INT8")
        paths = course_int8(
            model,
            tokenizer,
            args.out,
            alpha=None if args.no_smoothquant else args.alpha,
            calib_n=args.calib_n,
            method=args.method,
            symmetric_activations=args.symmetric_activations,
            towers=towers,
            progress=progress,
        )
        bar.update()
        bar.set_postfix_str("verifying")
        checks = verify(model, tokenizer, paths, args.threads)
        bar.update()
        report = {
            "model": args.model,
            "settings": {
                "smoothquant_alpha": None if args.no_smoothquant else args.alpha,
                "calib_n": args.calib_n,
                "calibration": args.method,
                "weights": "int8, symmetric, per output channel",
                "activations": "per-tensor static, "
                + (
                    "symmetric (uint8, zero point 128)"
                    if args.symmetric_activations
                    else "asymmetric uint8"
                ),
                "quantized_ops": "the Linears (MatMul/Gemm with constant weights)",
                "format": "ONNX QDQ, opset 17",
            },
            "files": {k: {"path": str(p), "bytes": p.stat().st_size} for k, p in paths.items()},
            "size_ratio_int8_to_fp32": {
                t: paths[f"{t}_int8"].stat().st_size / paths[f"{t}_fp32"].stat().st_size
                for t in towers
            },
            "checks": checks,
            "seconds": round(time.perf_counter() - t0, 1),
        }
        (args.out / "deploy_report.json").write_text(
            json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        bar.update()
    return report


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    _check_args(p, args)
    from .models import ModelUnavailableError

    try:
        report = deploy(args)
    except ModelUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for tower, info in report["checks"].items():
        if isinstance(info, dict):
            print(
                f"{tower}: FP32 ONNX max |diff| to PyTorch {info['fp32_max_abs_diff_vs_pytorch']:.2e}; "
                f"INT8 cosine to FP32 {info['int8_cosine_vs_fp32']:.4f}; INT8/FP32 size "
                f"{report['size_ratio_int8_to_fp32'][tower]:.3f}"
            )
    print(f"wrote {args.out}/ (deploy_report.json) in {report['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
