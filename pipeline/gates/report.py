"""The gate report a reviewer reads in a minute: verdict first, then one table of the gates.

The top of `gate_report.md` (about 30 lines at most) answers "was it promoted, and why":
a one-line verdict, the decided gates as a table (value with its interval, rule and the number
it was decided on, champion/baseline value, the evidence: rows and positives, result), the gates
that were not computed or had too little evidence listed on their own with what would give
enough (neither is a pass nor a fail to be read past, and neither is listed as passed), and the
bundle. Everything else (every metric, model
selection, calibration, lift, fairness and causal tables) follows under "Details".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pipeline.gates.evaluate import GateReport, GateResult
from pipeline.reports.format import fmt_count, fmt_number

MAX_REASONS = 2  # failed gates named in the verdict line; the table has all of them
NONE = "—"


def render_gates(
    report: GateReport,
    title: str,
    promotion: str | None = None,
    promoted: bool | None = None,
    facts: Iterable[str] = (),
) -> str:
    """Title, verdict line, gate table, not-computed gates, and `facts` (short bullets: bundle, champion)."""
    computed = [r for r in report.results if not _not_computed(r)]
    missing = [r for r in report.results if _not_computed(r)]
    lines = [f"# {title}", "", verdict_line(report, promotion, promoted), ""]
    if computed:
        lines += [
            "| gate | value [interval] | rule | champion / baseline | evidence | result |",
            "|---|---:|---|---:|---|---|",
            *(_row(r) for r in computed),
        ]
        left_out = [r for r in computed if r.excluded]
        if left_out:  # the groups a fairness gate did not judge, by name, with their point estimates
            lines += ["", *(_left_out_line(r) for r in left_out)]
    else:
        lines.append("No gate could be computed.")
    if missing:
        lines += [
            "",
            f"**Not decided ({len(missing)})**: not computed, or too little evidence to pass or fail.",
            "",
            "| gate | value [interval] | status | why | effect |",
            "|---|---:|---|---|---|",
            *(_missing_row(r) for r in missing),
        ]
    notes = [_left_out_line(r) for r in missing if r.excluded]
    notes += [f"- {_name(r)}: enough evidence would need {_short(r.suggestion, 120)}" for r in missing if r.suggestion]
    if notes:
        lines += ["", *notes]
    facts = list(facts)
    if facts:
        lines += ["", *(f"- {fact}" for fact in facts)]
    return "\n".join(lines) + "\n"


def verdict_line(report: GateReport, promotion: str | None = None, promoted: bool | None = None) -> str:
    """One line: PROMOTED / NOT promoted (or PASSED / FAILED without a promotion decision) and why."""
    blocking_failed = [r for r in report.results if r.blocking and not r.passed]
    other_failed = [r for r in report.results if not r.blocking and not r.passed and not _not_computed(r)]
    other_missing = [r for r in report.results if not r.blocking and _not_computed(r)]
    blocking = sum(r.blocking for r in report.results)
    other = len(report.results) - blocking
    if blocking_failed:
        why = "; ".join(_short(r.reason, 80) for r in blocking_failed[:MAX_REASONS])
        more = len(blocking_failed) - MAX_REASONS
        why += f" (+{more} more)" if more > 0 else ""
        head = "**NOT promoted**" if promoted is not None else "**FAILED**"
        return f"{head}: {len(blocking_failed)} of {blocking} blocking gates failed: {why}"
    parts = [f"{len(other_failed)} non-blocking failed"] if other_failed else []
    parts += [f"{len(other_missing)} non-blocking not decided"] if other_missing else []
    note = f"; {' and '.join(parts)}, see below" if parts else ""
    passed = f"all {blocking} blocking gates passed" + (f" ({len(report.results)} gates in all)" if other else "")
    if promoted is None:
        return f"**PASSED**: {passed}{note}"
    if promoted:
        return f"**PROMOTED** to champion: {passed}{note}"
    held = promotion or "held"
    if held.startswith("gates passed, "):  # the promotion wording repeats the gates' verdict: say it once
        held = held.removeprefix("gates passed, ")
    return f"**HELD**, not promoted: {passed}; {held}{note}"


def _not_computed(r: GateResult) -> bool:
    return r.insufficient or r.value is None


def _name(r: GateResult) -> str:
    return r.name if r.metric == r.name else f"{r.name} (`{r.metric}`)"


def _row(r: GateResult) -> str:
    result = "pass" if r.passed else ("**FAIL**" if r.blocking else "fail")
    result += "" if r.blocking else ", non-blocking"
    if r.comparable is False:  # vs champion: the champion could not be scored on these rows
        reference = "not comparable"
    elif r.reference is not None:
        reference = fmt_number(r.reference)
        reference += f" (same {fmt_count(r.reference_rows)} {r.reference_split} rows)" if r.reference_rows else ""
    else:  # a relative gate with nothing to compare with yet passes and says so
        reference = "none yet" if "nothing to compare" in r.reason else NONE
    return f"| {_name(r)} | {_value(r)} | {r.rule} | {reference} | {_evidence(r)} | {result} |"


def _missing_row(r: GateResult, width: int = 200) -> str:
    """A not-decided gate's row, its reason cut to keep the line within `width` (details: run_report.json)."""
    head, tail = f"| {_name(r)} | {_value(r)} | {_status(r)} | ", f" | {_effect(r)} |"
    return head + _short(r.reason, max(60, width - len(head) - len(tail))) + tail


def _value(r: GateResult) -> str:
    """The value and, when there is one, its interval: `0.0510 [0.0300, 0.1790]`."""
    if r.value is None:
        return NONE
    shown = fmt_number(r.value)
    if r.low is not None and r.high is not None:
        shown += f" [{fmt_number(r.low)}, {fmt_number(r.high)}]"
    return shown


