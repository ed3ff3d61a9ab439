"""Run every CLIP-Q benchmark in one go and write the results.

    python -m benchmarks.run            # full run (about 15-20 min on a 2-core CPU)
    python -m benchmarks.run --quick    # smoke run: pocket only, few repeats (about 1 min)

Measures, side by side in one process: accuracy of the pocket model and of the rescaled
what-if variant (FP32 PyTorch, FP32 ONNX Runtime, the course's INT8 pipeline, ONNX
Runtime's own quantizers); latency of both towers at batch 1 and 32 for pocket and
base-random (PyTorch FP32 eager, ORT FP32, ORT INT8 course / defaults / dynamic; repeats
interleaved, one fixed thread count); sizes on disk; an ablation of the fast path. Writes
``benchmarks/results/latest.json`` (machine-readable), ``latest.md`` (tables and
explanations) and the table between the benchmark markers of ``README.md``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / "work"

#: the rescaled what-if variant of chapter 4 (same seed, channels and k as the chapter)
RESCALE_SEED, RESCALE_CHANNELS_N, RESCALE_K = 4, 2, 100.0
#: text sequence length for latency (Chinese-CLIP's context length is 52)
SEQ_LEN = 52


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description="Run every CLIP-Q benchmark in one go: accuracy, latency and size of the "
        "INT8 models against FP32 and ONNX Runtime's own quantizer, and the fast-path ablation.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Results: benchmarks/results/latest.{json,md} and the README table. "
        "Large intermediate files go to benchmarks/work/ (git-ignored).",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: pocket only, few repeats, "
        "eval subsets; writes to benchmarks/work/quick-results, README untouched",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="threads for every runtime (default: all %(default)s cores)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed repeats per latency cell (default 5, quick 2)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default benchmarks/results, quick: benchmarks/work/quick-results)",
    )
    p.add_argument(
        "--work",
        type=Path,
        default=None,
        help="folder for the ONNX files (default benchmarks/work/run; quick: benchmarks/work/quick-run)",
    )
    p.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="README to update (default README.md; quick: none)",
    )
    p.add_argument("--no-readme", action="store_true", help="do not touch any README")
    p.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite latest.md and the README block from --out's latest.json",
    )
    p.add_argument("--no-ablation", action="store_true", help="skip the fast-path ablation")
    p.add_argument("--no-base", action="store_true", help="skip base-random (pocket only)")
    p.add_argument(
        "--calib-n",
        type=int,
        default=None,
        help="calibration samples for pocket (default 256, quick 64)",
    )
    p.add_argument("--alpha", type=float, default=0.5, help="SmoothQuant alpha (default 0.5)")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    q = args.quick
    args.repeats = args.repeats or (2 if q else 5)
    args.out = args.out or (WORK / "quick-results" if q else RESULTS)
    args.work = args.work or (WORK / ("quick-run" if q else "run"))
    if args.no_readme or (q and args.readme is None):
        args.readme = None
    else:
        args.readme = args.readme or ROOT / "README.md"
    args.calib_n = args.calib_n or (64 if q else 256)
    args.eval_n = 100 if q else None
    args.batches = (1, 4) if q else (1, 32)
    args.models = ("pocket",) if (q or args.no_base) else ("pocket", "base-random")
    args.ablation = not (q or args.no_ablation or args.no_base)
    return args


# --------------------------------------------------------------------------- accuracy


def _torch_metrics(model, tokenizer, ref: dict, n: int | None) -> dict:
    from clipq_helpers.evaluate import Report, retrieval, zero_shot_accuracy
    from clipq_helpers.ort_quant import reference_embeddings

    zs = zero_shot_accuracy(model, tokenizer)
    zs_seen = zero_shot_accuracy(model, tokenizer, split="seen")
    t2i, i2t = retrieval(model, tokenizer, n=n)
    out = Report(zs, zs_seen, t2i, i2t).as_dict()
    mine = reference_embeddings(model, tokenizer, n)
    for key in ("image", "text"):
        cos = (mine[key] * ref[key]).sum(-1)
        out[f"cosine_{key}"], out[f"cosine_{key}_min"] = float(cos.mean()), float(cos.min())
    return out


def _row(model: str, variant: str, runtime: str, metrics: dict) -> dict:
    return {"model": model, "variant": variant, "runtime": runtime, **metrics}


ACC_METRICS = (
    "zero_shot",
    "zero_shot_seen",
    "t2i_R@1",
    "t2i_R@5",
    "i2t_R@1",
    "cosine_image",
    "cosine_text",
)


def accuracy(args, pocket, rescaled, tokenizer, files: dict, errors: dict, res: dict) -> None:
    """Accuracy rows of pocket and of the rescaled variant (image tower differs only)."""
    from clipq_helpers.ort_quant import evaluate_onnx, reference_embeddings

    ref = reference_embeddings(pocket, tokenizer, args.eval_n)
    cache: dict = {}
    for name, model in (("pocket", pocket), ("pocket-rescaled", rescaled)):
        # --quick: the rescaled variant's FP32 rows repeat the pocket model's function; skip them
        skip_fp32 = args.quick and name == "pocket-rescaled"
        if not skip_fp32:
            _log(f"accuracy: {name}, PyTorch FP32")
            res["accuracy"].append(
                _row(name, "fp32", "pytorch", _torch_metrics(model, tokenizer, ref, args.eval_n))
            )
        for variant in args.variants:
            if skip_fp32 and variant == "fp32":
                continue
            # the rescaled variant differs in its image tower only: pair it with the FP32
            # text tower, so its rows measure the image tower's quantization alone
            keys = [
                (name, "image", variant),
                ("pocket", "text", variant if name == "pocket" else "fp32"),
            ]
            failed = [errors[k] for k in keys if k in errors]
            if failed:
                _log(f"accuracy: {name}, {variant}: quantization failed")
                row = _row(name, variant, "ort", dict.fromkeys(ACC_METRICS))
                row["error"] = "; ".join(failed)
                res["accuracy"].append(row)
                continue
            image, text = files[keys[0]], files[keys[1]]
            _log(f"accuracy: {name}, {variant}")
            m = evaluate_onnx(
                image, text, tokenizer, ref, threads=args.threads, n=args.eval_n, cache=cache
            )
            res["accuracy"].append(_row(name, variant, "ort", m))


# --------------------------------------------------------------------------- latency


def _latency_inputs(name: str, model, tokenizer, batch: int) -> dict:
    from clipq_helpers import shapes
    from clipq_helpers.evaluate import tokenize
    from clipq_helpers.ort_quant import resized_pixels

    size = int(model.config.vision_config.image_size)
    data = shapes.make_split("eval", max(batch, 2))
    pixels = resized_pixels(data.images[:batch], size)
    if name == "pocket":
        enc = tokenize(tokenizer, data.captions[:batch])
        ids, mask = enc["input_ids"].numpy(), enc["attention_mask"].numpy()
    else:  # fixed length: Chinese-CLIP's context length
        rng = np.random.default_rng(0)
        ids = rng.integers(5, tokenizer.vocab_size, size=(batch, SEQ_LEN)).astype(np.int64)
        ids[:, 0] = tokenizer.cls_token_id
        mask = np.ones_like(ids)
    return {"pixels": pixels, "ids": ids.astype(np.int64), "mask": mask.astype(np.int64)}


def latency(args, name: str, model, tokenizer, files: dict, res: dict) -> None:
    """Interleaved latency of every runtime for both towers and all batch sizes."""
    import torch

    from clipq_helpers.models import image_embeddings, text_embeddings
    from clipq_helpers.ort_quant import make_session

    from .timing import interleaved, summary

    runtimes = {
        "ort-fp32": "fp32",
        "ort-int8-course": "int8-course",
        "ort-int8-default": "int8-ort-minmax",
        "ort-int8-dynamic": "int8-ort-dynamic",
    }
    for tower in ("image", "text"):
        sessions = {
            rt: make_session(files[(name, tower, v)], args.threads)
            for rt, v in runtimes.items()
            if (name, tower, v) in files
        }
        for batch in args.batches:
            x = _latency_inputs(name, model, tokenizer, batch)
            if tower == "image":
                px = torch.from_numpy(x["pixels"])
                feeds = {"pixel_values": x["pixels"]}

                def torch_fn(px=px):
                    with torch.inference_mode():
                        image_embeddings(model, px)
            else:
                ids, mask = torch.from_numpy(x["ids"]), torch.from_numpy(x["mask"])
                feeds = {"input_ids": x["ids"], "attention_mask": x["mask"]}

                def torch_fn(ids=ids, mask=mask):
                    with torch.inference_mode():
                        text_embeddings(model, ids, mask)

            fns = {"pytorch-fp32": torch_fn}
            for rt, sess in sessions.items():
                fns[rt] = lambda s=sess, f=feeds: s.run(None, f)
            _log(f"latency: {name} {tower} batch {batch} ({len(fns)} runtimes x {args.repeats})")
            times = interleaved(fns, args.repeats)
            for rt, t in times.items():
                row = {"model": name, "tower": tower, "batch": batch, "runtime": rt}
                row.update(summary(t))
                row["seq_len"] = int(x["ids"].shape[1]) if tower == "text" else None
                res["latency"].append(row)


def ablation(args, model, files: dict, res: dict) -> None:
    """The fast-path steps on base-random's image tower at batch 32, interleaved."""
    import onnx

    from clipq_helpers.onnx_export import image_size
    from clipq_helpers.ort_quant import make_session

    from . import ablation as abl
    from .timing import interleaved, summary

    vc = model.config.vision_config
    steps = abl.build(
        files[("base-random", "image", "fp32")],
        args.work / "ablation",
        calib_n=16,
        image_size=image_size(model),
        num_heads=vc.num_attention_heads,
        hidden_size=vc.hidden_size,
        log=_log,
    )
    batch = 32
    from clipq_helpers import shapes
    from clipq_helpers.ort_quant import resized_pixels

    x = resized_pixels(shapes.make_split("eval", batch).images, image_size(model))
    sessions = {s: make_session(p, args.threads, level=lvl) for s, (p, lvl) in steps.items()}
    ref = sessions["ort-fp32"].run(None, {"pixel_values": x})[0]
    cos = {}
    for s, sess in sessions.items():
        y = sess.run(None, {"pixel_values": x})[0]
        cos[s] = float(
            np.mean((ref * y).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(y, axis=1))
        )
    reps = max(3, args.repeats // 2)
    _log(f"ablation: {len(sessions)} steps x {reps} repeats, batch {batch}")
    times = interleaved(
        {s: (lambda s=s: sessions[s].run(None, {"pixel_values": x})) for s in sessions}, reps
    )
    for s, t in times.items():
        res["ablation"].append(
            {
                "model": "base-random",
                "tower": "image",
                "batch": batch,
                "step": s,
                **summary(t),
                "cosine": cos[s],
            }
        )
    ops = {}
    for s in ("ort-default", "linears-uint8act", "linears-uint8-prefused", "ort-dynamic"):
        counts = collections.Counter(
            n.op_type for n in onnx.load(str(steps[s][0]), load_external_data=False).graph.node
        )
        ops[s] = {f"file:{k}": v for k, v in counts.items() if "Quantize" in k or k == "MatMul"}
        ops[s].update(_optimized_ops(steps[s][0], args.threads))
    res["ablation_ops"] = ops


def widest_range(fp32: Path, reader) -> dict:
    """The calibrated tensor with the lowest minimum (min-max over ``reader``) of an ONNX model."""
    from clipq_helpers.ort_quant import calibrate_ranges

    ranges = calibrate_ranges(fp32, reader, op_types=None, symmetric=False)
    name, (lo, hi) = min(
        ((k, v.range_value) for k, v in ranges.data.items()), key=lambda kv: float(np.min(kv[1][0]))
    )
    return {"tensor": name, "min": float(np.min(lo)), "max": float(np.max(hi))}


def _optimized_ops(path: Path, threads: int) -> dict:
    """Operator counts of the graph ONNX Runtime actually runs (level ALL, after fusion)."""
    import tempfile

    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        so.optimized_model_filepath = str(Path(tmp) / "opt.onnx")
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        m = onnx.load(so.optimized_model_filepath, load_external_data=False)
    c = collections.Counter(n.op_type for n in m.graph.node)
    keep = (
        "MatMul",
        "QLinearMatMul",
        "MatMulIntegerToFloat",
        "MatMulInteger",
        "DynamicQuantizeMatMul",
        "DynamicQuantizeLinear",
        "QuantizeLinear",
        "DequantizeLinear",
    )
    return {k: c[k] for k in keep if c[k]}


# --------------------------------------------------------------------------- main


def render(args: argparse.Namespace) -> dict:
    """Rewrite latest.md and the README block from an existing latest.json."""
    from . import report

    path = args.out / "latest.json"
    if not path.is_file():
        raise SystemExit(f"{path} not found: run python -m benchmarks.run first")
    res = json.loads(path.read_text(encoding="utf-8"))
    (args.out / "latest.md").write_text(report.results_md(res), encoding="utf-8")
    if args.readme is not None:
        report.update_readme(args.readme, report.readme_block(res))
    _log(f"rendered {args.out / 'latest.md'}" + (f" and {args.readme}" if args.readme else ""))
    return res


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.render_only:
        return render(args)
    import torch

    from clipq_helpers import shapes
    from clipq_helpers.models import load_model, load_tokenizer
    from clipq_helpers.ptq import rescaled_variant

    from . import report, variants
    from .machine import machine_info

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    given = sys.argv[1:] if argv is None else list(argv)
    command = " ".join(["python -m benchmarks.run", shlex.join(given)]).strip()
    args.variants = variants.QUICK_VARIANTS if args.quick else tuple(variants.VARIANTS)
    res: dict = {
        "machine": machine_info(args.threads),
        "command": command,
        "settings": {
            "quick": args.quick,
            "calib_n": args.calib_n,
            "alpha": args.alpha,
            "eval_n": args.eval_n,
            "repeats": args.repeats,
            "batches": list(args.batches),
            "seq_len": f"{SEQ_LEN} (base-random); the captions' padded length (pocket)",
            "zeroshot_images": shapes.SPLIT_SIZES["zeroshot"],
        },
        "accuracy": [],
        "latency": [],
        "size": [],
        "ablation": [],
        "goals": [],
    }
    work = args.work
    for sub in ("pocket", "pocket-rescaled", "base-random", "ablation"):  # only what we write
        shutil.rmtree(work / sub, ignore_errors=True)
    tok = load_tokenizer("pocket")
    files: dict = {}
    errors: dict = {}

    pocket = load_model("pocket")
    g = torch.Generator().manual_seed(RESCALE_SEED)
    channels = torch.randperm(pocket.config.vision_config.hidden_size, generator=g)[
        :RESCALE_CHANNELS_N
    ].tolist()
    res["settings"].update(rescaled_channels=channels, rescaled_k=RESCALE_K)
    rescaled = rescaled_variant(pocket, channels, RESCALE_K)
    _log(f"building ONNX variants of pocket: {', '.join(args.variants)}")

    def add(name, model, variant_ids, towers=("image", "text"), calib_n=args.calib_n):
        built, failed = variants.build(
            model,
            tok,
            work / name,
            variant_ids,
            towers,
            calib_n=calib_n,
            alpha=args.alpha,
            log=_log,
        )
        files.update({(name, t, v): p for (t, v), p in built.items()})
        errors.update({(name, t, v): e for (t, v), e in failed.items()})

    add("pocket", pocket, args.variants)
    _log("building the rescaled variant's image towers")
    add("pocket-rescaled", rescaled, args.variants, ("image",))
    accuracy(args, pocket, rescaled, tok, files, errors, res)
    from clipq_helpers.ort_quant import ShapesCalibrationReader

    res["notes"] = {
        "text_widest_range": widest_range(
            files[("pocket", "text", "fp32")], ShapesCalibrationReader("text", 64, tokenizer=tok)
        )
    }
    del rescaled

    lat_variants = ("fp32", "int8-course", "int8-ort-minmax", "int8-ort-dynamic")
    models = {"pocket": pocket}
    if "base-random" in args.models:
        base = load_model("base-random")
        models["base-random"] = base
        _log("building ONNX variants of base-random (speed and size only)")
        add("base-random", base, lat_variants, calib_n=16)
    for name, model in models.items():
        latency(args, name, model, tok, files, res)
    if args.ablation:
        try:
            ablation(args, models["base-random"], files, res)
        except Exception as err:  # keep the measurements made so far
            _log(f"ablation FAILED: {type(err).__name__}: {err}")
            res["ablation_error"] = f"{type(err).__name__}: {err}"
    for (name, tower, v), p in sorted(files.items()):
        if v in lat_variants and name in models:
            res["size"].append(
                {"model": name, "tower": tower, "variant": v, "bytes": p.stat().st_size}
            )
    res["errors"] = [
        {"model": m, "tower": t, "variant": v, "error": e} for (m, t, v), e in errors.items()
    ]
    res["goals"] = report.goals(res)
    res["settings"]["wall_s"] = round(time.perf_counter() - t0, 1)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(
        json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (args.out / "latest.md").write_text(report.results_md(res), encoding="utf-8")
    if args.readme is not None:
        report.update_readme(args.readme, report.readme_block(res))
    _log(
        f"done in {res['settings']['wall_s']:.0f} s: {args.out / 'latest.json'}, {args.out / 'latest.md'}"
        + (f", {args.readme}" if args.readme else "")
    )
    for goal in res["goals"]:
        print(
            f"  {'met    ' if goal['met'] else 'NOT MET'}  {goal['goal']}: {goal['measured']} (target {goal['target']})"
        )
    return res


if __name__ == "__main__":
    main()
