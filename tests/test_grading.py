"""Tests of clipq_helpers.grading: API, stored data vs reference, robustness to learner code."""

from __future__ import annotations

import csv
import math
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers.models.chinese_clip import modeling_chinese_clip

from clipq_helpers.grading import EXERCISES, ExerciseFailed, Report, build, check, ids, store
from clipq_helpers.grading.cases import CASES

# The exercise contract of DESIGN.md, in course order.
CONTRACT_IDS = [
    "ch01.patchify",
    "ch01.clip_parameter_count",
    "ch02.clip_logits",
    "ch02.clip_loss",
    "ch03.symmetric_scale",
    "ch03.quantize_symmetric",
    "ch03.dequantize",
    "ch03.asymmetric_params",
    "ch03.quantize_asymmetric",
    "ch03.sqnr_db",
    "ch04.outlier_ratio",
    "ch04.levels_used",
    "ch05.percentile_absmax",
    "ch05.mse_best_clip",
    "ch05.kl_threshold",
    "ch06.quantize_per_channel",
    "ch06.quantize_per_token",
    "ch07.smooth_scales",
    "ch07.smooth_layernorm_linears",
    "ch08.int8_linear",
]


def failure(exercise_id: str, fn, **kw) -> str:
    with pytest.raises(ExerciseFailed) as info:
        check(exercise_id, fn, **kw)
    return str(info.value)


# --------------------------------------------------------------------------- registry + data


def test_registry_covers_the_contract():
    assert ids() == CONTRACT_IDS
    assert set(CASES) == set(CONTRACT_IDS) == set(build.REFERENCE)
    for eid in CONTRACT_IDS:
        jpath, tpath = store.paths(eid)
        assert jpath.exists() and tpath.exists(), eid
        assert EXERCISES[eid].time_limit > 0


@pytest.mark.parametrize("eid", CONTRACT_IDS)
def test_stored_data_match_reference(eid):
    """Fails when the stored cases drift from the reference implementation or the case code."""
    assert build.drift(eid) == []


@pytest.mark.parametrize("eid", CONTRACT_IDS)
def test_cases_are_varied_and_named(eid):
    meta, tensors = store.load(eid)
    cases = meta["cases"]
    assert len(cases) >= 5
    names = [c["name"] for c in cases]
    assert len(set(names)) == len(names)
    assert all(len(n) > 8 for n in names)
    assert meta["function"] == EXERCISES[eid].function
    # at least one "large" case with >= 1000 elements in some input
    sizes = [t.numel() for k, t in tensors.items() if "expected" not in k]
    # ch01.clip_parameter_count takes configs (dicts), no tensors
    assert max(sizes, default=0) >= 1000 or eid in (
        "ch07.smooth_scales",
        "ch01.clip_parameter_count",
    )


def test_data_files_hold_no_pickle():
    for path in store.DATA_DIR.iterdir():
        assert path.suffix in (".json", ".safetensors"), path
        assert not path.read_bytes().startswith(b"\x80"), path  # pickle protocol marker


def test_drift_is_detected(tmp_path):
    """A changed stored value makes drift() report the case."""
    eid = "ch03.symmetric_scale"
    meta, tensors = build.build(eid)
    meta["cases"][0]["expected"] = meta["cases"][0]["expected"] * 1.01
    store.write(eid, meta, tensors, tmp_path)
    problems = build.drift(eid, tmp_path)
    assert any("reference output changed" in p for p in problems)


def test_clip_loss_data_agree_with_transformers():
    """Stored clip_loss answers equal transformers' own Chinese-CLIP contrastive loss."""
    meta, tensors = store.load("ch02.clip_loss")
    for case in meta["cases"]:
        logits = store.decode(case["args"]["logits_per_image"], tensors)
        theirs = float(modeling_chinese_clip.image_text_contrastive_loss(logits))
        assert math.isclose(theirs, case["expected"], rel_tol=1e-5, abs_tol=1e-6), case["name"]


@pytest.mark.parametrize("eid", CONTRACT_IDS)
def test_reference_implementation_passes(eid):
    report = check(eid, build.reference(eid))
    n = len(store.load(eid)[0]["cases"])
    assert isinstance(report, Report)
    assert str(report) == repr(report) == f"{eid}: {n}/{n} cases pass"
    assert "\n" not in str(report)


