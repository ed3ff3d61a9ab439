"""Goals, Markdown tables and the README block, all computed from a results dict (``latest.json``)."""

from __future__ import annotations

import math
import re
from pathlib import Path

from .ablation import STEPS
from .variants import VARIANTS

README_START = "<!-- benchmarks:start -->"
README_END = "<!-- benchmarks:end -->"

#: runtime id -> description (columns of the latency table).
RUNTIMES = {
    "pytorch-fp32": "PyTorch FP32, eager",
    "ort-fp32": "ONNX Runtime FP32",
    "ort-int8-course": "ONNX Runtime INT8, course pipeline",
    "ort-int8-default": "ONNX Runtime INT8, quantize_static defaults (MinMax)",
    "ort-int8-dynamic": "ONNX Runtime INT8, quantize_dynamic",
}
RESCALED = "pocket-rescaled"
ACC_KEYS = ("zero_shot", "t2i_R@1", "t2i_R@5", "i2t_R@1", "cosine_image", "cosine_text")


# --------------------------------------------------------------------------- lookups


def _acc(res: dict, model: str, variant: str, runtime: str = "ort") -> dict | None:
    for r in res.get("accuracy", []):
        if (r["model"], r["variant"], r["runtime"]) == (model, variant, runtime):
            return r
    return None


def _lat(res: dict, model: str, tower: str, batch: int, runtime: str) -> float | None:
    for r in res.get("latency", []):
        if (r["model"], r["tower"], r["batch"], r["runtime"]) == (model, tower, batch, runtime):
            return r["median_ms"]
    return None


def _size(res: dict, model: str, tower: str, variant: str) -> int | None:
    for r in res.get("size", []):
        if (r["model"], r["tower"], r["variant"]) == (model, tower, variant):
            return r["bytes"]
    return None


def _ok(*values) -> bool:
    return all(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)


# --------------------------------------------------------------------------- goals


def goals(res: dict) -> list[dict]:
    """The issue's goals, each with target, measured value and met (False when not measured)."""
    out = []
    missing = "not measured in this run"

    def add(goal, target, measured, met):
        out.append({"goal": goal, "target": target, "measured": measured, "met": bool(met)})

    fp, c = _acc(res, "pocket", "fp32", "pytorch"), _acc(res, "pocket", "int8-course")
    for key, label in (("zero_shot", "zero-shot"), ("t2i_R@1", "t2i R@1"), ("i2t_R@1", "i2t R@1")):
        goal = f"pocket W8A8 course pipeline: {label} within 0.5 pt of FP32"
        if fp and c and _ok(fp.get(key), c.get(key)):
            d = 100 * (c[key] - fp[key])
            add(
                goal,
                ">= -0.5 pt",
                f"{d:+.2f} pt ({100 * c[key]:.2f}% vs {100 * fp[key]:.2f}%)",
                d >= -0.5 - 1e-9,
            )
        else:
            add(goal, ">= -0.5 pt", missing, False)
    for key, label in (("cosine_image", "image"), ("cosine_text", "text")):
        goal = f"pocket W8A8 course pipeline: {label} embedding cosine to FP32 (mean)"
        if c and _ok(c.get(key)):
            add(goal, ">= 0.999", f"{c[key]:.4f}", c[key] >= 0.999)
        else:
            add(goal, ">= 0.999", missing, False)
    rc, rd = _acc(res, RESCALED, "int8-course"), _acc(res, RESCALED, "int8-ort-minmax")
    goal = "stress setting (rescaled what-if variant): course pipeline better than quantize_static defaults"
    if rc and rd and _ok(rc["zero_shot"], rd["zero_shot"], rc["t2i_R@1"], rd["t2i_R@1"]):
        add(
            goal,
            "higher zero-shot and t2i R@1",
            f"zero-shot {100 * rc['zero_shot']:.1f}% vs {100 * rd['zero_shot']:.1f}%, "
            f"t2i R@1 {100 * rc['t2i_R@1']:.1f}% vs {100 * rd['t2i_R@1']:.1f}%",
            rc["zero_shot"] > rd["zero_shot"] and rc["t2i_R@1"] > rd["t2i_R@1"],
        )
    else:
        add(goal, "higher zero-shot and t2i R@1", missing, False)
    b = "base-random"
    q, f, t = (
        _lat(res, b, "image", 32, rt) for rt in ("ort-int8-course", "ort-fp32", "pytorch-fp32")
    )
    for base, name, target in ((f, "ONNX Runtime FP32", 2.0), (t, "PyTorch FP32 eager", 3.0)):
        goal = f"base-random image tower, batch 32: INT8 ORT (course) vs {name}"
        if _ok(q, base):
            add(goal, f">= {target:.1f}x faster", f"{base / q:.2f}x", base / q >= target)
        else:
            add(goal, f">= {target:.1f}x faster", missing, False)
    s8, s32 = _size(res, b, "image", "int8-course"), _size(res, b, "image", "fp32")
    goal = "base-random image tower: INT8 file size / FP32 file size"
    if _ok(s8, s32):
        add(goal, "<= 0.27x", f"{s8 / s32:.3f}x", s8 / s32 <= 0.27)
    else:
        add(goal, "<= 0.27x", missing, False)
    return out


