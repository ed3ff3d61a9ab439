"""Pre-flight check: is this environment ready for the course?

    python -m clipq_helpers.preflight


Runs in a few seconds and prints one line per check (✓ passed, ✗ failed, ! warning) and, for
each problem, what to do. Exit code 0 when every required check passes, 1 otherwise.

Checks, in order:

* ``python``: the Python version satisfies the package's ``Requires-Python``;
* ``packages``: every package pinned in ``requirements.txt`` is installed at the pinned
  version, and the course's runtime packages import;
* ``font``: the Chinese font (Noto Sans CJK SC from ``mplfonts``) is there, matplotlib reads
  it and it has Chinese glyphs (otherwise plot labels show empty boxes, "tofu");
* ``model``: the pocket model loads and tells shapes apart on a few generated images;
* ``grading``: a grade cell runs (``check`` passes a correct function, rejects a wrong one);
* ``jupyter`` (warning only): JupyterLab, the ipywidgets extension, and a ``python3`` kernel
  that runs this environment's Python.

Each check is a function returning a :class:`Result`; the paths it reads can be passed in
(``--requirements``, ``--font``, ``--model-dir``), which is how the tests simulate a missing
font or model file.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

__all__ = [
    "Result",
    "check_font",
    "check_grading",
    "check_jupyter",
    "check_model",
    "check_packages",
    "check_python",
    "find_requirements",
    "main",
    "parse_requirements",
    "run_checks",
]

PACKAGE_DIR = Path(__file__).resolve().parent
DISTRIBUTION = "clipq-helpers"
INSTALL_FIX = "pip install -r requirements.txt (in the course folder, with .venv active)"
#: Modules the notebooks import, tried for real (a version check alone misses broken installs).
RUNTIME_MODULES = (
    "torch",
    "transformers",
    "safetensors",
    "numpy",
    "onnx",
    "onnxruntime",
    "matplotlib",
    "ipywidgets",
)
#: Extra advice for a wrong version of some packages.
_VERSION_ADVICE = {
    "jupyter-book": (
        "Jupyter Book 2 does not read _config.yml/_toc.yml: install the pinned version "
        "with pip install '{req}'"
    ),
}


@dataclass
class Result:
    """Outcome of one check: ``ok`` and a one-line ``summary``; ``fix`` says what to do."""

    name: str
    ok: bool
    summary: str
    fix: str = ""
    details: list[str] = field(default_factory=list)
    required: bool = True
    seconds: float = 0.0


# --------------------------------------------------------------------------- python


def check_python(
    version: tuple[int, int, int] | None = None, requires: str | None = None
) -> Result:
    """The running Python (or ``version``) satisfies ``Requires-Python`` (or ``requires``)."""
    version = version or tuple(sys.version_info[:3])
    text = ".".join(map(str, version))
    if requires is None:
        try:
            requires = md.metadata(DISTRIBUTION).get("Requires-Python") or ""
        except md.PackageNotFoundError:
            return Result(
                "python",
                False,
                f"Python {text}, but the course package {DISTRIBUTION} is not installed",
                INSTALL_FIX,
            )
    if requires and Version(text) not in SpecifierSet(requires):
        return Result(
            "python",
            False,
            f"Python {text} is not supported (the course needs Python {requires})",
            "install Python 3.11 (tested) and create the environment with it: "
            "python3.11 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt",
        )
    where = "virtual environment" if sys.prefix != sys.base_prefix else "no virtual environment"
    return Result("python", True, f"Python {text} ({where}: {sys.prefix})")


# --------------------------------------------------------------------------- packages


def find_requirements(start: Path | None = None) -> Path | None:
    """``requirements.txt`` of the course: next to the package (editable install) or in cwd."""
    for folder in (PACKAGE_DIR.parent, start or Path.cwd()):
        path = folder / "requirements.txt"
        if path.is_file():
            return path
    return None


def parse_requirements(text: str) -> list[Requirement]:
    """The pinned requirements of a requirements file (options, ``-e`` and comments skipped)."""
    reqs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        try:
            reqs.append(Requirement(line))
        except InvalidRequirement as err:
            raise ValueError(f"requirements.txt line {number}: {raw.strip()!r}: {err}") from None
    return reqs


def check_packages(
    requirements: Path | None = None, modules: tuple[str, ...] = RUNTIME_MODULES
) -> Result:
    """Every pinned requirement is installed at its version; ``modules`` import."""
    path = requirements or find_requirements()
    if path is None or not path.is_file():
        return Result(
            "packages",
            False,
            f"requirements.txt not found ({path or 'not in the course folder, not in this one'})",
            "run this command in the course folder (where requirements.txt is), or pass "
            "--requirements PATH",
        )
    try:
        reqs = [
            r
            for r in parse_requirements(path.read_text(encoding="utf-8"))
            if r.marker is None or r.marker.evaluate()
        ]
    except ValueError as err:
        return Result("packages", False, str(err), "fix that line of requirements.txt")
    problems, fixes = [], {INSTALL_FIX}
    for req in reqs:
        try:
            installed = md.version(req.name)
        except md.PackageNotFoundError:
            problems.append(f"{req.name} is not installed (requirements.txt: {req})")
            continue
        if req.specifier and not req.specifier.contains(installed, prereleases=True):
            problems.append(f"{req.name} {installed} is installed, requirements.txt pins {req}")
            if req.name in _VERSION_ADVICE:
                fixes.add(_VERSION_ADVICE[req.name].format(req=req))
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - any import failure is worth reporting
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            problems.append(f"import {module} fails: {type(err).__name__}: {first}")
    torch_note = _torch_build_note()
    if problems:
        return Result(
            "packages",
            False,
            f"{len(problems)} problem(s) with the packages of {path.name}",
            "; ".join(sorted(fixes)),
            details=problems,
        )
    summary = (
        f"{len(reqs)} pinned packages match {path.name}; "
        f"the {len(modules)} modules the notebooks need import"
    )
    return Result("packages", True, summary + torch_note)


def _torch_build_note() -> str:
    torch = sys.modules.get("torch")
    if torch is None:
        return ""
    cuda = getattr(torch.version, "cuda", None)
    return (
        f" (torch {torch.__version__}: CUDA {cuda} build; the course needs only the CPU)"
        if cuda
        else ""
    )


# --------------------------------------------------------------------------- font


def check_font(path: Path | None = None, sample: str = "量化离群值") -> Result:
    """The CJK font exists, matplotlib reads it as Noto Sans CJK SC, it has ``sample``'s glyphs.

    With ``path`` None the font of ``clipq_helpers.plots`` (from ``mplfonts``) is checked and
    registered the way every notebook does it (inside ``rc_context``, so nothing global changes).
    """
    from matplotlib import font_manager, rc_context
    from matplotlib.ft2font import FT2Font

    from . import plots

    fix = f"{INSTALL_FIX}: it installs {plots.FONT_PACKAGE}, the package that ships the font"
    try:
        font_path = Path(path) if path is not None else plots.cjk_font_path()
    except FileNotFoundError as err:
        return Result("font", False, f"Chinese font missing: {err}", fix)
    if not font_path.is_file():
        return Result("font", False, f"Chinese font file missing: {font_path}", fix)
    try:
        font = FT2Font(str(font_path))
    except Exception as err:  # noqa: BLE001 - a truncated or non-font file
        return Result("font", False, f"matplotlib cannot read {font_path}: {err}", fix)
    missing = [ch for ch in sample if font.get_char_index(ord(ch)) == 0]
    name = font_manager.FontProperties(fname=str(font_path)).get_name()
    if name != plots.CJK_FONT_NAME or missing:
        return Result(
            "font",
            False,
            f"{font_path.name} is {name!r} and lacks the glyphs {''.join(missing)!r} "
            f"(expected {plots.CJK_FONT_NAME!r}): Chinese labels would be empty boxes",
            fix,
        )
    if path is None:
        with rc_context():
            plots.use_cjk_font()
    return Result("font", True, f"Chinese font {name} ({font_path.name}), Chinese glyphs present")


# --------------------------------------------------------------------------- model


def check_model(model_dir: Path | None = None, n_images: int = 16) -> Result:
    """The pocket model loads from ``model_dir`` and matches a few generated images to their class.

    Sanity, not a benchmark: ``n_images`` generated images of classes seen in training, each
    matched against the prompts of those classes; it fails when half or more are wrong.
    """
    import torch

    from . import evaluate, models, shapes

    directory = Path(model_dir) if model_dir is not None else models.POCKET_DIR
    fix = (
        f"the pocket model ships with the course in {models.POCKET_DIR}: copy the complete "
        f"course folder again (git clone, or the workshop archive), then {INSTALL_FIX}"
    )
    weights = directory / "model.safetensors"
    if weights.is_file() and weights.stat().st_size < 1024:  # e.g. a git-lfs pointer file
        return Result(
            "model", False, f"{weights} is only {weights.stat().st_size} bytes, not a model", fix
        )
    try:
        model = models.load_pocket(directory)
    except Exception as err:  # noqa: BLE001 - missing file, bad config, corrupt safetensors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Result("model", False, f"the pocket model does not load: {first}", fix)
    data = evaluate._split("seen", n_images)
    labels = [(s.objects[0].color, s.objects[0].shape) for s in data.scenes]
    classes = sorted(set(labels))
    prompts = [shapes.prompt(c, h, evaluate.ZERO_SHOT_TEMPLATE) for c, h in classes]
    with torch.no_grad():
        text = evaluate.encode_texts(model, models.load_tokenizer("pocket"), prompts)
        image = evaluate.encode_images(model, data.images)
        pred = (image @ text.T).argmax(dim=1).tolist()
    right = sum(classes[p] == label for p, label in zip(pred, labels, strict=True))
    params = models.count_parameters(model) / 1e6
    if 2 * right <= n_images:  # random weights match about n_images / len(classes)
        return Result(
            "model",
            False,
            f"the pocket model loads but matched only {right}/{n_images} images to their class "
            f"(random weights match about {n_images / len(classes):.0f}): its weights or the "
            f"installed transformers version are wrong",
            fix,
        )
    return Result(
        "model",
        True,
        f"pocket model loads ({params:.1f} M parameters) and matched {right}/{n_images} "
        f"generated images to their class prompt (among {len(classes)})",
    )


# --------------------------------------------------------------------------- grading


def check_grading(exercise_id: str = "ch03.quantize_symmetric") -> Result:
    """A grade cell runs: ``check`` passes the course's reference and rejects a floor-based one."""
    import torch

    from .grading import ExerciseFailed, check
    from .quantize import quantize_symmetric

    def floor_version(x: torch.Tensor, scale, bits: int = 8) -> torch.Tensor:
        qmax = 2 ** (bits - 1) - 1
        return torch.floor(x / scale).clamp(-qmax, qmax).to(torch.int8)

    fix = f"the grading data of clipq_helpers is incomplete or broken: {INSTALL_FIX}"
    try:
        report = check(exercise_id, quantize_symmetric)
    except Exception as err:  # noqa: BLE001
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return Result("grading", False, f"a grade cell fails on a correct function: {first}", fix)
    try:
        check(exercise_id, floor_version)
    except ExerciseFailed:
        return Result(
            "grading", True, f'a grade cell runs: check("{exercise_id}", ...) -> {report}'
        )
    return Result("grading", False, f"the grader of {exercise_id} accepted a wrong function", fix)


