"""Tests of clipq_helpers.int8_lab: integer arithmetic of chapter 8 and the benchmark tables."""

import contextlib
import io
import json
import logging
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from clipq_helpers.fakequant import FastQuantLinear
from clipq_helpers.int8_lab import (
    FLOAT32_EXACT,
    IntegerLinear,
    ablation_table,
    accumulator_bound,
    accuracy_table,
    bias_to_int32,
    code_flips,
    cpu_int8_flags,
    default_results_path,
    goals_table,
    integerize,
    latency_table,
    load_results,
    machine_summary,
    onnx_op_counts,
    ort_optimized_op_counts,
    qdq_summary,
    quantize_multiplier,
    requantize_fixed_point,
    requantize_float,
    size_table,
    speedup_table,
    time_matmul,
)
from clipq_helpers.quantize import dequantize

# --------------------------------------------------------------------------- accumulators


@pytest.mark.parametrize("k", [1, 2, 3, 384, 1536])
def test_accumulator_bound_is_the_real_worst_case(k):
    a = torch.full((1, k), 127, dtype=torch.int64)
    worst = int((a @ a.T).item())  # all codes at the narrow-range maximum
    b = accumulator_bound(k)
    assert b["bound"] == worst
    assert b["int16"] == (worst <= 32767)
    assert b["int32"] == (worst <= 2**31 - 1)
    assert (1 << (b["bits"] - 1)) > worst >= (1 << (b["bits"] - 2))  # sign + magnitude bits