# --------------------------------------------------------------------------- markdown


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _f(v, spec: str = ".3f") -> str:
    return "–" if not _ok(v) else format(v, spec)


def machine_line(res: dict) -> str:
    m = res["machine"]
    flags = ", ".join(m.get("isa_flags", [])) or "none found"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['threads']} thread(s) used; "
        f"VNNI: {'yes' if m['vnni'] else 'no'} (flags: {flags}); onnxruntime {m['onnxruntime']}, "
        f"torch {m['torch']}, Python {m['python']}; {m['date']}"
    )


def accuracy_md(res: dict) -> str:
    header = ["model", "variant", "runtime", "zero-shot", "t2i R@1", "t2i R@5", "i2t R@1"]
    header += ["cos image", "cos text"]
    rows = [
        [r["model"], r["variant"], r["runtime"]]
        + [_f(r.get(k), ".4f" if k.startswith("cos") else ".3f") for k in ACC_KEYS]
        for r in res["accuracy"]
    ]
    return table(header, rows)


def latency_md(res: dict, models: tuple[str, ...] | None = None, batches=None) -> str:
    lat = [
        r
        for r in res["latency"]
        if (models is None or r["model"] in models) and (batches is None or r["batch"] in batches)
    ]
    runtimes = list(dict.fromkeys(r["runtime"] for r in lat))
    keys = list(dict.fromkeys((r["model"], r["tower"], r["batch"]) for r in lat))
    header = ["model", "tower", "batch"] + [f"{rt} ms" for rt in runtimes]
    rows = []
    for key in keys:
        base = _lat(res, *key, "ort-fp32")
        cells = []
        for rt in runtimes:
            v = _lat(res, *key, rt)
            if v is None:
                cells.append("–")
            elif base is not None and rt != "ort-fp32":
                cells.append(f"{v:.1f} ({base / v:.2f}x)")
            else:
                cells.append(f"{v:.1f}")
        rows.append([key[0], key[1], str(key[2]), *cells])
    return table(header, rows)


def size_md(res: dict) -> str:
    keys = list(dict.fromkeys((r["model"], r["tower"]) for r in res["size"]))
    variants = list(dict.fromkeys(r["variant"] for r in res["size"]))
    header = ["model", "tower"] + [f"{v} MiB" for v in variants]
    rows = []
    for key in keys:
        fp = _size(res, *key, "fp32")
        cells = []
        for v in variants:
            b = _size(res, *key, v)
            if b is None:
                cells.append("–")
            elif fp and v != "fp32":
                cells.append(f"{b / 2**20:.1f} ({b / fp:.3f}x)")
            else:
                cells.append(f"{b / 2**20:.1f}")
        rows.append([key[0], key[1], *cells])
    return table(header, rows)


