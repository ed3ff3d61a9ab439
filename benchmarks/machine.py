"""The machine a benchmark ran on: CPU, its INT8/SIMD instruction flags, library versions."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from pathlib import Path

#: CPU flags (as /proc/cpuinfo spells them) that matter for INT8 and FP32 GEMMs on x86/ARM.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "asimddp",  # ARM dot product (sdot/udot)
    "i8mm",  # ARM int8 matrix multiply
)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "asimddp")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """All flags of the first CPU in ``cpuinfo`` (empty if unreadable, e.g. on macOS)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[-1].split())
    return set()


def cpu_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """CPU model name from ``cpuinfo``, else ``platform.processor()``."""
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[-1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(threads: int, cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The ``machine`` entry of ``latest.json``."""
    import onnxruntime
    import torch

    flags = cpu_flags(cpuinfo)
    return {
        "cpu": cpu_name(cpuinfo),
        "cores": os.cpu_count() or 1,
        "threads": int(threads),
        "vnni": any(f in flags for f in VNNI_FLAGS),
        "isa_flags": [f for f in ISA_FLAGS if f in flags],
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
