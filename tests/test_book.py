"""Fast structural tests of the Jupyter Book: config, table of contents, glossary, citations.

The full build (`jupyter-book build . -W`) runs in .ci/run, not here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SOURCE_SUFFIXES = (".md", ".ipynb")
CJK = re.compile(r"[\u4e00-\u9fff]")
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")


def _load_yaml(path: Path) -> dict:
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), f"{path} is not a YAML mapping"
    return data


@pytest.fixture(scope="module")
def config() -> dict:
    return _load_yaml(ROOT / "_config.yml")


@pytest.fixture(scope="module")
def toc_docnames() -> list[str]:
    from sphinx_external_toc.parsing import parse_toc_yaml

    site_map = parse_toc_yaml(ROOT / "_toc.yml")
    return [site_map.root.docname, *(d for d in site_map if d != site_map.root.docname)]


def _source_of(docname: str) -> Path:
    """The one source file of a toc entry (docname has no suffix)."""
    found = [ROOT / f"{docname}{s}" for s in SOURCE_SUFFIXES if (ROOT / f"{docname}{s}").is_file()]
    assert len(found) == 1, f"toc entry {docname!r} must have exactly one source, found {found}"
    return found[0]


def _page_text(path: Path) -> str:
    """Markdown text of a page; for a notebook, the joined sources of its cells."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ipynb":
        cells = json.loads(text)["cells"]
        return "\n".join("".join(c["source"]) for c in cells)
    return text


# --- _config.yml -----------------------------------------------------------------------


def test_config_passes_jupyter_book_schema(config):
    from jupyter_book.config import validate_yaml

    validate_yaml(config, raise_on_errors=True)


def test_config_builds_only_toc_files_and_fails_on_errors(config):
    assert config["only_build_toc_files"] is True
    execute = config["execute"]
    assert execute["execute_notebooks"] in ("force", "cache")
    assert execute["allow_errors"] is False
    assert execute["raise_on_error"] is True
    assert 0 < execute["timeout"] <= 600
    for pattern in ("_build", ".venv", "exercises", "tests"):
        assert pattern in config["exclude_patterns"]


def test_config_enables_math_exercises_bibtex_and_buttons(config):
    extensions = config["parse"]["myst_enable_extensions"]
    for ext in ("dollarmath", "amsmath", "colon_fence", "deflist", "substitution", "html_image"):
        assert ext in extensions
    assert "sphinx_exercise" in config["sphinx"]["extra_extensions"]
    sphinx_config = config["sphinx"]["config"]
    assert sphinx_config["bibtex_reference_style"] == "author_year"
    assert sphinx_config["html_theme_options"]["use_download_button"] is True
    assert config["sphinx"]["recursive_update"] is True  # theme options merged, not replaced
    for bib in config["bibtex_bibfiles"]:
        assert (ROOT / bib).is_file(), bib
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["html"]["use_repository_button"] is True
    launch = config["launch_buttons"]
    assert launch["binderhub_url"] and launch["colab_url"]
    assert launch["notebook_interface"] == "jupyterlab"