def test_accumulator_bound_limits():
    # 2 products of 127 * 127 fit int16 (32258), 3 do not
    assert accumulator_bound(2)["int16"] and not accumulator_bound(3)["int16"]
    # float32 holds every integer up to 2^24: k * 16129 <= 2^24 up to k = 1040
    assert accumulator_bound(FLOAT32_EXACT // 16129)["float32_exact"]
    assert not accumulator_bound(FLOAT32_EXACT // 16129 + 1)["float32_exact"]
    # int32 overflows only beyond 2^31 / 16129 = 133_144 products
    assert accumulator_bound(133_144)["int32"] and not accumulator_bound(133_145)["int32"]
    with pytest.raises(ValueError, match="positive int"):
        accumulator_bound(0)


# --------------------------------------------------------------------------- requantization


@given(st.floats(1e-9, 1e3, allow_nan=False))
def test_quantize_multiplier_represents_m(m):
    m0, shift = quantize_multiplier(m)
    assert 2**30 <= int(m0) < 2**31
    approx = Fraction(int(m0), 2 ** (31 + int(shift)))
    assert abs(approx - Fraction(m)) <= Fraction(m) / 2**31  # rounding of a 31-bit mantissa


def round_half_away(fr: Fraction) -> int:
    """Exact round-half-away-from-zero of a rational number."""
    n = abs(fr)
    q = int(n)
    q += 1 if n - q >= Fraction(1, 2) else 0
    return q if fr >= 0 else -q


@given(
    st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=20),
    st.floats(1e-7, 4.0, allow_nan=False),
)
def test_fixed_point_within_one_lsb_of_exact(accs, m):
    acc = torch.tensor(accs, dtype=torch.int32)
    m0, shift = quantize_multiplier(m)
    got = requantize_fixed_point(acc, m0, shift).to(torch.int64)
    flt = requantize_float(acc, m).to(torch.int64)
    for a, g, f in zip(accs, got.tolist(), flt.tolist(), strict=True):
        exact = max(-128, min(127, round_half_away(Fraction(a) * Fraction(m))))
        assert abs(g - exact) <= 1
        assert abs(f - exact) <= 1
    assert int((got - flt).abs().max()) <= 1


def test_requantize_hand_cases():
    acc = torch.tensor([200, 6, -6, 10, -10, 10**6, -(10**6)], dtype=torch.int32)
    m0, shift = quantize_multiplier(0.25)
    assert (int(m0), int(shift)) == (2**30, 1)  # 0.25 = 0.5 * 2^-1
    # 50; 1.5 -> 2 and -1.5 -> -2, 2.5 -> 3 and -2.5 -> -3 (the rounding shift: ties away
    # from zero); saturation at the int8 range
    assert requantize_fixed_point(acc, m0, shift).tolist() == [50, 2, -2, 3, -3, 127, -128]
    # the float path rounds ties to even: 2.5 -> 2, -2.5 -> -2
    assert requantize_float(acc, 0.25).tolist() == [50, 2, -2, 2, -2, 127, -128]
    # a multiplier >= 1 is a left shift; uint8 output with a zero point
    m0, shift = quantize_multiplier(2.5)
    assert int(shift) < 0
    out = requantize_fixed_point(
        torch.tensor([3, -60], dtype=torch.int32), m0, shift, 128, signed=False
    )
    assert out.dtype == torch.uint8 and out.tolist() == [136, 0]  # 7.5 -> 8 (+128); -150 -> 0


def test_requantize_per_channel_and_bad_input():
    acc = torch.tensor([[1000, 1000], [-1000, 1000]], dtype=torch.int32)
    m = torch.tensor([0.01, 0.1])
    m0, shift = quantize_multiplier(m)
    assert requantize_fixed_point(acc, m0, shift).tolist() == [[10, 100], [-10, 100]]
    with pytest.raises(TypeError, match="integer"):
        requantize_float(acc.float(), 0.1)
    with pytest.raises(ValueError, match="> 0"):
        quantize_multiplier(0.0)
    with pytest.raises(ValueError, match="m0"):
        requantize_fixed_point(acc, torch.tensor(5), torch.tensor(0))


def test_bias_to_int32():
    b = torch.tensor([1.0, -0.26, 0.0])
    assert bias_to_int32(b, 0.1, 0.5).tolist() == [20, -5, 0]  # -0.26 / 0.05 = -5.2
    gen = torch.Generator().manual_seed(0)
    b, ws = torch.randn(64, generator=gen), torch.rand(64, generator=gen) * 0.01 + 1e-3
    bq = bias_to_int32(b, 0.02, ws)
    assert bq.dtype == torch.int32
    assert float((bq.double() * 0.02 * ws.double() - b.double()).abs().max()) <= float(
        (0.5 * 0.02 * ws.double()).max() * (1 + 1e-6)
    )
    with pytest.raises(ValueError, match="int32"):
        bias_to_int32(torch.tensor([1.0]), 1e-10, 1e-10)


# --------------------------------------------------------------------------- integer Linear


def calibrated_quant_linear(k=48, n=24, seed=0, a_granularity="per_tensor"):
    torch.manual_seed(seed)
    lin = nn.Linear(k, n)
    ql = FastQuantLinear.from_linear(
        lin, w_bits=8, a_bits=8, w_granularity="per_channel", a_granularity=a_granularity
    )
    x = torch.randn(5, 7, k) * 3
    if a_granularity == "per_tensor":
        ql.start_calibration()
        ql(x)
        ql.freeze()
    return ql, x


@pytest.mark.parametrize("a_granularity", ["per_tensor", "per_token"])
def test_integer_linear_accumulator_is_exact(a_granularity):
    ql, x = calibrated_quant_linear(a_granularity=a_granularity)
    il = IntegerLinear.from_quant_linear(ql)
    x_q, s_x = il.quantize_input(x)
    # the codes are those of the fake quantizer
    assert torch.equal(dequantize(x_q, s_x), ql.quantize_input(x))
    acc = il.accumulate(x_q)
    assert acc.dtype == torch.int32
    ref = x_q.to(torch.int64) @ il.w_q.to(torch.int64).T
    assert torch.equal(acc.to(torch.int64), ref)
    # outputs agree up to float32 rounding
    with torch.no_grad():
        y_fake, y_int = ql(x), il(x)
    assert torch.allclose(y_int, y_fake, rtol=1e-5, atol=1e-5 * float(y_fake.abs().max()))


def test_integer_linear_bit_exact_with_power_of_two_scales():
    # with power-of-two scales and K * 127^2 < 2^24, every float32 operation of the
    # fake-quantized F.linear is exact, so it equals the integer path bit for bit
    gen = torch.Generator().manual_seed(1)
    k, n = 256, 40
    assert accumulator_bound(k)["float32_exact"]
    w_q = torch.randint(-127, 128, (n, k), generator=gen, dtype=torch.int8)
    w_scale = 2.0 ** torch.randint(-12, -4, (n,), generator=gen).float()
    x_scale = torch.tensor(2.0**-5)
    x = torch.randn(3, 9, k, generator=gen)
    il = IntegerLinear(w_q, w_scale, x_scale)
    x_fake = torch.round(x / x_scale).clamp(-127, 127) * x_scale
    y_fake = F.linear(x_fake, dequantize(w_q, w_scale[:, None]))
    assert torch.equal(il(x), y_fake)


def test_integer_linear_int32_bias_error_bound():
    ql, x = calibrated_quant_linear(seed=3)
    f, i = (
        IntegerLinear.from_quant_linear(ql),
        IntegerLinear.from_quant_linear(ql, bias_mode="int32"),
    )
    unit = ql.act_scale * i.w_scale  # one accumulator unit per output channel
    diff = (i(x) - f(x)).abs()
    assert bool((diff <= 0.5 * unit + 1e-5 * float(f(x).abs().max())).all())
    assert i.bias_q.dtype == torch.int32


def test_integer_linear_rejects_what_it_cannot_run():
    lin = nn.Linear(32, 8)
    with pytest.raises(ValueError, match="per-group"):
        IntegerLinear.from_quant_linear(
            FastQuantLinear.from_linear(lin, w_granularity="per_group", group_size=16, a_bits=8)
        )
    with pytest.raises(ValueError, match="w_bits=8"):
        IntegerLinear.from_quant_linear(FastQuantLinear.from_linear(lin, w_bits=4))
    with pytest.raises(ValueError, match="not calibrated"):
        IntegerLinear.from_quant_linear(FastQuantLinear.from_linear(lin))
    with pytest.raises(TypeError, match="QuantLinear"):
        IntegerLinear.from_quant_linear(lin)
    ql, _ = calibrated_quant_linear(k=32, n=8)
    with pytest.raises(ValueError, match="shape mismatch"):
        IntegerLinear.from_quant_linear(ql)(torch.randn(2, 31))


def test_integerize_model_and_code_flips():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 16))
    for i in (0, 2):
        model[i] = FastQuantLinear.from_linear(model[i], w_granularity="per_channel")
    x = torch.randn(200, 32)
    for m in (model[0], model[2]):
        m.start_calibration()
    model(x)
    for m in (model[0], model[2]):
        m.freeze()
    int_model = integerize(model, track_acc=True)
    assert isinstance(int_model[0], IntegerLinear) and isinstance(model[0], FastQuantLinear)
    with torch.no_grad():
        y_fake, y_int = model(x), int_model(x)
    assert float((y_fake - y_int).abs().max()) <= 0.05 * float(y_fake.abs().max())
    flips = code_flips(model, int_model, lambda m: m(x))
    assert set(flips) == {"0", "2"}
    assert flips["0"] == (0, 200 * 32, 0)  # the first layer sees the same input: no flip
    assert flips["2"][1] == 200 * 64 and flips["2"][0] <= 0.01 * 200 * 64
    assert 0 < int_model[2].acc_absmax <= accumulator_bound(64)["bound"]
    with pytest.raises(ValueError, match="no QuantLinear"):
        integerize(nn.Sequential(nn.Linear(2, 2)))