def goals_md(res: dict) -> str:
    rows = [
        [g["goal"], g["target"], g["measured"], "met" if g["met"] else "**not met**"]
        for g in res["goals"]
    ]
    return table(["goal", "target", "measured", "met?"], rows)


def ablation_md(res: dict) -> str:
    abl = res.get("ablation", [])
    if not abl:
        return "_Not measured in this run._"
    base = next((r["median_ms"] for r in abl if r["step"] == "ort-fp32"), None)
    rows = [
        [
            f"`{r['step']}`",
            STEPS.get(r["step"], ""),
            f"{r['median_ms']:.0f}",
            f"{r['p10_ms']:.0f}-{r['p90_ms']:.0f}",
            _f(base / r["median_ms"], ".2f") + "x" if base else "–",
            _f(r.get("cosine"), ".5f"),
        ]
        for r in abl
    ]
    return table(["step", "what changes", "median ms", "p10-p90 ms", "vs ORT FP32", "cos"], rows)


def _abl(res: dict, step: str) -> float | None:
    for r in res.get("ablation", []):
        if r["step"] == step:
            return r["median_ms"]
    return None


def fast_path_text(res: dict) -> str:
    """The explanation of the fast path, with every number read from ``res``."""
    a = {s: _abl(res, s) for s in STEPS}
    if not _ok(a["ort-fp32"], a["linears-uint8act"]):
        return "_The ablation was not run (`--quick` or `--no-ablation`)._"
    abl = res["ablation"][0]
    fp = a["ort-fp32"]

    def x(step):
        return f"{fp / a[step]:.2f}x" if _ok(a[step]) else "–"

    ops = res.get("ablation_ops", {})
    op_note = ""
    if "ort-default" in ops:
        op_note = (
            f" After ONNX Runtime's graph optimisation the default model still runs "
            f"{ops['ort-default'].get('MatMul', 0)} float `MatMul` nodes next to "
            f"{ops['ort-default'].get('QLinearMatMul', 0)} integer `QLinearMatMul` ones, and "
            f"{ops['ort-default'].get('QuantizeLinear', 0)} `QuantizeLinear` / "
            f"{ops['ort-default'].get('DequantizeLinear', 0)} `DequantizeLinear` nodes."
        )
    if "linears-uint8act" in ops:
        o = ops["linears-uint8act"]
        op_note += (
            f" The course model's optimised graph runs {o.get('MatMulIntegerToFloat', 0)} "
            "`MatMulIntegerToFloat` nodes (the Linears: integer GEMM, float output); attention's "
            f"two products per layer stay float ({o.get('MatMul', 0)} plain `MatMul` nodes, the "
            "rest fused with their scaling)."
        )
    dyn_op = ""
    if ops.get("ort-dynamic", {}).get("DynamicQuantizeMatMul"):
        dyn_op = f", {ops['ort-dynamic']['DynamicQuantizeMatMul']} `DynamicQuantizeMatMul` nodes"
    prefused_note = ""
    pre, plain = ops.get("linears-uint8-prefused", {}), ops.get("linears-uint8act", {})
    if pre.get("file:QuantizeLinear", 0) < plain.get("file:QuantizeLinear", 0):
        prefused_note = (
            f" (its file has {ops['linears-uint8-prefused'].get('file:QuantizeLinear', 0)} "
            f"QuantizeLinear nodes against {ops['linears-uint8act'].get('file:QuantizeLinear', 0)} "
            "in the plain export's: the fused contrib operators carry no ONNX type information, "
            "so `quantize_static` leaves the MatMuls after them in float)"
        )
    return f"""\
Model: `{abl["model"]}` image tower, batch {abl["batch"]}, {res["machine"]["threads"]} thread(s),
every step timed in the same interleaved loop ({abl["repeats"]} repeats; speed-ups are ratios of
medians against ONNX Runtime FP32 in this loop).

* **quantize_static defaults: {x("ort-default")}.** Every quantizable operator gets
  QuantizeLinear/DequantizeLinear pairs (Add, Softmax, Sigmoid, attention's products ...), and
  q/k/v share one DequantizeLinear; ONNX Runtime fuses a QDQ group into an integer kernel only
  when each DequantizeLinear has a single consumer, so those MatMuls fall back to float on
  dequantized weights.{op_note}
* **DedicatedQDQPair** (one pair per consumer) alone: {x("default+dedicated")}.
* **Only the Linears, per-channel weights, MatMul outputs kept in float, int8
  activations:** {x("linears-int8act")}. **The same with uint8 activations:
  {x("linears-uint8act")}** (the course pipeline's settings). x86's VNNI instruction
  (`vpdpbusd`) multiplies *unsigned* 8-bit by *signed* 8-bit numbers: uint8 activations x int8
  weights (U8S8) are its native format, int8 x int8 (S8S8) needs extra work. A symmetric
  uint8 grid (zero point 128, what an NPU's symmetric int8 grid is after adding 128):
  {x("linears-uint8sym")}.
* Re-quantizing the MatMul outputs (`QLinearMatMul`, an extra rounding): {x("linears-uint8-outq")};
  the course keeps them float, so ONNX Runtime fuses DequantizeLinear-MatMul into
  `MatMulIntegerToFloat` (integer GEMM, float output, bias added in float).
* QOperator format instead of QDQ: {x("linears-uint8-qoperator")}; QDQ is the format
  `quantize_static`'s documentation recommends for CPUs, and the one an NPU toolchain reads.
* Graph optimisation level: BASIC (no QDQ fusion: QuantizeLinear, DequantizeLinear and a float
  MatMul) {x("linears-uint8-basic")}, EXTENDED {x("linears-uint8-extended")}, ALL
  {x("linears-uint8act")}: without the QDQ fusions (level EXTENDED and up) the integer
  model runs QuantizeLinear, DequantizeLinear and a float MatMul.
* Fusing the FP32 graph with `onnxruntime.transformers`' optimizer (attention, SkipLayerNorm,
  QuickGelu) gives the FP32 model {x("ort-fp32-fused")}. Quantizing that fused graph instead
  of the plain export: {x("linears-uint8-prefused")}{prefused_note}.
* Dynamic quantization (activation scale computed on every call{dyn_op}):
  {x("ort-dynamic")}; it needs no calibration but computes a min/max per call, and an NPU
  needs static scales.
* `reduce_range` (7-bit weights) is off: it exists for x86 CPUs *without* VNNI, whose
  `vpmaddubsw` adds pairs of uint8 x int8 products into saturating 16-bit sums; VNNI
  accumulates in 32 bits. On such a CPU, use `quantize_onnx(..., reduce_range=True)`.
"""


