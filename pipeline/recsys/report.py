"""The "Details" part of a recommendation run's gate report: rows, stage metrics vs baselines,
ranker, retrieval, diversity and the batch, as tables and short lists (the verdict and the gate
table come first, from pipeline/gates/report.py)."""

from __future__ import annotations

import textwrap
from typing import Any


def render_summary(report: dict[str, Any]) -> str:
    """The Markdown body after the gate table: rows, stage metrics vs baselines, ranker, diversity, batch."""
    rows = report["rows"]
    lines = [
        "",
        "---",
        "",
        "## Details",
        "",
        "### Run",
        "",
        f"- rows: {rows['in']:,} in, {rows['quarantined']:,} quarantined by the contract, "
        f"{rows['examples_quarantined']:,} quarantined when placing them "
        f"({', '.join(f'{k}: {v:,}' for k, v in rows['quarantine_reasons'].items()) or 'none'})",
        f"- split `{report['split'].get('method', 'global_time')}` (valid from {report['split']['valid_start']}, "
        f"test from {report['split']['test_start']}): "
        f"{rows['examples_train']:,} train, {rows['examples_valid']:,} valid, {rows['examples_test']:,} test rows",
        f"- {rows['examples_users']:,} users, {rows['examples_items']:,} items; "
        f"{rows['examples_test_users']:,} warm test users ({rows['examples_cold_test_users']:,} cold, not scored)",
        *_evaluated(report.get("evaluated")),
        *_refit(report.get("refit")),
        "",
        "### Test metrics (full catalogue, seen items excluded)",
        "",
    ]
    k = report["retrieval"]["candidates_per_user"]
    names = ["hit@10", "ndcg@10", "mrr@10", "recall@10", "coverage@10", f"recall@{k}"]
    lines += ["| list | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for stage, values in report["stages"].items():
        cells = [_cell(values.get(n)) for n in names]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    lines += ["", f"recall@{k} of `final`/`ranked_before_rerank` is the merged candidate list's (`candidates`)."]
    lines += ["", "### Versus same-run baselines", ""]
    for name, margins in report["baselines"].items():
        for metric, m in margins.items():
            verdict = "beats" if m["beats"] else "does NOT beat"
            lines.append(f"- {metric}: pipeline {m['pipeline']:.4f} {verdict} {name} {m['baseline']:.4f}")
    ranker = report["ranker"]
    lines += ["", "### Ranker", "", f"- used: {ranker.get('used')} ({ranker.get('reason')})"]
    if "valid_ndcg@10_ranker" in ranker:
        lines.append(
            f"- held-out validation NDCG@10: ranker {ranker['valid_ndcg@10_ranker']:.4f} vs retrieval order "
            f"{ranker['valid_ndcg@10_retrieval_order']:.4f}"
        )
        lines.append(f"- features ({len(ranker['features'])}): " + "\n  ".join(_wrap(", ".join(ranker["features"]))))
    failed = report["retrieval"]["failed_sources"]
    lines += [
        "",
        "### Retrieval",
        "",
        f"- sources (round-robin, weights): {_sources(report['retrieval'])}; {k} candidates per user",
        f"- failed sources: {failed or 'none'}",
        *_baseline_fits(report.get("baseline_fits") or {}),
    ]
    if report["diversity"]:
        d = report["diversity"]
        lines += [
            "",
            f"### Diversity ({d['attribute']}) in the top 10",
            "",
            f"| {d['attribute']} | share before re-ranking | after |",
            "|---|---:|---:|",
            *(
                f"| {group} | {share:.4f} | {d['final_share'].get(group, 0.0):.4f} |"
                for group, share in d["ranked_share"].items()
            ),
            "",
            f"- lists re-ranked: {d['rerank']['lists']:,}, skipped: {d['rerank']['skipped']}, "
            f"slots filled by the exposure guarantee: {d['rerank']['filled_by_guarantee']:,}",
            *_rerank_cost(report["stages"]),
        ]
    if report["scoring"]:
        s = report["scoring"]
        lines += ["", f"- batch: top-{s['top_k']} for {s['users']:,} users ({s['rows']:,} rows): `{s['parquet']}`"]
    return "\n".join(lines) + "\n"


def _rerank_cost(stages: dict[str, dict[str, float]]) -> list[str]:
    """The re-ranker's accuracy cost: NDCG@10 of the same users' lists without and with it (same run)."""
    before = (stages.get("ranked_before_rerank") or {}).get("ndcg@10")
    after = (stages.get("final") or {}).get("ndcg@10")
    if before is None or after is None:
        return []
    change = f" ({(after - before) / before:+.1%})" if before else ""
    return [f"- accuracy cost of re-ranking: NDCG@10 {before:.4f} without, {after:.4f} with{change}"]


def _wrap(text: str, width: int = 150) -> list[str]:
    """Long lists as several lines of a Markdown list item (continuation lines indented)."""
    return textwrap.wrap(text, width) or [""]


def _cell(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _evaluated(info: dict[str, Any] | None) -> list[str]:
    if not info or info["sufficient"]:
        return []
    return [
        f"- **insufficient**: metrics are over {info['users']:,} users, fewer than evaluation.min_users "
        f"{info['min_users']:,}: their gates report insufficient data"
    ]


def _refit(info: dict[str, Any] | None) -> list[str]:
    if not info:
        return []
    if info["parts"] == "none":
        return ["- served model: the one the gates measured (evaluation.refit: none)"]
    return [f"- served model: {info['what']}", f"  - refit: {info['refit']}; kept: {info['kept']}"]


def _sources(retrieval: dict[str, Any]) -> str:
    weights = retrieval.get("weights") or [1] * len(retrieval["sources"])
    return ", ".join(f"{name} {w}" for name, w in zip(retrieval["sources"], weights, strict=True))


def _baseline_fits(fits: dict[str, dict[str, Any]]) -> list[str]:
    """Same-run baselines: fit seconds, or why one was skipped."""
    if not fits:
        return []
    shown = [
        f"{n} {f['fit_seconds']:.1f} s" if "fit_seconds" in f else f"{n} skipped ({f['skipped']})"
        for n, f in fits.items()
    ]
    return ["- same-run baselines, fit on the same train part: " + "\n  ".join(_wrap("; ".join(shown)))]
