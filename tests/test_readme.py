"""The README and the docs state measured figures only in blocks written from committed results
files, and their prose never contradicts the verdicts those blocks give."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from gpubench.report import measured_blocks as mb
from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
try:
    import readme_table
finally:
    sys.path.pop(0)

DOCUMENTS = readme_table.DOCUMENTS

# A measured figure: a ratio (1.86x), a time (35 ms, 1.2 s), a size (784 MiB, 1.1 GB) or a
# throughput (21.2 clients/s); a digit glued to a name (H200, RTX 4090s) is not one.
FIGURE = re.compile(
    r"(?<![\w.])\d+(?:\.\d+)?(?:x\b|\s?(?:MiB|GiB|KiB|MB|GB|KB|ms)\b|\s(?:s|min)\b|"
    r"\s?clients/s)"
)
# Figures in prose that are not measurements, each with why. Keep it short: a measured
# figure belongs in a block.
ALLOWED = {
    "100x that floor": "the tolerance rule's factor (gpubench.run), not a measurement",
    "widened 4x": "the tolerance rule's factor for vectorized on CUDA",
    "within 2x the farthest": "the adjudication rule's bound",
    "above 1.10x": "the drift finding's limit on one device (findings)",
    "true speedup 1.9x": "the parameter of the gate's simulations, not a measurement",
    "default 470 s": "gpu-check.sh's default budget",
    "about 2 GB per training process": "belief 5 as the notes state it: the claim under test",
    "64 MB slabs": "the size of the slabs client data is packed into (a constant)",
}
VERDICT = re.compile(r"\b(does not hold|do not hold|partly holds|holds|hold|"
                     r"no clear difference|faster|slower|inconclusive)\b")
SAME = {"do not hold": "does not hold", "hold": "holds"}
MODES = ("serial", "threaded", "multiprocess", "multi-gpu", "streams", "vectorized")


def _document(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def prose(text: str) -> str:
    """The hand-written text: no block, no fenced code, no inline code (commands, options)."""
    text = mb.outside_blocks(text)
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S)


def figures(text: str) -> list[str]:
    """Each figure of ``text``'s prose with what surrounds it, but those ``ALLOWED``."""
    found = []
    for paragraph in re.split(r"\n\s*\n", prose(text)):
        kept = " ".join(paragraph.split())
        for phrase in ALLOWED:
            kept = kept.replace(phrase, "")
        found += [f"{m.group(0)} (in: …{kept[max(0, m.start() - 40):m.end() + 20]}…)"
                  for m in FIGURE.finditer(kept)]
    return found


def sections(text: str) -> Iterator[str]:
    """The document cut at its headings (those outside fenced code)."""
    current: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#") and current:
            yield "\n".join(current)
            current = []
        current.append(line)
    yield "\n".join(current)


def _verdict(word: str) -> str:
    return SAME.get(word, word)


def block_verdicts(section: str) -> tuple[set[str], dict[str, set[str]]]:
    """The verdicts a section's blocks give: every word, and per mode the words said of it."""
    words: set[str] = set()
    per_mode: dict[str, set[str]] = {}
    for body in mb.blocks(section).values():
        for line in body.splitlines():
            if "Verdict," not in line:
                continue
            for item in line.split(":", 1)[1].split(";"):
                found = [_verdict(m.group(1)) for m in VERDICT.finditer(item)]
                words.update(found)
                name = item.strip().split(" ", 1)[0].split("@", 1)[0]
                if name in MODES:
                    per_mode.setdefault(name, set()).update(found)
    return words, per_mode


def contradictions(section: str) -> list[str]:
    """Hand-written sentences of a section with blocks that use a verdict word its blocks do
    not give (to the mode the sentence names, where it names one)."""
    if not mb.blocks(section):
        return []
    words, per_mode = block_verdicts(section)
    wrong = []
    body = "\n".join(line for line in prose(section).splitlines() if not line.startswith("#"))
    for sentence in re.split(r"(?<=[.!?])\s+|\n\s*\n", body):
        named = [m for m in MODES if re.search(rf"\b{re.escape(m)}\b", sentence)]
        for match in VERDICT.finditer(sentence):
            said = _verdict(match.group(1))
            allowed = set.union(*(per_mode.get(m, set()) for m in named)) if named else words
            if said not in allowed:
                wrong.append(f"{said!r} in: {' '.join(sentence.split())}")
    return wrong