def stress_text(res: dict) -> str:
    rc, rd = _acc(res, RESCALED, "int8-course"), _acc(res, RESCALED, "int8-ort-minmax")
    rn = _acc(res, RESCALED, "int8-course-nosq")
    rf = _acc(res, RESCALED, "fp32", "pytorch")
    if not (rc and rd and rf):
        return "_The stress setting was not run._"
    st = res.get("settings", {})
    nosq = (
        f" Without SmoothQuant the course's own settings reach {100 * rn['zero_shot']:.1f}% "
        f"zero-shot (image cosine {rn['cosine_image']:.4f})."
        if rn
        else ""
    )
    return f"""\
The **rescaled variant** (`{RESCALED}`) is a labelled what-if model, never the pocket model:
`clipq_helpers.ptq.rescaled_variant` multiplies LayerNorm gamma/beta of
{len(st.get("rescaled_channels", []))} channels ({st.get("rescaled_channels")}) in every
vision layer by k = {st.get("rescaled_k")} and divides the consuming Linears' input columns
by k (chapter 4). Its FP32 function is the pocket model's (FP32 PyTorch image cosine to
the pocket model {rf["cosine_image"]:.6f}), but its activations have real-CLIP-like outlier
channels. Here ONNX Runtime's defaults fall to {100 * rd["zero_shot"]:.1f}% zero-shot (image
cosine {rd["cosine_image"]:.4f}); the course pipeline keeps {100 * rc["zero_shot"]:.1f}%
(image cosine {rc["cosine_image"]:.4f}), because SmoothQuant migrates the outlier channels'
range into the weights, where per-channel scales absorb it.{nosq} The text tower is
identical to the pocket model's, so these rows pair each quantized image tower with the FP32
text tower: they measure the image tower alone.
"""