def test_time_matmul_reports_positive_times():
    t = time_matmul(16, 32, 16, repeats=2)
    assert t["int8_ms"] > 0 and t["float32_ms"] > 0
    assert t["speedup"] == pytest.approx(t["float32_ms"] / t["int8_ms"])


# --------------------------------------------------------------------------- ONNX graphs


def tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 8])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_op_counts_show_qdq_fusion(tmp_path):
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    fp32 = tiny_onnx(tmp_path / "tiny.onnx")
    assert onnx_op_counts(fp32) == {"MatMul": 1, "Add": 1}
    rng = np.random.default_rng(1)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"x": rng.standard_normal((4, 16)).astype(np.float32)}] * 2)

        def get_next(self):
            return next(self.it, None)

    int8, int8_pc = tmp_path / "tiny_int8.onnx", tmp_path / "tiny_int8_pc.onnx"
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)  # ORT's "consider pre-processing" advice
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(fp32),
                str(int8),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
            )
            quantize_static(
                str(fp32),
                str(int8_pc),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["MatMul"],
                per_channel=True,
                activation_type=QuantType.QUInt8,
                extra_options={"ActivationSymmetric": True},
            )
    finally:
        root.setLevel(level)
    qdq = onnx_op_counts(int8)
    assert qdq["MatMul"] == 1 and qdq["QuantizeLinear"] >= 1 and qdq["DequantizeLinear"] >= 2
    summary = qdq_summary(int8)
    assert summary["weights"] == 1 and summary["weight_types"] == {"int8": 1}
    assert summary["weights_per_channel"] == 0  # quantize_static's default: per tensor
    assert summary["activations"] >= 1 and set(summary["activation_types"]) == {"int8"}
    assert qdq_summary(fp32)["weights"] == 0
    summary = qdq_summary(int8_pc)
    assert summary["weights_per_channel"] == 1
    assert set(summary["activation_types"]) == {"uint8"}
    assert summary["activation_zero_points"] == [128]  # symmetric uint8: zero point 128
    fused = ort_optimized_op_counts(int8)
    assert fused["QLinearMatMul"] == 1 and "MatMul" not in fused  # an integer kernel
    with pytest.raises(FileNotFoundError):
        onnx_op_counts(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="level"):
        ort_optimized_op_counts(int8, level="max")


