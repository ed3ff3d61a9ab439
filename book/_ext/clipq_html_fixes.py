"""Fixes to the CLIP-Q website's HTML: a local Sphinx extension.

Loaded by ``_config.yml`` (``sphinx: local_extensions``). Sphinx 7.4 writes
an inline ``<script>`` twice when an extension adds it after the HTML
builder started (sphinx-doc/sphinx#13402, fixed in Sphinx 8.2; Jupyter
Book 1 needs Sphinx 7). sphinx-thebe adds ``const THEBE_JS_URL = ...`` that
way, so every page logged "Uncaught SyntaxError: Identifier 'THEBE_JS_URL'
has already been declared". This drops repeated scripts from each page.
"""

from __future__ import annotations

import os
from typing import Any

from sphinx.application import Sphinx

_Key = tuple[str, tuple[tuple[str, str], ...]]


def _script_key(js: Any) -> _Key:
    """What makes two scripts the same: file (None and "" alike), attrs."""
    attributes = getattr(js, "attributes", {})
    filename = getattr(js, "filename", js) or ""
    attrs = tuple(sorted((k, str(v)) for k, v in attributes.items()))
    return os.fspath(filename), attrs


def drop_duplicate_scripts(
    app: Sphinx,
    pagename: str,
    templatename: str,
    context: dict[str, Any],
    doctree: Any,
) -> None:
    """Keep the first of each repeated ``script_files`` entry, in order."""
    seen: set[_Key] = set()
    unique = []
    for js in context.get("script_files", []):
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("html-page-context", drop_duplicate_scripts, priority=900)
    return {
        "version": "1.0",
        "parallel_read_safe": True,
        "parallel_write_safe": True,
    }
