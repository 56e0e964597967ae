"""The gate's verdicts as text: the terminal table, the markdown step summary, JUnit XML.

Strings only; :func:`gpubench.api.check_gate` and the CLI write them where they go.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tabulate import tabulate

from gpubench.gate.checks import pct
from gpubench.gate.verdicts import FAIL, INCONCLUSIVE, PASS, SKIP, GateReport, Verdict
from gpubench.stats import Interval

PAIRED_NOTE = "speedups of an interleaved run pair each mode round with serial's round"


def format_interval(interval: Interval | None) -> str:
    if interval is None:
        return "-"
    if not interval.estimated or interval.low == interval.high:
        return f"{interval.estimate:.2f}x"
    return f"{interval.estimate:.2f}x [{interval.low:.2f}, {interval.high:.2f}]"


def _table_rows(report: GateReport) -> tuple[list[str], list[list[str]]]:
    level = pct(report.level)
    multi_case = len({v.case for v in report.verdicts}) > 1
    headers = ["mode", "verdict", f"speedup [{level} CI]"]
    if report.baseline_kind == "expectations":
        headers += ["expected"]
    else:
        headers += ["baseline", f"change [{level} CI]", "limit"]
    headers += ["result"]
    rows = []
    for v in report.verdicts:
        verdict = v.verdict + (
            " (counts as fail)" if report.strict and v.verdict == INCONCLUSIVE else ""
        )
        row = [v.mode, verdict, format_interval(v.speedup)]
        if report.baseline_kind == "expectations":
            row += [v.reference or "-"]
        else:
            row += [v.reference or "-", format_interval(v.change), v.limit or "-"]
        row += [v.result.partition(":")[0] or "-"]
        rows.append(([v.case] if multi_case else []) + row)
    return (["case"] if multi_case else []) + headers, rows


def format_policy(report: GateReport) -> str:
    """What INCONCLUSIVE counted as in this gate, and the option that chose it."""
    return f"INCONCLUSIVE counts as {report.inconclusive}: --inconclusive {report.inconclusive}"


def format_outcome(report: GateReport) -> str:
    tally = ", ".join(f"{n} {k}" for k, n in report.counts().items() if n)
    head = "PASSED" if report.passed else "FAILED"
    return (
        f"gate {head} against {report.baseline} ({report.baseline_kind}): "
        f"{tally or 'no checks'} ({format_policy(report)})"
    )


def _messages(report: GateReport) -> list[str]:
    lines = []
    for v in report.verdicts:
        if v.message and v.verdict != PASS:
            lines.append(f"{v.verdict}: {v.message}")
        elif v.not_reproducible:
            lines.append(f"{v.verdict}: {v.mode}: speed only; {v.result}")
        if v.verdict in (FAIL, INCONCLUSIVE):
            lines.extend(f"  note: {n}" for n in v.notes)
    lines.extend(f"note: {n}" for n in report.notes)
    if any(v.paired for v in report.verdicts):
        lines.append(f"note: {PAIRED_NOTE}")
    return lines


def format_gate_report(report: GateReport) -> str:
    """The verdict table, every failure's message, and a one-line outcome."""
    headers, rows = _table_rows(report)
    parts = [tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)]
    messages = _messages(report)
    if messages:
        parts.append("\n".join(messages))
    parts.append(format_outcome(report))
    return "\n\n".join(parts) + "\n"


def format_gate_markdown(report: GateReport) -> str:
    """The step summary: a heading with the outcome, the table, the messages."""
    headers, rows = _table_rows(report)
    icon = ":white_check_mark:" if report.passed else ":x:"
    lines = [f"### {icon} gpubench {format_outcome(report)}", ""]
    lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    messages = _messages(report)
    if messages:
        lines.append("")
        lines.extend(f"- {m.strip()}" for m in messages)
    return "\n".join(lines) + "\n\n"


def _detail(report: GateReport, v: Verdict) -> str:
    counts = [f"counts as: {report.inconclusive}"] if v.verdict == INCONCLUSIVE else []
    return "\n".join(
        [
            f"verdict: {v.verdict}",
            *counts,
            f"speedup: {format_interval(v.speedup)}",
            f"reference: {v.reference}",
        ]
        + ([f"change: {format_interval(v.change)}"] if v.change else [])
        + ([f"result: {v.result}"] if v.result else [])
        + [f"note: {x}" for x in v.notes]
    )


def format_junit(report: GateReport) -> str:
    """JUnit XML: one test case per checked mode; FAIL fails it, and INCONCLUSIVE when it
    counts as fail (``--inconclusive fail``); the suite's properties say which."""
    suite = ET.Element(
        "testsuite",
        name="gpubench.gate",
        tests=str(len(report.verdicts)),
        failures=str(len(report.failures)),
        errors="0",
        skipped=str(sum(v.verdict == SKIP for v in report.verdicts)),
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="inconclusive", value=report.inconclusive)
    seen: dict[tuple[str, str], int] = {}
    for v in report.verdicts:
        n = seen[(v.case, v.mode)] = seen.get((v.case, v.mode), 0) + 1
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"gpubench.gate.{v.case}",
            name=v.mode if n == 1 else f"{v.mode} [{n}]",
            time="0",
        )
        if report.counts_as_failure(v):
            failure = ET.SubElement(case, "failure", message=v.message or v.verdict, type=v.verdict)
            failure.text = _detail(report, v)
        elif v.verdict == SKIP:
            ET.SubElement(case, "skipped", message=v.message or "skipped")
        else:
            ET.SubElement(case, "system-out").text = (
                v.message + "\n" if v.message else ""
            ) + _detail(report, v)
    root = ET.Element("testsuites", name="gpubench gate")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