# --------------------------------------------------------------------------- jupyter


def check_jupyter() -> Result:
    """JupyterLab and the widgets extension are installed; kernel ``python3`` runs this Python."""
    problems, fixes = [], []
    try:
        lab = md.version("jupyterlab")
        widgets = md.version("ipywidgets")
    except md.PackageNotFoundError as err:
        return Result("jupyter", False, f"{err.name} is not installed", INSTALL_FIX, required=False)
    ext = Path(sys.prefix) / "share/jupyter/labextensions/@jupyter-widgets/jupyterlab-manager"
    if not ext.is_dir():
        problems.append("the ipywidgets extension of JupyterLab (jupyterlab_widgets) is missing")
        fixes.append("pip install jupyterlab_widgets (then restart JupyterLab)")
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
        exe = spec.argv[0]
        major, minor = sys.version_info[:2]
        if exe in ("python", f"python{major}", f"python{major}.{minor}"):
            exe = sys.executable  # what jupyter_client does when it starts the kernel
        exe = exe if os.path.isabs(exe) else (shutil.which(exe) or exe)
        probe = subprocess.run(
            [exe, "-c", "import clipq_helpers, sys; print(sys.prefix)"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.returncode != 0:
            problems.append(
                f"the Jupyter kernel 'python3' runs {exe}, which cannot import clipq_helpers"
            )
            fixes.append(
                "activate the course environment before starting JupyterLab, or register it: "
                "python -m ipykernel install --user --name clipq --display-name 'Python (CLIP-Q)' "
                "and pick that kernel (Kernel > Change Kernel)"
            )
    except NoSuchKernel:
        problems.append("no Jupyter kernel named 'python3'")
        fixes.append("python -m ipykernel install --sys-prefix")
    except (OSError, subprocess.SubprocessError) as err:
        problems.append(f"the Jupyter kernel 'python3' does not start: {err}")
        fixes.append("python -m ipykernel install --sys-prefix")
    if problems:
        return Result("jupyter", False, "; ".join(problems), "; ".join(fixes), required=False)
    return Result(
        "jupyter",
        True,
        f"JupyterLab {lab}, ipywidgets {widgets} with its JupyterLab extension, "
        f"kernel 'python3' runs this environment",
        required=False,
    )


# --------------------------------------------------------------------------- main


def run_checks(
    requirements: Path | None = None,
    font: Path | None = None,
    model_dir: Path | None = None,
    jupyter: bool = True,
) -> list[Result]:
    """Run every check (each one timed; an unexpected exception becomes a failed check)."""
    checks: list[tuple[str, Callable[[], Result]]] = [
        ("python", check_python),
        ("packages", lambda: check_packages(requirements)),
        ("font", lambda: check_font(font)),
        ("model", lambda: check_model(model_dir)),
        ("grading", check_grading),
    ]
    if jupyter:
        checks.append(("jupyter", check_jupyter))
    results = []
    for name, fn in checks:
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001 - report, never crash the pre-flight check
            result = Result(name, False, f"{type(err).__name__}: {err}", INSTALL_FIX)
        result.seconds = time.perf_counter() - t0
        results.append(result)
    return results


def _marks(stream) -> tuple[str, str, str]:
    try:
        "✓✗".encode(stream.encoding or "ascii")
        return "✓", "✗", "!"
    except (UnicodeEncodeError, LookupError):
        return "OK", "XX", "!!"


def report(results: list[Result], seconds: float, stream=None) -> str:
    """The text printed by the command line: one line per check, then what to do."""
    good, bad, warn = _marks(stream or sys.stdout)
    lines = ["CLIP-Q pre-flight check"]
    for r in results:
        mark = good if r.ok else (bad if r.required else warn)
        lines.append(f"  {mark} {r.name:<9} {r.summary}")
        lines += [f"      - {d}" for d in r.details]
        if not r.ok and r.fix:
            lines.append(f"      fix: {r.fix}")
    failed = [r.name for r in results if not r.ok and r.required]
    warned = [r.name for r in results if not r.ok and not r.required]
    if failed:
        lines.append(
            f"NOT READY: {', '.join(failed)} failed ({seconds:.1f} s). "
            f"Fix the lines marked {bad}, then run this again."
        )
    else:
        done = f"all {len(results)} checks passed" if not warned else "the required checks passed"
        extra = f" (see the warning about {', '.join(warned)})" if warned else ""
        lines.append(f"READY: {done} in {seconds:.1f} s{extra}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m clipq_helpers.preflight",
        description="Check in a few seconds that this environment is ready for the CLIP-Q course.",
    )
    ap.add_argument("--requirements", type=Path, help="requirements file (default: the course's)")
    ap.add_argument("--font", type=Path, help="CJK font file to check (default: the mplfonts one)")
    ap.add_argument("--model-dir", type=Path, help="pocket model folder (default: the shipped one)")
    ap.add_argument("--no-jupyter", action="store_true", help="skip the JupyterLab checks")
    args = ap.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")
    t0 = time.perf_counter()
    results = run_checks(args.requirements, args.font, args.model_dir, jupyter=not args.no_jupyter)
    print(report(results, time.perf_counter() - t0), flush=True)
    return 0 if all(r.ok for r in results if r.required) else 1


if __name__ == "__main__":
    sys.exit(main())