# --------------------------------------------------------------------------- benchmark tables


def fixture_results():
    """A made-up results file in the schema of benchmarks/results/latest.json (tests only)."""
    return {
        "machine": {
            "cpu": "Test CPU",
            "cores": 2,
            "threads": 2,
            "vnni": True,
            "isa_flags": ["avx2", "avx512_vnni"],
            "onnxruntime": "1.0",
            "torch": "2.0",
            "python": "3.11",
            "date": "2026-01-01",
        },
        "command": "python -m benchmarks.run",
        "accuracy": [
            {
                "model": "pocket",
                "variant": "fp32",
                "runtime": "pytorch",
                "zero_shot": 0.9,
                "t2i_R@1": 0.8,
                "t2i_R@5": 1.0,
                "i2t_R@1": 0.7,
                "cosine_image": 1.0,
                "cosine_text": 1.0,
            },
            {
                "model": "pocket",
                "variant": "int8",
                "runtime": "ort",
                "zero_shot": 0.85,
                "t2i_R@1": 0.75,
                "t2i_R@5": None,
                "i2t_R@1": 0.7,
                "cosine_image": 0.999,
                "cosine_text": 0.998,
            },
        ],
        "latency": [
            {"model": "m", "tower": "image", "batch": 1, "runtime": "fp32", "median_ms": 10.0},
            {"model": "m", "tower": "image", "batch": 1, "runtime": "int8", "median_ms": 4.0},
            {"model": "m", "tower": "image", "batch": 32, "runtime": "fp32", "median_ms": 300.0},
        ],
        "size": [
            {"model": "m", "tower": "image", "variant": "fp32", "bytes": 4 * 2**20},
            {"model": "m", "tower": "image", "variant": "int8", "bytes": 2**20},
        ],
        "goals": [{"goal": "speed", "target": ">= 2x", "measured": "2.5x", "met": True}],
    }