def text_notes(res: dict) -> str:
    """Why ONNX Runtime's defaults break the text tower, and where the course's text error is."""
    fp, d = _acc(res, "pocket", "fp32", "pytorch"), _acc(res, "pocket", "int8-ort-minmax")
    c = _acc(res, "pocket", "int8-course")
    w = res.get("notes", {}).get("text_widest_range")
    if not (fp and d and c and w):
        return ""
    sym = _acc(res, "pocket", "int8-course-sym")
    sym_note = (
        f" With the NPU's symmetric activation grid the text cosine is {sym['cosine_text']:.4f}: "
        "the GELU outputs feeding each FFN's second Linear are one-sided (about -0.17 to large "
        "positive values), so a symmetric grid wastes almost half of its codes."
        if sym
        else ""
    )
    return f"""\
**The text tower.** With `quantize_static`'s defaults the pocket text tower's embeddings keep
a mean cosine of only {d["cosine_text"]:.4f} to FP32 (zero-shot {100 * d["zero_shot"]:.1f}%).
The defaults quantize every Add, including the one that adds BERT's attention mask to the
attention scores: the mask holds float32's minimum at padding positions, and the widest
calibrated range, `{w["tensor"]}`, spans [{w["min"]:.3g}, {w["max"]:.3g}]: one 8-bit step is
then ~1e36 and every real score rounds to the same code. The course pipeline quantizes only
the Linears and reaches a text cosine of {c["cosine_text"]:.4f}.{sym_note}
"""


def errors_md(res: dict) -> str:
    """The quantizations that failed (their rows above show dashes)."""
    errs = res.get("errors", [])
    if not errs:
        return ""
    lines = [
        f"* `{e['variant']}` on the {e['model']} {e['tower']} tower: `{e['error']}`" for e in errs
    ]
    return "Failed (dashes in the table):\n\n" + "\n".join(lines)


def goals_notes(res: dict) -> str:
    """What the goals that are not met come down to, from the numbers."""
    notes = []
    fp, c = _acc(res, "pocket", "fp32", "pytorch"), _acc(res, "pocket", "int8-course")
    n_zs = res.get("settings", {}).get("zeroshot_images")
    if n_zs is None:
        from clipq_helpers.shapes import SPLIT_SIZES

        n_zs = SPLIT_SIZES["zeroshot"]
    if (
        fp
        and c
        and _ok(fp["zero_shot"], c["zero_shot"])
        and c["zero_shot"] < fp["zero_shot"] - 0.005
    ):
        drop = fp["zero_shot"] - c["zero_shot"]
        images = f" ({round(drop * n_zs)} of {n_zs} images)" if n_zs else ""
        notes.append(
            f"* Zero-shot: the INT8 model classifies {100 * drop:.2f} pt fewer held-out images "
            f"correctly{images}; retrieval R@1 moves by "
            f"{100 * (c['t2i_R@1'] - fp['t2i_R@1']):+.2f} pt (t2i) and "
            f"{100 * (c['i2t_R@1'] - fp['i2t_R@1']):+.2f} pt (i2t)."
        )
    if c and _ok(c.get("cosine_text")) and c["cosine_text"] < 0.999:
        notes.append(
            f"* Text embedding cosine {c['cosine_text']:.4f} (image {c['cosine_image']:.4f}): the "
            "post-LN text tower is the hard one; see *The text tower* below."
        )
    return "\n".join(notes)


def equal_rows_note(res: dict) -> str:
    """Whether Entropy with quantize_static's default bins reproduced MinMax exactly."""
    a, b = _acc(res, RESCALED, "int8-ort-entropy"), _acc(res, RESCALED, "int8-ort-minmax")
    if not (a and b and _ok(a["zero_shot"], b["zero_shot"])):
        return ""
    same = all(a[k] == b[k] for k in ACC_KEYS)
    return (
        "`quantize_static(calibrate_method=Entropy)` keeps its default 128 histogram bins, which "
        "leave a single candidate threshold: on the rescaled variant its metrics are "
        + ("identical to MinMax's." if same else "not identical to MinMax's here.")
        + " The `int8-ort-entropy-512` row creates the calibrator directly with more bins."
    )


