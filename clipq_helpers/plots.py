"""Matplotlib set-up for the course: Chinese labels, a colour-blind-safe palette.

Every notebook calls :func:`use_cjk_font` once before plotting. It registers the
Noto Sans CJK SC font that the ``mplfonts`` package installs (no system font is
assumed, nothing is downloaded, nothing is written into matplotlib's install).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import matplotlib
from cycler import cycler
from matplotlib import font_manager

__all__ = [
    "CJK_FONT_NAME",
    "OKABE_ITO",
    "cjk_font_path",
    "use_cjk_font",
]

#: Family name of the CJK font (as matplotlib reads it from the file).
CJK_FONT_NAME = "Noto Sans CJK SC"
#: The package that ships the font, and the font file inside its ``fonts/`` folder.
FONT_PACKAGE = "mplfonts"
FONT_FILE = "NotoSansCJKsc-Regular.otf"
_INSTALL_HINT = "pip install mplfonts==0.0.11"

#: Okabe-Ito colour-blind-safe palette (Okabe & Ito 2008), ordered for contrast on white.
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)


def cjk_font_path() -> Path:
    """Return the path of the Noto Sans CJK SC font file shipped by ``mplfonts``.

    The package is located without importing it. Raises FileNotFoundError with an
    install hint when the package or the font file is missing.
    """
    spec = importlib.util.find_spec(FONT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Chinese font {CJK_FONT_NAME!r} comes from the Python package "
            f"{FONT_PACKAGE!r}, which is not installed; install it with: {_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "fonts" / FONT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the font file {FONT_FILE!r} is missing from the {FONT_PACKAGE!r} package "
        f"(looked in {list(spec.submodule_search_locations)!r}/fonts); "
        f"reinstall it with: {_INSTALL_HINT}"
    )


def use_cjk_font() -> str:
    """Configure matplotlib for Chinese and Latin labels; return the CJK font's name.

    Registers the Noto Sans CJK SC font with matplotlib's font manager (once), puts it
    first in the sans-serif list (DejaVu Sans stays as fallback), turns off the
    Unicode minus sign, and sets the Okabe-Ito colour cycle and a sharper dpi.
    Idempotent: calling it again changes nothing. Changes ``matplotlib.rcParams``
    globally, so wrap it in ``matplotlib.rc_context()`` to keep the change local.
    """
    path = cjk_font_path()
    registered = {Path(entry.fname).resolve() for entry in font_manager.fontManager.ttflist}
    if path.resolve() not in registered:
        font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    if name != CJK_FONT_NAME:
        raise FileNotFoundError(
            f"{path} holds the font {name!r}, expected {CJK_FONT_NAME!r}; "
            f"reinstall it with: {_INSTALL_HINT}"
        )
    rc = matplotlib.rcParams
    rest = [family for family in rc["font.sans-serif"] if family not in (name, "DejaVu Sans")]
    rc["font.family"] = ["sans-serif"]
    rc["font.sans-serif"] = [name, "DejaVu Sans", *rest]
    rc["axes.unicode_minus"] = False
    rc["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))
    rc["figure.dpi"] = 110
    rc["savefig.dpi"] = 150
    return name