def test_mathjax_is_served_from_the_local_copy(config):
    sphinx_config = config["sphinx"]["config"]
    static_dirs = [ROOT / d for d in sphinx_config["html_static_path"]]
    mathjax = sphinx_config["mathjax_path"]
    assert not mathjax.startswith(("http:", "https:", "//")), "MathJax must work offline"
    assert any((d / mathjax).is_file() for d in static_dirs), mathjax
    assert any(
        (d / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir() for d in static_dirs
    )
    assert not (ROOT / "_static").exists(), "Jupyter Book 1 would load every .js in _static/"


# --- _toc.yml --------------------------------------------------------------------------


def test_toc_root_is_the_intro(toc_docnames):
    assert toc_docnames[0] == "book/intro"


def test_every_toc_entry_has_one_source_file(toc_docnames):
    assert len(toc_docnames) == len(set(toc_docnames))
    for docname in toc_docnames:
        _source_of(docname)


def test_core_pages_are_in_the_toc(toc_docnames):
    for page in ("book/setup", "book/glossary", "book/grading", "book/references"):
        assert page in toc_docnames


def test_every_page_in_book_is_in_the_toc(toc_docnames):
    """only_build_toc_files silently skips a page missing from _toc.yml: catch it here."""
    listed = set(toc_docnames)
    pages = [
        p
        for p in BOOK.rglob("*")
        if p.suffix in SOURCE_SUFFIXES
        and ".ipynb_checkpoints" not in p.parts
        and "_build" not in p.parts
        and "_static" not in p.parts
    ]
    orphans = sorted(
        str(p.relative_to(ROOT))
        for p in pages
        if str(p.relative_to(ROOT).with_suffix("")) not in listed
    )
    assert orphans == [], f"pages in book/ missing from _toc.yml: {orphans}"


# --- content ---------------------------------------------------------------------------


GLOSSARY_PAIRS = {
    "quantization": "量化",
    "symmetric quantization": "对称量化",
    "asymmetric quantization": "非对称量化",
    "scale": "缩放因子",
    "zero-point": "零点",
    "outlier": "离群值",
    "calibration": "校准",
    "per-channel": "逐通道",
    "per-token": "逐 token",
    "per-tensor": "逐张量",
    "clipping": "截断",
    "rounding": "舍入",
    "dequantization": "反量化",
    "SQNR": "信号量化噪声比",
    "activation": "激活",
    "weight": "权重",
    "LayerNorm": "层归一化",
    "InfoNCE": "InfoNCE",
    "contrastive learning": "对比学习",
    "zero-shot classification": "零样本",
    "retrieval": "检索",
    "logit scale / temperature": "温度",
    "SmoothQuant": "平滑量化",
    "static quantization": "静态量化",
    "dynamic quantization": "动态量化",
    "int32 accumulation": "累加",
    "ONNX": "ONNX",
    "QDQ": "QDQ",
    "VNNI": "VNNI",
}


def _glossary_rows() -> dict[str, tuple[str, str]]:
    """English term -> (Chinese term, definition) from the glossary's tables."""
    rows = {}
    for line in (BOOK / "glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[0]) <= set("-"):
            if cells[0] != "English":
                rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_glossary_is_bilingual_with_the_required_terms():
    rows = _glossary_rows()
    assert len(rows) >= len(GLOSSARY_PAIRS)
    for english, chinese in GLOSSARY_PAIRS.items():
        # "clipping" matches the row "clipping (clamping)"
        matches = [k for k in rows if k == english or k.startswith(f"{english} (")]
        assert len(matches) == 1, f"glossary lacks {english!r} (or has it twice)"
        assert chinese in rows[matches[0]][0], f"{english!r}: expected {chinese!r}"
    no_chinese = [e for e, (zh, _) in rows.items() if not CJK.search(zh) and e not in zh]
    assert len(no_chinese) <= len(rows) // 4, f"rows without a Chinese term: {no_chinese}"
    assert all(len(definition) > 10 for _, definition in rows.values())


@pytest.mark.parametrize("page", ["intro.md", "setup.md", "glossary.md"])
def test_core_pages_have_chinese_text(page):
    assert len(CJK.findall((BOOK / page).read_text(encoding="utf-8"))) >= 10


def test_every_citation_is_in_the_bibliography(toc_docnames):
    from pybtex.database import parse_file

    bib = parse_file(str(BOOK / "references.bib"))
    for key, entry in bib.entries.items():
        assert entry.persons.get("author"), f"{key}: no author"
        assert entry.fields.get("title") and entry.fields.get("year"), f"{key}: title/year"
    cited = set()
    for docname in toc_docnames:
        for group in CITE.findall(_page_text(_source_of(docname))):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no page cites anything: the bibtex set-up would go untested"
    missing = sorted(cited - set(bib.entries))
    assert missing == [], f"cited but not in references.bib: {missing}"


def test_citation_pattern_finds_keys():
    text = "see {cite:p}`a2020,b2021` and {cite:t}`c2019` and {cite}`d2018`"
    keys = [k.strip() for g in CITE.findall(text) for k in g.split(",")]
    assert keys == ["a2020", "b2021", "c2019", "d2018"]


# --- publishing workflow ---------------------------------------------------------------

WORKFLOW = ROOT / ".github" / "workflows" / "book.yml"


def test_workflow_builds_with_W_deploys_pages_and_runs_weekly():
    wf = _load_yaml(WORKFLOW)
    triggers = wf.get("on", wf.get(True))  # YAML 1.1 reads the key `on` as True
    assert "push" in triggers and "workflow_dispatch" in triggers
    (schedule,) = triggers["schedule"]
    minute, hour, day_of_month, month, day_of_week = schedule["cron"].split()
    assert (day_of_month, month) == ("*", "*") and day_of_week.isdigit()  # weekly
    build_steps = wf["jobs"]["build"]["steps"]
    runs = "\n".join(step.get("run", "") for step in build_steps)
    assert "pip install -r requirements.txt" in runs
    assert re.search(r"rm -rf _build\s+jupyter-book build \. -W", runs)
    uses = [step.get("uses", "") for step in build_steps]
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    upload = next(s for s in build_steps if s.get("uses", "").startswith("actions/upload-pages"))
    assert upload["with"]["path"] == "_build/html"
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build"
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["steps"][-1]["uses"].startswith("actions/deploy-pages@")


def test_workflow_matches_github_schema():
    pytest.importorskip("check_jsonschema")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(WORKFLOW),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- README and CI script ----------------------------------------------------------------

INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt"


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_and_setup_page_give_the_same_commands():
    readme = _bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    setup = _bash_blocks((BOOK / "setup.md").read_text(encoding="utf-8"))
    expected = [INSTALL, "jupyter-book build .", "jupyter lab", "pytest"]
    # README also shows the website tests and the optional external link check
    website = [
        "python tools/check_links.py\npytest -m browser",
        "jupyter-book build . --builder linkcheck",
    ]
    assert readme == expected + website
    assert setup == expected


def test_ci_script_is_valid_bash_and_runs_readme_commands():
    script = ROOT / ".ci" / "run"
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    assert re.search(r"pip install .*-r requirements\.txt", text)
    assert re.search(r"^step tests pytest$", text, flags=re.M)
    assert re.search(r"^step book jupyter-book build \. -W\b", text, flags=re.M)
    # after the build: README's website test commands, in order
    steps = re.findall(r"^step \w+ (.*)$", text, flags=re.M)
    assert steps.index("python tools/check_links.py") > steps.index(
        "jupyter-book build . -W --keep-going --all"
    )
    assert steps.index("pytest -m browser") > steps.index("python tools/check_links.py")
    assert "npm ci --prefix tests/browser" in text
