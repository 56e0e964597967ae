"""Text of the history commands: what ``history add`` did, and ``history check``'s answer."""

from __future__ import annotations

from gpubench.history import Added, HistoryCheck, Series


def format_added(added: Added, store: str) -> str:
    lines = list(added.notes)
    text = f"{store}: {added.added} entr{'y' if added.added == 1 else 'ies'} added"
    if added.already:
        text += f", {added.already} already there"
    if added.pruned:
        text += f", {added.pruned} oldest dropped (the cap per series)"
    return "\n".join([*lines, text]) + "\n"


def _series_head(series: Series) -> str:
    usable = len(series.usable)
    skipped = len(series.entries) - usable
    kept = f", {skipped} not used (other load, result differs or no speedup)" if skipped else ""
    return (f"{series.mode} | {series.work.describe()} | {series.testbed.describe()}: "
            f"{usable} runs{kept}")


def format_history_check(check: HistoryCheck) -> str:
    """Each series with its change points; the regressions; the verdict line."""
    lines = list(check.notes)
    for series in check.series:
        lines.append(_series_head(series))
        if not series.changes:
            level = f" (level {series.segments[-1].level:.2f}x)" if series.segments else ""
            lines.append(f"  no change point{level}")
        for change in series.changes:
            kind = "drop" if change.drop else "improvement"
            lines.append(
                f"  {kind} from commit {change.commit or '?'} ({change.time}): "
                f"{change.before:.2f}x -> {change.after:.2f}x ({change.ratio - 1:+.1%}), "
                f"p = {change.p_value:.2g}"
            )
    failing = check.regressions
    for series in failing:
        last = series.latest_change
        assert last is not None
        lines.append(f"REGRESSION: {series.mode} fell {1 - last.ratio:.1%} from commit "
                     f"{last.commit or '?'} (more than --max-drop {check.max_drop:.0%})")
    verdict = "FAILED" if failing else "PASSED"
    lines.append(f"history check {verdict}: {len(check.series)} series, "
                 f"{sum(len(s.changes) for s in check.series)} change point(s), "
                 f"{len(failing)} regression(s)")
    return "\n".join(lines) + "\n"