def test_every_block_is_regenerated_from_the_committed_results() -> None:
    proc = subprocess.run([sys.executable, "scripts/readme_table.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    # 1: a block differs from what the results files give; 2: its markers are broken
    assert proc.returncode == 0 and not proc.stderr, (
        f"a measured block is stale: run python scripts/readme_table.py\n{proc.stderr}")


def test_the_readme_and_the_faq_index_carry_the_measured_blocks() -> None:
    assert set(mb.blocks(_document("README.md"))) == {"modes", "own-client", "beliefs"}
    assert "beliefs" in mb.blocks(_document("docs/faq/README.md"))
    for name in DOCUMENTS:
        for block, body in mb.blocks(_document(name)).items():
            # every block ends with a verdict line per results file it is written from
            assert "Verdict," in body.splitlines()[-1], (name, block)


def test_an_edited_block_is_written_back_from_the_results() -> None:
    readme = _document("README.md")
    bodies = {name: body for name, body in mb.blocks(readme).items()}
    edited = readme.replace(bodies["modes"], bodies["modes"].replace("faster", "slower", 1))
    assert edited != readme
    assert mb.replace_blocks(edited, bodies) == readme


def test_a_broken_or_unknown_marker_is_refused() -> None:
    with pytest.raises(mb.BlockError, match="no renderer"):
        mb.replace_blocks(f"{mb.start('nope')}\nx\n{mb.end('nope')}\n", {})
    with pytest.raises(mb.BlockError, match="matching"):
        mb.replace_blocks(f"{mb.start('modes')}\nx\n", {"modes": "y"})


@pytest.mark.parametrize("name", DOCUMENTS)
def test_no_measured_figure_is_typed_in_prose(name: str) -> None:
    assert figures(_document(name)) == []


def test_a_figure_in_prose_is_found_and_one_in_a_block_or_a_command_is_not() -> None:
    text = (f"Threads went from 0.65x to 1.33x; a round took 35 ms and 784 MiB, 21.2 clients/s.\n"
            f"{mb.start('modes')}\n| 1.62x |\n{mb.end('modes')}\n"
            "Run `gpubench compare --rounds 8` on an H200 or two RTX 4090s.\n"
            "```\ngpubench faq   # about 3 minutes, 2.5 s\n```\n")
    found = figures(text)
    assert [f.split(" (in: ")[0] for f in found] == [
        "0.65x", "1.33x", "35 ms", "784 MiB", "21.2 clients/s"]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_prose_never_contradicts_the_verdicts_of_its_section(name: str) -> None:
    wrong = [w for section in sections(_document(name)) for w in contradictions(section)]
    assert wrong == []


def test_a_sentence_against_its_blocks_verdict_is_caught() -> None:
    block = (f"{mb.start('modes')}\n| x |\n\n- Verdict, run: threaded no clear difference; "
             f"multi-gpu faster.\n{mb.end('modes')}\n")
    assert contradictions(f"## S\n\n{block}\nmulti-gpu was faster here.\n") == []
    assert contradictions(f"## S\n\n{block}\nthreaded was faster here.\n") == [
        "'faster' in: threaded was faster here."]
    assert contradictions(f"## S\n\n{block}\nOn CPU slots the notes hold.\n") == [
        "'holds' in: On CPU slots the notes hold."]
    # another section's sentence is judged by its own blocks (none: not judged)
    assert contradictions("## T\n\nthreaded was slower.\n") == []


# --- the GPU pages say which run they come from, and that it predates today's records ---------

GPU_PAGES = {
    "reports/gpu-h200/compare": ["reports/gpu-h200/compare.json"],
    "reports/gpu-h200/one-gpu": ["reports/gpu-h200/compare-one-gpu.json"],
    "reports/gpu-h200/all-modes": ["reports/gpu-h200/compare-all.json"],
    "docs/faq/gpu-h200/faq": ["reports/gpu-h200/compare-all.json",
                              *(f"reports/gpu-h200/sweep/batch_size-{b}.json" for b in (32, 64, 128))],
}


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("stem", sorted(GPU_PAGES))
def test_a_gpu_page_names_its_run_and_machine_and_that_it_predates_the_records(
    stem: str, lang: str
) -> None:
    from gpubench.report.i18n import text
    from gpubench.report.provenance import missing_records, run_line
    from gpubench.results import read_results

    page = _document(f"{stem}.{lang}.md")
    for path in GPU_PAGES[stem]:
        results = read_results(ROOT / path)
        label = path if stem.endswith("faq") else path.rsplit("/", 1)[1].removesuffix(".json")
        # the line the renderer writes from the file: when, host, GPU, version, commit
        assert f"- {run_line(label, results, lang)}" in page, (stem, path)
        # these runs lack the commit and the other-load record: the page says it predates them
        assert {"commit", "other_load"} <= set(missing_records(results))
        assert text("prov.missing.other_load", lang) in page


def test_a_file_with_every_record_is_not_called_older() -> None:
    from dataclasses import replace

    from gpubench.report.provenance import missing_records, run_line
    from gpubench.results import read_results

    quiet = read_results(ROOT / "docs/faq/cpu-slots/results/compare.json")
    assert missing_records(quiet) == []  # measured with every record
    older = replace(quiet, modes=tuple(replace(m, other_load_pct={}) for m in quiet.modes))
    assert missing_records(older) == ["other_load"]
    assert "predates" not in run_line("x", quiet, "en")
    assert "predates" in run_line("x", older, "en")