def test_load_results_and_tables(tmp_path):
    assert load_results(tmp_path / "latest.json") is None  # not measured yet
    path = tmp_path / "latest.json"
    path.write_text(json.dumps(fixture_results()), encoding="utf-8")
    res = load_results(path)
    assert "Test CPU" in machine_summary(res) and "VNNI: yes" in machine_summary(res)
    header, rows = accuracy_table(res)
    assert len(header) == len(rows[0]) and rows[1][3] == "0.850" and rows[1][5] == "–"
    header, rows = latency_table(res, baseline="fp32")
    assert header == ["model", "tower", "batch", "fp32 (ms)", "int8 (ms)"]
    assert rows[0][3:] == ["10.00", "4.00 (2.50x)"] and rows[1][3:] == ["300.00", "–"]
    assert len(latency_table(res, batches=[32])[1]) == 1
    header, rows = speedup_table(res, "int8", ["fp32", "missing"])
    assert header[-2:] == ["vs fp32", "vs missing"]
    assert rows == [["m", "image", "1", "4.00", "2.50x", "–"]]  # 10 ms / 4 ms
    header, rows = size_table(res)
    assert rows == [["m", "image", "4.00", "1.00 (0.250x)"]]
    assert goals_table(res)[1] == [["speed", ">= 2x", "2.5x", "met"]]
    assert ablation_table(res)[1] == []  # optional entry, absent here
    res["ablation"] = [
        {"step": "ort-fp32", "median_ms": 30.0, "cosine": 1.0},
        {"step": "fast", "median_ms": 12.0, "cosine": 0.999},
    ]
    assert ablation_table(res)[1][1] == ["`fast`", "12.0", "2.50x", "0.99900"]


def test_load_results_malformed(tmp_path):
    path = tmp_path / "latest.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match="benchmarks.run"):
        load_results(path)
    broken = fixture_results()
    del broken["latency"][0]["median_ms"]
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match="median_ms"):
        load_results(path)
    broken = fixture_results()
    del broken["goals"]
    path.write_text(json.dumps(broken), encoding="utf-8")
    with pytest.raises(ValueError, match="goals"):
        load_results(path)


def test_cpu_int8_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(
        "processor: 0\nflags\t\t: fpu sse avx2 avx512bw avx512_vnni\n", encoding="utf-8"
    )
    got = cpu_int8_flags(info)
    assert got["avx2"] and got["avx512_vnni"] and not got["avx_vnni"] and not got["amx_int8"]
    assert not any(cpu_int8_flags(tmp_path / "missing").values())


def test_default_results_path(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "book").mkdir()
    want = tmp_path / "benchmarks" / "results" / "latest.json"
    assert default_results_path(tmp_path / "book") == want  # found from a subfolder
    assert default_results_path(tmp_path) == want


# --------------------------------------------------------------------------- the recipe page

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "book" / "deploy_recipe.md"
POCKET_VOCAB = ROOT / "clipq_helpers" / "pocket" / "vocab.txt"


def recipe_snippet(out_dir, vocab=POCKET_VOCAB) -> str:
    """The run_int8.py block of the recipe, pointed at ``out_dir`` and ``vocab``."""
    text = RECIPE.read_text(encoding="utf-8")
    start = text.index("# run_int8.py: needs only numpy and onnxruntime")
    code = text[start : text.index("```", start)]
    # keep the assignment on one line (a trailing comment is fine)
    for name, value, new in (
        ("OUT", "deploy/pocket", out_dir),
        ("VOCAB", "clipq_helpers/pocket/vocab.txt", vocab),
    ):
        pattern = rf'^{name} = "{re.escape(value)}"'
        assert re.search(pattern, code, flags=re.M), (
            f"the recipe's snippet no longer sets {name} = {value!r}"
        )
        code = re.sub(pattern, f"{name} = {str(new)!r}", code, flags=re.M)
    return code