def test_grading_does_not_import_the_reference_modules():
    """check() reads stored data only: the reference modules are never imported."""
    code = (
        "import sys, torch\n"
        "from clipq_helpers.grading import check\n"
        "print(check('ch03.dequantize', lambda q, s, zero_point=0: (q.float() - zero_point) * s))\n"
        "print(check('ch01.patchify', lambda im, p: torch.nn.functional.unfold(im, p, stride=p).transpose(1, 2)))\n"
        "mods = ['clipq_helpers.' + m for m in ('quantize', 'calibrate', 'smoothquant', 'int8',"
        " 'contrastive', 'patches', 'grading.build', 'grading.cases')]\n"
        "loaded = [m for m in mods if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ch03.dequantize: 7/7 cases pass" in out.stdout


# --------------------------------------------------------------------------- API behaviour


def test_exercise_failed_is_an_assertion_error_raised_from_none():
    with pytest.raises(AssertionError) as info:
        check("ch03.symmetric_scale", lambda x, bits=8: x.abs().max() / 128)
    e = info.value
    assert isinstance(e, ExerciseFailed)
    assert e.__cause__ is None and e.__suppress_context__
    frames = traceback.extract_tb(e.__traceback__)
    assert [f.name for f in frames][-1] == "check"  # one helper frame, no internal chain
    assert len(frames) == 2


def test_failure_message_format():
    msg = failure("ch03.symmetric_scale", lambda x, bits=8: x.abs().max() / 2 ** (bits - 1))
    lines = msg.splitlines()
    assert lines[0].startswith(
        'ch03.symmetric_scale: case 1 of 9 "small vector [-1, 0.5, 2], bits=8" failed'
    )
    assert any(line.startswith("  expected:") for line in lines)
    assert any(line.startswith("  got:") for line in lines)
    assert lines[-1].startswith("  hint:") and "2^(b-1) - 1" in lines[-1]
    assert "0x" not in msg  # no memory addresses: deterministic text
    # deterministic: the same failure gives the same text
    assert msg == failure("ch03.symmetric_scale", lambda x, bits=8: x.abs().max() / 2 ** (bits - 1))


def test_compact_tensor_diff():
    def off_by_one(x, scale, bits=8):
        q = torch.round(x / scale).clamp(-127, 127)
        q.view(-1)[-1] += 1
        return q.to(torch.int8)

    msg = failure("ch03.quantize_symmetric", off_by_one)
    assert "1 of 6 elements differ; first at index (5,): expected 8, got 9" in msg
    assert "int8 (6,) [-4, -2, 0, 2, 4, 8]" in msg


def test_constant_factor_is_reported():
    msg = failure(
        "ch03.dequantize", lambda q, scale, zero_point=0: 2 * (q.float() - zero_point) * scale
    )
    assert "got = expected x 2" in msg


def test_unknown_id_and_not_callable():
    with pytest.raises(ValueError, match="unknown exercise id"):
        check("ch99.nope", lambda x: x)
    msg = failure("ch03.quantize_symmetric", torch.zeros(3))
    assert "expected your function quantize_symmetric" in msg


def test_exception_in_learner_code():
    def broken(x, scale, bits=8):
        y = x / scale
        return y[10_000]

    msg = failure("ch03.quantize_symmetric", broken)
    assert "raised IndexError" in msg and 'case 1 of 11 "hand-checkable' in msg
    assert "in broken, line" in msg and "return y[10_000]" in msg
    assert "Traceback" not in msg


def test_not_implemented_stub():
    def stub(x, scale, bits=8):
        raise NotImplementedError("divide, round, clamp")

    msg = failure("ch03.quantize_symmetric", stub)
    assert "not written yet" in msg and "divide, round, clamp" in msg
    assert "replace the `raise NotImplementedError" in msg


def test_wrong_signature():
    msg = failure("ch03.quantize_symmetric", lambda x, scale: torch.round(x / scale).to(torch.int8))
    assert "raised TypeError" in msg and "quantize_symmetric(x, scale, bits=8)" in msg


def test_none_returned():
    def forgot_return(x, bits=8):
        x.abs().max() / 127

    msg = failure("ch03.symmetric_scale", forgot_return)
    assert "returned None" in msg and "`return`" in msg


def test_wrong_integer_dtype():
    msg = failure(
        "ch03.quantize_symmetric",
        lambda x, scale, bits=8: torch.round(x / scale).clamp(-127, 127).to(torch.int32),
    )
    assert "codes have dtype int32, expected int8" in msg


def test_float_codes():
    msg = failure(
        "ch03.quantize_asymmetric", lambda x, s, zp, bits=8: (torch.round(x / s) + zp).clamp(0, 255)
    )
    assert "codes have float dtype float32, expected uint8" in msg


def test_wrong_shape():
    msg = failure("ch01.patchify", lambda im, p: im.reshape(im.shape[0], -1))
    assert "wrong shape (1, 16), expected (1, 4, 4)" in msg


def test_nan_reported():
    msg = failure(
        "ch03.symmetric_scale",
        lambda x, bits=8: x.abs().max() / (2 ** (bits - 1) - 1) / (x.abs().max() != 0),
    )
    assert 'all zeros -> scale 1.0" failed: returned nan' in msg
    assert "scale 1.0" in msg.splitlines()[-1]

    def nan_codes(x, scale, bits=8):
        return torch.full_like(x, float("nan"))

    msg = failure("ch03.dequantize", lambda q, s, zero_point=0: q.float() * float("nan"))
    assert "result contains NaN" in msg


def test_wrong_tuple_arity():
    msg = failure("ch03.asymmetric_params", lambda x, bits=8: (1.0, 0, "extra"))
    assert "returned 3 values, expected 2 (scale, zero_point)" in msg
    msg = failure(
        "ch06.quantize_per_channel", lambda w, bits=8, axis=0: torch.zeros_like(w, dtype=torch.int8)
    )
    assert "expected a tuple (q, scales)" in msg


def test_input_mutated():
    def in_place(x, scale, bits=8):
        return x.div_(scale).round_().clamp_(-127, 127).to(torch.int8)

    msg = failure("ch03.quantize_symmetric", in_place)
    assert "modified its input in place" in msg and "`x` was modified in place" in msg


def test_timeout_message():
    def slow(x, bits=8):
        time.sleep(1.0)
        return 1.0

    t0 = time.perf_counter()
    msg = failure("ch03.symmetric_scale", slow, time_limit=0.2)
    assert time.perf_counter() - t0 < 0.9
    assert "did not return within 0.2 s" in msg
    assert "restart the kernel" in msg


def test_scalar_forms():
    """A single scale may be a Python float or a 0-d tensor; a (1,) tensor is refused kindly."""

    def as_float(x, bits=8):
        m = float(x.abs().max())
        return m / (2 ** (bits - 1) - 1) if m else 1.0

    assert str(check("ch03.symmetric_scale", as_float)) == "ch03.symmetric_scale: 9/9 cases pass"
    assert check("ch03.symmetric_scale", lambda x, bits=8: torch.tensor(as_float(x, bits)))
    assert check("ch03.symmetric_scale", lambda x, bits=8: np.float32(as_float(x, bits)))
    msg = failure("ch03.symmetric_scale", lambda x, bits=8: torch.tensor([as_float(x, bits)]))
    assert "returned a tensor of shape (1,)" in msg and ".item()" in msg


def test_per_channel_scales_must_be_float32():
    def f64_scales(w, bits=8, axis=0):
        qmax = 2 ** (bits - 1) - 1
        axis %= w.dim()
        dims = [d for d in range(w.dim()) if d != axis]
        amax = w.abs().amax(dim=dims).double()
        s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
        shape = [1] * w.dim()
        shape[axis] = -1
        q = torch.round(w / s.reshape(shape)).clamp(-qmax, qmax).to(torch.int8)
        return q, s

    msg = failure("ch06.quantize_per_channel", f64_scales)
    assert "scales: dtype float64, expected float32" in msg


def test_kl_threshold_accepts_one_bin_either_side():
    meta, tensors = store.load("ch05.kl_threshold")
    bins = {c["name"]: c["extra"]["bin"] for c in meta["cases"]}

    def shifted(delta):
        def fn(hist, bin_edges, bits=8):
            name = next(
                c["name"]
                for c in meta["cases"]
                if torch.equal(store.decode(c["args"]["hist"], tensors), hist)
            )
            i = min(max(bins[name] + delta, 0), len(bin_edges) - 1)
            return bin_edges[i]

        return fn

    assert check("ch05.kl_threshold", shifted(1))
    assert check("ch05.kl_threshold", shifted(-1))
    msg = failure("ch05.kl_threshold", shifted(2))
    assert "threshold outside the accepted bins" in msg


def test_smooth_layernorm_linears_state_is_compared():
    def forgot_bias(ln, linears, s):
        with torch.no_grad():
            ln.weight.div_(s)
            for lin in linears:
                lin.weight.mul_(s)

    msg = failure("ch07.smooth_layernorm_linears", forgot_bias)
    assert "ln.bias: wrong values" in msg


def test_report_lines_are_deterministic():
    fn = build.reference("ch03.sqnr_db")
    assert str(check("ch03.sqnr_db", fn)) == str(check("ch03.sqnr_db", fn))
    assert re.fullmatch(r"ch03\.sqnr_db: (\d+)/\1 cases pass", repr(check("ch03.sqnr_db", fn)))


# --------------------------------------------------------------------------- batch grading


@pytest.mark.slow
def test_batch_grades_a_folder_of_submissions(tmp_path):
    """Instructor command: a solved notebook passes; a stub fails; a deleted grade cell is missing."""
    import nbformat

    from clipq_helpers.grading import batch

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "alice").mkdir()
    (tmp_path / "bob").mkdir()
    shutil.copy(root / "solutions" / "ch01_patches.ipynb", tmp_path / "alice")
    nb = nbformat.read(str(root / "exercises" / "ch02_contrastive.ipynb"), as_version=4)
    last_grade = max(
        i for i, c in enumerate(nb.cells) if "clipq-grade" in c.metadata.get("tags", [])
    )
    del nb.cells[last_grade]  # bob deleted the clip_loss grade cell
    nbformat.write(nb, str(tmp_path / "bob" / "ch02_contrastive.ipynb"))

    t0 = time.perf_counter()
    assert batch.main([str(tmp_path), "--csv", str(tmp_path / "grades.csv")]) == 0
    seconds = time.perf_counter() - t0
    rows = {(r[0], r[1]): r[2] for r in csv.reader((tmp_path / "grades.csv").open())}
    assert rows[("alice/ch01_patches.ipynb", "ch01.patchify")] == "pass"
    assert rows[("bob/ch02_contrastive.ipynb", "ch02.clip_logits")] == "FAIL"
    assert rows[("bob/ch02_contrastive.ipynb", "ch02.clip_loss")] == "missing"
    assert seconds / 2 < 60  # per notebook, on 2 cores
