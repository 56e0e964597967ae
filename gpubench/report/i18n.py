"""The phrase catalogue (``catalogue.toml``, every English and Chinese string) and its lookups.

The catalogue is data: a phrase is a TOML table with ``en`` and ``zh``, keyed by its dotted
name. The Chinese wording follows the user's own FAQ pages (配置, 速度, 显存（每个GPU）) and
one glossary: the ``mode.*`` names, ``glossary.memory.*`` (显存 on GPUs only, 常驻内存 for a
process's memory on CPU slots), 工作进程 for a worker and 批大小 for the batch size.
Placeholders are ``str.format`` fields; ``{n:mib}`` shows bytes as MiB and a missing value
(``None``) shows as ``?``.
"""

from __future__ import annotations

import re
import string
import sys
from functools import cache
from pathlib import Path
from typing import Any

from gpubench.results import (
    NOTE_HOST_CHOSEN,
    NOTE_HOST_INSTEAD,
    NOTE_NO_GPU,
    NOTE_SAMPLES_FAILED,
    NOTE_SEPARATOR,
    NOTE_TICKS_SKIPPED,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

LANGS = ("en", "zh")
CATALOGUE_PATH = Path(__file__).with_name("catalogue.toml")


class CatalogueError(ValueError):
    """The catalogue file is malformed: a phrase without both languages, a stray value."""


def _flatten(prefix: str, table: dict[str, Any], out: dict[str, tuple[str, str]]) -> None:
    if "en" in table or "zh" in table:
        en, zh = table.get("en"), table.get("zh")
        if not isinstance(en, str) or not isinstance(zh, str):
            raise CatalogueError(f"catalogue phrase {prefix!r} needs both en and zh strings")
        out[prefix] = (en, zh)
    for key, value in table.items():
        if key in LANGS:
            continue
        name = f"{prefix}.{key}" if prefix else key
        if not isinstance(value, dict):
            raise CatalogueError(f"catalogue entry {name!r} is not a phrase (en/zh table)")
        _flatten(name, value, out)


def load_catalogue(text_: str) -> dict[str, tuple[str, str]]:
    """Phrases by dotted key, from the catalogue's TOML text."""
    out: dict[str, tuple[str, str]] = {}
    _flatten("", tomllib.loads(text_), out)
    return out


@cache
def catalogue() -> dict[str, tuple[str, str]]:
    return load_catalogue(CATALOGUE_PATH.read_text(encoding="utf-8"))


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "?"
        if format_spec == "mib":
            return f"{value / 2**20:.0f} MiB"
        return str(super().format_field(value, format_spec))


_FORMATTER = _Formatter()


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)}, got {lang!r}")
    return lang


def has(key: str) -> bool:
    return key in catalogue()


def template(key: str, lang: str) -> str:
    en, zh = catalogue()[key]
    return zh if check_lang(lang) == "zh" else en


def text(key: str, lang: str, **values: object) -> str:
    """The phrase ``key`` in ``lang``, its placeholders filled from ``values``."""
    phrase = template(key, lang)
    return _FORMATTER.format(phrase, **values) if values else phrase


def mode_label(
    name: str, lang: str, *, cpu_slots: bool = False, devices: int | None = None
) -> str:
    """A mode's display name: the glossary's Chinese name in zh (``mode.<name>`` in the
    catalogue: 串行, 多线程, 多进程（单设备）, 多 GPU（每设备一个进程） …), the mode name itself
    in en. Every zh page and finding names a mode through this function.

    On a run with CPU slots only, the names say so (多 CPU 槽) rather than "GPU"; multi-gpu on
    a single device says it had one ("multi-gpu (1 device)").
    """
    if "@" in name:  # a counterfactual row: "threaded@torch-threads=1"
        base, setting = name.split("@", 1)
        label = mode_label(base, lang, cpu_slots=cpu_slots, devices=devices)
        return text("mode.with-setting", lang, mode=label, setting=setting)
    if name == "multi-gpu" and devices == 1:
        label = text("mode.one-device", lang, name=name)
    else:
        label = text(f"mode.{name}", lang) if has(f"mode.{name}") else name
    if cpu_slots:
        label = label.replace(text("mode.gpu-word", lang), text("mode.cpu-slot-word", lang))
    return label


_DEVICE_ID = re.compile(r"(cuda|cpu):(\d+)")


def device_label(device: str, lang: str) -> str:
    """``cuda:1`` → ``GPU 1``; ``cpu:0`` → ``CPU slot 0`` / ``CPU 槽 0``; anything else as is."""
    check_lang(lang)
    m = _DEVICE_ID.fullmatch(device)
    if not m:
        return device
    kind, index = m.groups()
    return text(f"device.{kind}", lang, index=index)


def _counted(note: str) -> re.Pattern[str]:
    return re.compile(re.escape(note).replace(re.escape("{n}"), r"(\d+)") + "$")


# The monitor writes its notes in English (results.NOTE_*); the catalogue has them in both.
_FIXED_NOTES = {NOTE_NO_GPU: "note.no-gpu", NOTE_HOST_CHOSEN: "note.host-chosen"}
_COUNTED_NOTES = (
    (_counted(NOTE_TICKS_SKIPPED), "note.ticks-skipped"),
    (_counted(NOTE_SAMPLES_FAILED), "note.samples-failed"),
)


def monitor_note(note: str, lang: str) -> str:
    """The monitor's note from a results file, in the page's language (unknown parts as is)."""
    if check_lang(lang) != "zh":
        return note
    separator = text("list.sep", lang)
    return separator.join(_note(part, lang) for part in note.split(NOTE_SEPARATOR))


def _note(part: str, lang: str) -> str:
    if part in _FIXED_NOTES:
        return text(_FIXED_NOTES[part], lang)
    if part.endswith(NOTE_HOST_INSTEAD):
        return text("note.host-instead", lang, reason=part[: -len(NOTE_HOST_INSTEAD)])
    for pattern, key in _COUNTED_NOTES:
        m = pattern.match(part)
        if m:
            return text(key, lang, n=m.group(1))
    return part
