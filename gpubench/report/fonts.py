"""A font that renders Chinese in plots: a maintained package's, the system's, or none.

Looked for in this order: fonts bundled beside this module; the fonts the ``mplfonts``
package ships (Noto Sans CJK SC; ``pip install gpubench[zh]``), found on disk without
importing it; matplotlib's known fonts by family name; any installed font whose file name
hints at CJK and that has the glyphs. Without one, zh plots fall back to English labels.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# Families known to carry Chinese glyphs; the first one installed wins. Any other installed font
# that has the glyphs is found by the slower coverage check below.
_CJK_FAMILIES = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "WenQuanYi Micro Hei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
    "SimHei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
)
_PROBE = "配置速度显存工作闲置"


def _has_glyphs(fname: str) -> bool:
    from matplotlib.ft2font import FT2Font

    try:
        charmap = FT2Font(fname).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(ch) in charmap for ch in _PROBE)


# The Simplified Chinese sans-serif faces mplfonts ships, best first.
_MPLFONTS_FILES = ("NotoSansCJKsc-Regular.otf", "SourceHanSerifSC-Regular.otf")


def packaged_fonts() -> list[Path]:
    """Font files bundled beside this module, then those of the ``mplfonts`` package."""
    bundled = Path(__file__).parent
    found = sorted([*bundled.glob("*.ttf"), *bundled.glob("*.otf")])
    try:
        spec = importlib.util.find_spec("mplfonts")
    except (ImportError, ValueError):
        spec = None
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        found += [f for name in _MPLFONTS_FILES if (f := Path(root) / "fonts" / name).is_file()]
    return found


@functools.lru_cache(maxsize=1)
def find_cjk_font() -> str | None:
    """The family name of an installed font that renders Chinese, or None."""
    from matplotlib import font_manager

    for extra in packaged_fonts():
        try:
            font_manager.fontManager.addfont(str(extra))
        except (OSError, RuntimeError, ValueError):
            continue
    entries = font_manager.fontManager.ttflist
    by_name = {e.name: e.fname for e in entries}
    for family in _CJK_FAMILIES:
        if family in by_name and _has_glyphs(by_name[family]):
            return family
    hinted = ("CJK", "Han", "Hei", "WenQuanYi", "Ming", "Song", "Kai", "Gothic")
    for entry in sorted(entries, key=lambda e: e.name):
        if any(h in entry.name for h in hinted) and _has_glyphs(entry.fname):
            return str(entry.name)
    # matplotlib caches its font list: a font installed since then is only on disk.
    hinted_files = ("cjk", "wqy", "han", "hei", "droidsansfallback", "uming", "ukai")
    known = {e.fname for e in entries}
    for fname in sorted(font_manager.findSystemFonts()):
        name = Path(fname).name.lower()
        if fname in known or not any(h in name for h in hinted_files):
            continue
        if _has_glyphs(fname):
            try:
                font_manager.fontManager.addfont(fname)
                return str(font_manager.FontProperties(fname=fname).get_name())
            except (OSError, RuntimeError, ValueError):
                continue
    return None
