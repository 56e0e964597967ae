"""Measured figures in the README and the docs, in named blocks written from results files.

A block is ``<!-- measured:NAME -->`` … ``<!-- /measured:NAME -->``: what lies between the two
markers is written from committed results files and by nothing else (``scripts/readme_table.py``
names each block and its files). A figure is formatted as every page formats it
(:func:`gpubench.report.measures.format_speedup`: the speedup with its interval) beside its
verdict word (the catalogue's ``verdict.speed.*`` or ``faq.verdict.*``), and each block ends
with a verdict line read from the same files, so that the prose around a block has a sentence
to agree with and no figure of its own to state.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from gpubench.faq.inputs import FaqInputs
from gpubench.faq.verdicts import BELIEFS, answer_beliefs
from gpubench.report import measures
from gpubench.report.faq_text import faq_text
from gpubench.report.i18n import text
from gpubench.results import Results

# The README and the docs are written in English; the pages carry both languages.
LANG = "en"
BLOCK = re.compile(
    r"<!-- measured:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)<!-- /measured:(?P=name) -->",
    re.S,
)
MARKER = re.compile(r"<!-- /?measured:[a-z0-9-]+ -->")


class BlockError(ValueError):
    """A document's markers do not match the blocks it is rendered with."""


def start(name: str) -> str:
    return f"<!-- measured:{name} -->"


def end(name: str) -> str:
    return f"<!-- /measured:{name} -->"


def blocks(document: str) -> dict[str, str]:
    """Block name -> its body, as the document holds them."""
    found: dict[str, str] = {}
    for m in BLOCK.finditer(document):
        if m.group("name") in found:
            raise BlockError(f"block {m.group('name')!r} appears twice")
        found[m.group("name")] = m.group("body").rstrip("\n")
    return found


def outside_blocks(document: str) -> str:
    """The document with every block's body and markers left out (the hand-written text)."""
    return BLOCK.sub("", document)


def replace_blocks(document: str, bodies: Mapping[str, str]) -> str:
    """``document`` with each of its blocks' bodies rewritten from ``bodies``; a block the
    document holds and ``bodies`` does not name, or a marker without its pair, is an error."""
    names = list(blocks(document))
    unknown = [n for n in names if n not in bodies]
    if unknown:
        raise BlockError(f"no renderer for block(s) {', '.join(unknown)}")
    if len(MARKER.findall(document)) != 2 * len(names):
        raise BlockError("a measured: marker has no matching start or end")
    return BLOCK.sub(lambda m: f"{start(m.group('name'))}\n{bodies[m.group('name')]}\n"
                               f"{end(m.group('name'))}", document)


def speed_verdict(results: Results, name: str) -> str | None:
    """The verdict word of ``name`` against serial as the pages' tables give it (``faster``,
    ``no clear difference``, …); None for serial, a mode that did not run or has no verdict."""
    mode = results.mode(name)
    if mode is None or name == "serial":
        return None
    verdict = measures.speed_of(results, mode).verdict
    if verdict in (measures.NO_VERDICT, measures.BASELINE):
        return None
    return text(f"verdict.speed.{verdict}", LANG)


def speed_text(results: Results, name: str) -> str:
    """``1.62x [1.05, 2.51] faster``: the pages' speed cell and its verdict word; ``failed`` /
    ``n/a`` for a mode without a speed; empty for a mode that did not run."""
    mode = results.mode(name)
    if mode is None:
        return ""
    if not mode.ok:
        return "n/a" if mode.status == "not_applicable" else "failed"
    speed = measures.speed_of(results, mode)
    figure = measures.format_speedup(speed)
    verdict = speed_verdict(results, name)
    return f"{figure} {verdict}" if verdict else figure


def verdict_line(label: str, results: Results, names: Sequence[str]) -> str:
    """One sentence: each mode's speed verdict against serial in ``label``'s run."""
    said = [f"{n} {v}" for n in names if (v := speed_verdict(results, n)) is not None]
    return f"Verdict, {label}: " + ("; ".join(said) if said else "none") + "."


def belief_verdicts(inputs: FaqInputs) -> dict[str, str]:
    """Belief -> its verdict word (``holds``, ``does not hold``, ``inconclusive``, …)."""
    return {a.belief: faq_text(f"verdict.{a.verdict}", LANG) for a in answer_beliefs(inputs)}


def belief_line(label: str, inputs: FaqInputs) -> str:
    """One sentence: each belief's verdict on the FAQ page ``label``."""
    verdicts = belief_verdicts(inputs)
    said = [f"{i} ({faq_text(f'short.belief.{b}', LANG)}) {verdicts[b]}"
            for i, b in enumerate(BELIEFS, 1)]
    return f"Verdict, {label}: " + "; ".join(said) + "."
