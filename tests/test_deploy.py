"""The deployment command: python -m clipq_helpers.deploy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from clipq_helpers import deploy


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as exc:
        deploy.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--model",
        "--out",
        "--alpha",
        "--calib-n",
        "--method",
        "--towers",
        "pocket",
        "base-random",
    ):
        assert option in text


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--out", "x", "--alpha", "1.5"], "--alpha"),
        (["--out", "x", "--calib-n", "0"], "--calib-n"),
        (["--out", "x", "--method", "kl"], "invalid choice"),
        ([], "--out"),
    ],
)
def test_bad_arguments_are_clear_errors(argv, match, capsys):
    with pytest.raises(SystemExit) as exc:
        deploy.main(argv)
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def test_pocket_deploy_smoke(tmp_path, capsys):
    out = tmp_path / "deploy"
    rc = deploy.main(["--model", "pocket", "--out", str(out), "--calib-n", "16", "--no-progress"])
    assert rc == 0
    for name in ("image_fp32", "image_int8", "text_fp32", "text_int8"):
        assert (out / f"{name}.onnx").is_file()
    report = json.loads((out / "deploy_report.json").read_text(encoding="utf-8"))
    assert report["model"] == "pocket" and report["settings"]["calib_n"] == 16
    for tower in ("image", "text"):
        check = report["checks"][tower]
        # float32 export: differences of float rounding only
        assert check["fp32_max_abs_diff_vs_pytorch"] < 1e-4 * max(1.0, check["pytorch_max_abs"])
        assert 0.9 < check["int8_cosine_vs_fp32"] <= 1.0
        assert report["size_ratio_int8_to_fp32"][tower] < 0.4
    assert "deploy_report.json" in capsys.readouterr().out


def test_hub_id_offline_is_a_clear_error(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "clipq_helpers.deploy",
            "--model",
            "OFA-Sys/chinese-clip-vit-base-patch16",
            "--out",
            str(tmp_path / "real"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "could not load 'OFA-Sys/chinese-clip-vit-base-patch16'" in proc.stderr
    assert "pocket" in proc.stderr  # says what to do offline
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "real" / "image_int8.onnx").exists()