def tiny_towers(out_dir, size=64, dim=8, vocab_size=66):
    """Stand-ins for the deployed towers, with their input/output names (image: INT8 QDQ)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    rng = np.random.default_rng(0)
    out_dir.mkdir(parents=True, exist_ok=True)
    img = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["pixel_values"], ["m"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["m", "W"], ["image_embeds"]),
        ],
        "image",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["b", 3, size, size])],
        [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["b", dim])],
        [numpy_helper.from_array(rng.standard_normal((3, dim)).astype(np.float32), "W")],
    )
    txt = helper.make_graph(
        [
            helper.make_node("Gather", ["E", "input_ids"], ["e"]),
            helper.make_node("ReduceMean", ["e"], ["text_embeds"], axes=[1], keepdims=0),
        ],
        "text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["b", "l"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["b", "l"]),
        ],
        [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["b", dim])],
        [numpy_helper.from_array(rng.standard_normal((vocab_size, dim)).astype(np.float32), "E")],
    )
    for name, graph in (("image_fp32", img), ("text_int8", txt)):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(out_dir / f"{name}.onnx"))

    class Reader(CalibrationDataReader):
        def __init__(self):
            x = rng.standard_normal((2, 3, size, size)).astype(np.float32)
            self.it = iter([{"pixel_values": x}])

        def get_next(self):
            return next(self.it, None)

    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(out_dir / "image_fp32.onnx"),
                str(out_dir / "image_int8.onnx"),
                Reader(),
                quant_format=QuantFormat.QDQ,
            )
    finally:
        root.setLevel(level)


def test_recipe_snippet_runs_with_numpy_and_onnxruntime_only(tmp_path):
    out = tmp_path / "deploy"
    tiny_towers(out)
    code = recipe_snippet(out) + (
        "\nimport sys\n"
        "assert sims.shape == (2, 2) and np.isfinite(sims).all()\n"
        "banned = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not banned, f'the snippet imported {banned}'\n"
    )
    code = code.replace("print(np.round(img @ txt.T, 3))", "sims = img @ txt.T\nprint(sims)")
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr


def test_recipe_tokens_match_the_course_tokenizer(tmp_path):
    from clipq_helpers import shapes
    from clipq_helpers.models import load_tokenizer

    code = recipe_snippet(tmp_path)
    ns: dict = {}
    exec(code[: code.index("cpu = [")], ns)  # the preprocessing part only
    texts = list(shapes.make_split("eval", 64).captions) + ["一个 红色的，正方形。", "圆形Q"]
    ids, mask = ns["tokens"](texts)
    enc = load_tokenizer("pocket")(texts, padding=True, return_tensors="np")
    assert np.array_equal(ids, enc["input_ids"])
    assert np.array_equal(mask, enc["attention_mask"])
    # tokenizer.json (save_pretrained) gives the same vocabulary as vocab.txt
    load_tokenizer("pocket").save_pretrained(tmp_path / "tok")
    assert ns["load_vocab"](str(tmp_path / "tok" / "tokenizer.json")) == ns["vocab"]
    # the image preprocessing equals the course's (CLIP mean and std)
    from clipq_helpers.processor import pixels_from_uint8

    images = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    assert np.allclose(ns["pixels"](images), pixels_from_uint8(images).numpy(), atol=1e-6)


def test_recipe_flags_table_matches_the_cli():
    from clipq_helpers.deploy import _parser

    rows = re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+) \|", RECIPE.read_text("utf-8"), re.M)
    table = {flag: default.strip() for flag, default in rows}
    cli = {a.option_strings[-1]: a for a in _parser()._actions if a.option_strings[-1] != "--help"}
    assert set(table) == set(cli), "the recipe's flag table and the CLI's options differ"
    for flag, action in cli.items():
        if action.required:
            want = "(required)"
        elif action.default in (False, None):
            want = "off"
        else:
            want = f"`{action.default}`"
        assert table[flag] == want, f"{flag}: recipe says {table[flag]}, the CLI {want}"