def _evidence(r: GateResult) -> str:
    """What the value rests on: rows and positives (CV: the folds), and groups left out for size."""
    parts = []
    if r.rows is not None:
        parts.append(f"{fmt_count(r.rows)} {'train rows, CV' if r.source == 'cv' else 'rows'}")
    elif r.source == "cv":
        parts.append("CV folds")
    if r.positives is not None:
        parts.append(f"{fmt_count(r.positives)} positive")
    if r.excluded:
        parts.append(f"{len(r.excluded)} group{'s' if len(r.excluded) > 1 else ''} left out (too small)")
    return ", ".join(parts) or NONE


def _left_out_line(r: GateResult, width: int = 200) -> str:
    head = f"- {_name(r)}: left out for size: "
    return head + _short(_left_out(r), width - len(head))


def _left_out(r: GateResult, limit: int = 4) -> str:
    shown = [f"{g['group']} {fmt_number(g.get('value'))} (n={fmt_count(g.get('n'))})" for g in r.excluded[:limit]]
    return ", ".join(shown) + (f" and {len(r.excluded) - limit} more" if len(r.excluded) > limit else "")


def _status(r: GateResult) -> str:
    if not r.insufficient:
        return "not computed"
    return "insufficient evidence" if r.value is not None else "insufficient data"


def _effect(r: GateResult) -> str:
    return "**blocks promotion**" if r.blocking else "does not block"


def _short(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- details of a tabular (churn) run


def render_run_details(report: Mapping[str, Any], exclude: Iterable[str] = ()) -> str:
    """The "Details" part of a tabular run's report: rows, metrics, selection, calibration, lift, outputs."""
    lines = ["", "---", "", "## Details", "", "### Run", ""]
    rows = report.get("rows") or {}
    parts = ", ".join(f"{name} {fmt_count(n)}" for name, n in rows.items() if name not in ("in", "quarantined"))
    if rows:
        lines.append(f"- rows: {fmt_count(rows.get('in'))} in, {fmt_count(rows.get('quarantined'))} quarantined")
        lines += [f"- splits: {parts}"] if parts else []
    lines.append(f"- spec sha256 `{str(report.get('spec_sha256', ''))[:12]}`, run directory `{report.get('run_dir')}`")
    skip = set(exclude)
    metrics = {k: v for k, v in (report.get("metrics") or {}).items() if k not in skip}
    if metrics:
        lines += ["", "### Test metrics", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {fmt_number(value)} |" for name, value in metrics.items()]
    lines += _selection(report)
    lines += _calibration(report.get("calibration") or [])
    lines += _lift(report.get("lift") or [])
    lines += _outputs(report.get("scoring") or {})
    return "\n".join(lines) + "\n"


def _selection(report: Mapping[str, Any]) -> list[str]:
    rows = report.get("selection") or []
    if not rows:
        return []
    metric = report.get("selection_metric", "auc")
    return [
        "",
        "### Model selection (cross-validation)",
        "",
        f"{len(rows[0]['folds'])}-fold cross-validated {metric} on the training split; "
        "the best mean is trained on all of it and evaluated on test.",
        "",
        f"| candidate | family | mean {metric} | std | selected |",
        "|---|---|---:|---:|---|",
        *(
            f"| {r['source']} | {r['family']} | {r['mean']:.4f} | {r['std']:.4f} | {'yes' if r['selected'] else ''} |"
            for r in rows
        ),
        *_search(rows, metric),
    ]


def _search(rows: list[Mapping[str, Any]], metric: str) -> list[str]:
    """Every `search` point with its CV mean; each candidate's row above is its best (docs/adr/0032)."""
    searched = [r for r in rows if r.get("search")]
    if not searched:
        return []
    lines = ["", f"| candidate | search point | mean {metric} | std | best |", "|---|---|---:|---:|---|"]
    for r in searched:
        for point in r["search"]:
            text = ", ".join(f"{k} {v}" for k, v in point["params"].items())
            best = "yes" if point["params"] == r.get("params") else ""
            lines.append(f"| {r['source']} | {text} | {point['mean']:.4f} | {point['std']:.4f} | {best} |")
    return lines


def _calibration(bins: list[Mapping[str, Any]]) -> list[str]:
    if not bins:
        return []
    lines = ["", "### Calibration (test split)", "", "| score bin | mean predicted | observed rate | rows |"]
    lines.append("|---|---:|---:|---:|")
    for b in bins:
        span = f"{b.get('lower', 0):.1f}–{b.get('upper', 0):.1f}"
        lines.append(
            f"| {span} | {fmt_number(b.get('mean_predicted'))} | {fmt_number(b.get('observed_rate'))} "
            f"| {fmt_count(b.get('count'))} |"
        )
    return lines


def _lift(deciles: list[Mapping[str, Any]]) -> list[str]:
    if not deciles:
        return []
    lines = ["", "### Lift by score decile (test split)", ""]
    lines += ["| decile | rows | positives | rate | lift | cumulative capture |", "|---:|---:|---:|---:|---:|---:|"]
    for d in deciles:
        lines.append(
            f"| {d.get('decile')} | {fmt_count(d.get('count'))} | {fmt_count(d.get('positives'))} "
            f"| {fmt_number(d.get('rate'))} | {fmt_number(d.get('lift'), 3)} "
            f"| {fmt_number(d.get('cumulative_capture'), 3)} |"
        )
    return lines


def _outputs(scoring: Mapping[str, Any]) -> list[str]:
    files = {k: v for k, v in scoring.items() if isinstance(v, str) and k.endswith(("_csv", "_parquet"))}
    if not files:
        return []
    return ["", "### Outputs", "", *(f"- {name}: `{path}`" for name, path in files.items())]
