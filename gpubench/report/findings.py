"""Findings in words: a :class:`~gpubench.findings.Finding`'s code and facts, rendered from
the catalogue in English or Chinese, for the terminal, the doctor and the report page.

How facts become words (the catalogue's header says the same for whoever edits it): a
finding's message is ``finding.<code>[.<variant>]``, its hint ``finding.<code>.hint[.<variant>]``;
a fact that is a dict (or ``None``) is a clause rendered by its own phrase, a list of dicts
one clause per item joined by the phrase's ``.sep``; booleans are on/off words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gpubench.report.i18n import catalogue, check_lang, has, mode_label, text

# Facts that name a mode: shown by the glossary's name for it (mode_label), not the CLI's.
MODE_FACTS = ("mode", "during")


class FindingLike(Protocol):
    @property
    def level(self) -> str: ...

    @property
    def code(self) -> str: ...

    @property
    def facts(self) -> Mapping[str, Any]: ...


def _first(*keys: str) -> str | None:
    return next((k for k in keys if has(k)), None)


def _clause_key(prefix: str, name: str, variant: object) -> str | None:
    """The phrase for clause ``name`` under ``prefix``, else the shared ``clause.<name>``."""
    keys = [f"{prefix}.{name}", f"clause.{name}"]
    if isinstance(variant, str):
        keys = [f"{k}.{variant}" for k in keys] + keys
    return _first(*keys)


def _is_clause(prefix: str, name: str) -> bool:
    starts = (f"{prefix}.{name}", f"clause.{name}")
    return any(k == s or k.startswith(s + ".") for k in catalogue() for s in starts)


def _clause(prefix: str, name: str, facts: Mapping[str, Any], lang: str) -> str:
    key = _clause_key(prefix, name, facts.get("variant"))
    if key is None:
        raise KeyError(f"no phrase for clause {name!r} of {prefix!r}")
    return text(key, lang, **_values(key, facts, lang))


def _values(prefix: str, facts: Mapping[str, Any], lang: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in facts.items():
        if isinstance(value, Mapping):
            out[name] = _clause(prefix, name, value, lang)
        elif isinstance(value, (list, tuple)) and value and all(
            isinstance(v, Mapping) for v in value
        ):
            sep_key = _first(f"{prefix}.{name}.sep", "list.sep")
            sep = text(sep_key or "list.sep", lang)
            out[name] = sep.join(_clause(prefix, name, v, lang) for v in value)
        elif isinstance(value, (list, tuple)):
            out[name] = ", ".join(str(v) for v in value)
        elif isinstance(value, bool):
            out[name] = text("word.on" if value else "word.off", lang)
        elif value is None and _is_clause(prefix, name):
            out[name] = ""
        elif name in MODE_FACTS and isinstance(value, str) and lang != "en":
            cpu = any(isinstance(v, str) and v.startswith("cpu:") for v in facts.values())
            out[name] = mode_label(value, lang, cpu_slots=cpu)
        else:
            out[name] = value
    return out


def message_key(code: str, variant: object = None) -> str:
    """The catalogue key of a finding's message (``finding.<code>[.<variant>]``)."""
    base = f"finding.{code}"
    if isinstance(variant, str) and has(f"{base}.{variant}"):
        return f"{base}.{variant}"
    return base


def finding_text(finding: FindingLike, lang: str = "en") -> tuple[str, str]:
    """(message, hint) of a finding in ``lang``; the hint is "" where the catalogue has none."""
    check_lang(lang)
    facts = finding.facts
    variant = facts.get("variant")
    base = f"finding.{finding.code}"
    key = message_key(finding.code, variant)
    values = _values(base, facts, lang)
    message = text(key, lang, **values)
    hints = [f"{base}.hint.{variant}"] if isinstance(variant, str) else []
    hint_key = _first(*hints, f"{base}.hint")
    hint = text(hint_key, lang, **values) if hint_key else ""
    return message, hint


def level_label(level: str, lang: str, *, terminal: bool = False) -> str:
    key = f"terminal.level.{level}" if terminal else f"level.{level}"
    return text(key, lang) if has(key) else level


def format_findings(findings: Sequence[FindingLike], lang: str = "en") -> str:
    """Findings as terminal text; empty string when there are none."""
    check_lang(lang)
    if not findings:
        return ""
    lines = [text("terminal.findings", lang)]
    for f in findings:
        message, hint = finding_text(f, lang)
        lines.append(f"- {level_label(f.level, lang, terminal=True)} [{f.code}] {message}")
        if hint:
            lines.append(f"  {text('page.hint', lang)}: {hint}")
    return "\n".join(lines)


def finding_record(finding: FindingLike, lang: str = "en") -> dict[str, Any]:
    """A finding for JSON: its code, level and facts, with the words in ``lang``."""
    message, hint = finding_text(finding, lang)
    return {"code": finding.code, "level": finding.level, "facts": dict(finding.facts),
            "message": message, "hint": hint}