def results_md(res: dict) -> str:
    """The whole ``latest.md``."""
    st = res.get("settings", {})
    variants = "\n".join(f"* `{k}`: {v}" for k, v in VARIANTS.items())
    runtimes = "\n".join(f"* `{k}`: {v}" for k, v in RUNTIMES.items())
    return f"""\
# CLIP-Q benchmark results

*Generated by `{res["command"]}`; do not edit by hand. Regenerate with `python -m benchmarks.run`
(about 15-20 minutes on a 2-core CPU; `--quick` for a smoke run).*

**Machine:** {machine_line(res)}

## Goals

{goals_md(res)}

{goals_notes(res)}

## Accuracy

Evaluation of `clipq_helpers.evaluate` (zero-shot on held-out colour-shape pairs; retrieval
on the hard eval split{"" if st.get("eval_n") is None else f", first {st.get('eval_n')} pairs"});
cosines: mean cosine between each variant's and the FP32 PyTorch pocket model's embeddings of
the eval split. Calibration: {st.get("calib_n")} samples of the calibration split; SmoothQuant
alpha = {st.get("alpha")}.

{accuracy_md(res)}

{errors_md(res)}

{equal_rows_note(res)}

Variants:

{variants}

{text_notes(res)}

### Stress setting

{stress_text(res)}

## Latency

Median wall-clock milliseconds per call ({res["machine"]["threads"]} thread(s) for every
runtime); in brackets the speed-up over ONNX Runtime FP32 measured in the same interleaved loop.
Text towers run at sequence length {st.get("seq_len")}. `base-random` is the real ViT-B/16 +
RoBERTa-base architecture with random weights (speed and size only).

{latency_md(res)}

Runtimes:

{runtimes}

## Size on disk

{size_md(res)}

## The fast path

{ablation_md(res)}

{fast_path_text(res)}
"""


def readme_block(res: dict) -> str:
    """What goes between the README markers."""
    keep = [
        ("pocket", "fp32", "pytorch"),
        ("pocket", "fp32", "ort"),
        ("pocket", "int8-course", "ort"),
        ("pocket", "int8-ort-minmax", "ort"),
        (RESCALED, "int8-course", "ort"),
        (RESCALED, "int8-ort-minmax", "ort"),
    ]
    sub = dict(res)
    sub["accuracy"] = [
        r for r in res["accuracy"] if (r["model"], r["variant"], r["runtime"]) in keep
    ]
    big = "base-random" if any(r["model"] == "base-random" for r in res["latency"]) else None
    lat = latency_md(res, (big,) if big else None, (32,) if big else None)
    return f"""\
Measured by `{res["command"]}` on {machine_line(res)}.
Generated: do not edit; run `python -m benchmarks.run` to measure again (it rewrites this
block, `benchmarks/results/latest.json` and `benchmarks/results/latest.md`, which has every
table, the stress setting and an ablation of the fast path).

{goals_md(res)}

Latency (median ms; speed-up over ONNX Runtime FP32 in the same run):

{lat}

Accuracy (pocket model; `{RESCALED}` is the labelled what-if variant with planted outlier
channels in its image tower, evaluated with the FP32 text tower):

{accuracy_md(sub)}
"""


def update_readme(readme: Path, block: str) -> None:
    """Replace the text between the benchmark markers of ``readme`` by ``block``."""
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(README_START) + r".*?" + re.escape(README_END), re.S)
    if len(pattern.findall(text)) != 1:
        raise ValueError(f"{readme} must contain exactly one {README_START} ... {README_END} block")
    new = pattern.sub(lambda _m: f"{README_START}\n{block.rstrip()}\n{README_END}", text)
    readme.write_text(new, encoding="utf-8")
