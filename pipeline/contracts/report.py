"""The validation report: one JSON document and its Markdown rendering.

Both come from the same dict, so the file a script reads and the page a person
reads (and the Prefect artifact the UI shows) can never disagree.
"""

from __future__ import annotations

from typing import Any

from pipeline.contracts.psi import PsiResult
from pipeline.contracts.result import ContractResult

STATUS_ORDER = {"ALERT": 0, "WARNING": 1, "insufficient_data": 2, "OK": 3}


def drift_verdict(drift: dict[str, PsiResult]) -> list[str]:
    """Reasons the statistical check failed: every column at ALERT, unit changes named."""
    reasons = []
    for result in drift.values():
        if result.status == "ALERT":
            change = result.suspected_unit_change
            unit = f" — looks like a unit change ({change})" if change else ""
            reasons.append(f"{result.column}: PSI {result.psi:.2f} at ALERT vs the reference{unit}")
    return reasons


def build_report(
    result: ContractResult,
    drift: dict[str, PsiResult],
    reference: str,
    derived: dict[str, dict[str, Any]],
    meta: dict[str, Any],
) -> dict[str, Any]:
    """The JSON report: counts, per-check and per-column failures, drift, verdict."""
    drift_reasons = drift_verdict(drift)
    reasons = [r for r in [result.policy_reason] if r] + drift_reasons
    return {
        **meta,
        "status": "ok" if not reasons else "failed",
        "reasons": reasons,
        "contract": result.to_dict(),
        "drift": {
            "reference": reference,
            "columns": {name: r.to_dict() for name, r in sorted(drift.items(), key=_drift_order)},
        },
        "derived_features": derived,
    }


def _drift_order(item: tuple[str, PsiResult]) -> tuple[int, float]:
    return STATUS_ORDER.get(item[1].status, 9), -item[1].psi


def render_markdown(report: dict[str, Any]) -> str:
    contract = report["contract"]
    verdict = "PASSED" if report["status"] == "ok" else "FAILED"
    lines = [
        f"# Validation report — {report.get('spec_name', '')}",
        "",
        f"**{verdict}** — contract `{contract['contract']}` (engine: {contract['engine']})",
        "",
    ]
    lines += [f"- {reason}" for reason in report["reasons"]]
    lines += [
        "",
        "| rows in | accepted | quarantined | quarantine fraction |",
        "|---:|---:|---:|---:|",
        f"| {contract['rows_in']:,} | {contract['rows_accepted']:,} | {contract['rows_quarantined']:,} "
        f"| {contract['quarantine_fraction']:.2%} |",
        "",
    ]
    if contract["schema_problems"]:
        lines += ["## Schema problems", "", "| column | problem | detail |", "|---|---|---|"]
        lines += [f"| {p['column']} | {p['problem']} | {p['detail']} |" for p in contract["schema_problems"]]
        lines.append("")
    if contract["check_counts"]:
        lines += ["## Failed checks", "", "| column | check | rows |", "|---|---|---:|"]
        for key, count in sorted(contract["check_counts"].items(), key=lambda kv: -kv[1]):
            column, _, check = key.rpartition(":")
            lines.append(f"| {column} | {check} | {count:,} |")
        lines.append("")
    if contract["quarantine_examples"]:
        lines += ["## Quarantined rows (first examples)", ""]
        for example in contract["quarantine_examples"][:10]:
            lines.append(f"- row {example.get('_keel_row')}: {example.get('_keel_reasons')}")
        lines.append("")
    drift = report["drift"]["columns"]
    if drift:
        lines += [
            f"## Drift vs reference ({report['drift']['reference']})",
            "",
            "| column | PSI | status | note |",
            "|---|---:|---|---|",
        ]
        for name, r in drift.items():
            note = r.get("message") or ""
            lines.append(f"| {name} | {r['psi']:.3f} | {r['status']} | {note} |")
        lines.append("")
    if report["derived_features"]:
        lines += ["## Derived features", "", "| feature | inputs | non-finite rows |", "|---|---|---:|"]
        for name, info in report["derived_features"].items():
            count = "skipped: an input column is missing" if info["non_finite"] is None else f"{info['non_finite']:,}"
            lines.append(f"| {name} | {', '.join(info['inputs'])} | {count} |")
        lines.append("")
    lines += _data_docs(report.get("great_expectations") or {})
    outputs = report.get("outputs", {})
    if outputs:
        lines += ["## Outputs", ""] + [f"- {name}: `{path}`" for name, path in outputs.items()] + [""]
    return "\n".join(lines)


def _data_docs(gx: dict[str, Any]) -> list[str]:
    """One line on the Data Docs: which rows Great Expectations saw and its verdict (Keel's, by construction)."""
    if "success" not in gx:
        return [f"Data Docs: {gx['note']}", ""] if gx.get("note") else []
    rows_in, sample = gx.get("rows_in"), gx.get("sample_rows", 0)
    seen = f"the same {sample:,} rows" if sample == rows_in else f"a seeded sample of {sample:,} of {rows_in:,} rows"
    verdict = "Succeeded" if gx["success"] else f"Failed ({len(gx.get('failed_expectations', []))} expectations)"
    return [f"Data Docs (Great Expectations): {verdict} on {seen}, with the contract's rules and tolerance.", ""]
