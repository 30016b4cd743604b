"""Stage evaluation: from the request log (+ outcomes), decide advance / hold / wait for approval / roll back.

Why pure functions over frames with the clock as a parameter: the same code runs in the
daily Prefect flow (flows/rollout.py, real clock), in the simulator (a virtual clock, days
in seconds) and in unit tests (hand-built frames). Rows belong to a stage by the log's own
`rollout_id` and `stage` columns, not by timestamps, so a virtual clock only decides whether
the stage has lasted long enough. Deciding and applying are separate: `evaluate_stage`
reads, `apply_decision` writes through pipeline/rollout/state.py (and its refusals).

Decision order (Argo Rollouts: an analysis failure aborts; "inconclusive" pauses, never promotes):
1. a measured check failed -> rollback (evidence of a business-metric drop beyond `max_relative_drop`,
   stats.py's margin test at this look's boundary, is a failure wherever the stage routes traffic,
   listed in `checks` or not);
2. stage too young or too few requests -> hold;
3. a listed check could not be measured yet (too few samples, no outcomes, a fairness group below
   its minimum), or the listed metric is inconclusive (no evidence of non-inferiority yet) -> hold,
   also past the stage's duration (the report says what sample would decide; an operator may decide);
4. the next stage needs an approval -> wait for it (a recorded rejection rolls back);
5. otherwise advance (past the last stage: promote the challenger).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.rollout.fairness_checks import FairnessContext, evaluate_check, is_fairness_check
from pipeline.rollout.metric_check import MIN_EVIDENCE, metric_check
from pipeline.rollout.record import RolloutState
from pipeline.rollout.stats import two_proportion_test as two_proportion_test  # moved to stats.py; re-exported
from pipeline.spec.schema import RolloutSpec
from pipeline.spec.types import parse_duration

KNOWN_CHECKS = ("error_rate", "p99_latency_ms", "rank_correlation")
DECISIONS = ("advance", "hold", "await_approval", "rollback", "none")


@dataclass
class SideStats:
    requests: int = 0
    errors: int = 0
    error_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    metric_n: int = 0
    metric_successes: float = 0.0
    metric: float | None = None


@dataclass
class Check:
    name: str
    passed: bool | None  # None: not measured yet (too few samples)
    value: float | None
    threshold: float | None
    detail: str
    listed: bool  # in the stage's `checks` (must pass before advancing)


@dataclass
class StageReport:
    name: str
    rollout_id: str
    stage: str
    stage_index: int
    traffic: float
    status: str
    evaluated_at: str
    stage_age_s: float
    duration_s: float
    samples: int
    min_samples: int
    sides: dict[str, SideStats]
    metric: dict[str, Any]
    rank_correlation: dict[str, Any]
    checks: list[Check]
    decision: str
    reason: str
    next_stage: str | None = None
    approval: dict[str, Any] | None = None
    applied: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def to_markdown(self) -> str:
        return render_markdown(self)


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf become None, numpy scalars plain Python."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------- measurements


def stage_rows(requests: pd.DataFrame, state: RolloutState) -> pd.DataFrame:
    """This rollout's rows at this stage; requests refused before a model saw them (invalid, unavailable) left out."""
    if requests.empty:
        return requests
    mask = (requests["rollout_id"] == state.rollout_id) & (requests["stage"] == state.stage)
    return requests[mask & requests["status"].isin(["ok", "error"])]


def side_stats(rows: pd.DataFrame) -> SideStats:
    if rows.empty:
        return SideStats()
    errors = int((rows["status"] == "error").sum())
    latency = rows["latency_ms"].to_numpy(dtype=float)
    return SideStats(
        requests=len(rows),
        errors=errors,
        error_rate=errors / len(rows),
        p50_ms=float(np.percentile(latency, 50)),
        p99_ms=float(np.percentile(latency, 99)),
    )


def _list_rank_correlation(a: list[str], b: list[str]) -> float | None:
    """Spearman between two ranked item lists over their union; an item missing from a list ranks just below it."""
    union = list(dict.fromkeys([*a, *b]))
    if len(union) < 2:
        return None
    ra = {item: i for i, item in enumerate(a)}
    rb = {item: i for i, item in enumerate(b)}
    x = [ra.get(item, len(a)) for item in union]
    y = [rb.get(item, len(b)) for item in union]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return 1.0 if x == y else None
    return float(stats.spearmanr(x, y).statistic)


def rank_correlation(rows: pd.DataFrame) -> dict[str, Any]:
    """Champion vs shadow challenger outputs, same requests: scores across entities, or item lists per request."""
    shadow = rows[rows["shadow"].fillna(False).astype(bool) & (rows["status"] == "ok")]
    champion = rows[
        (rows["side"] == "champion") & ~rows["shadow"].fillna(False).astype(bool) & (rows["status"] == "ok")
    ]
    pairs = champion.merge(shadow, on="request_id", suffixes=("_champion", "_challenger"))
    if "items_champion" in pairs.columns and pairs["items_champion"].notna().any():
        per_request = [
            _list_rank_correlation(list(a), list(b))
            for a, b in zip(pairs["items_champion"], pairs["items_challenger"], strict=True)
            if a is not None and b is not None
        ]
        values = [v for v in per_request if v is not None]
        overlap = [
            len(set(a) & set(b)) / max(len(a), 1)
            for a, b in zip(pairs["items_champion"], pairs["items_challenger"], strict=True)
            if a is not None and b is not None
        ]
        return {
            "kind": "per_request_item_lists",
            "pairs": len(values),
            "spearman": float(np.mean(values)) if values else None,
            "kendall": None,
            "overlap": float(np.mean(overlap)) if overlap else None,
        }
    pairs = pairs.dropna(subset=["probability_champion", "probability_challenger"])
    if len(pairs) < 3 or pairs["probability_champion"].nunique() < 2 or pairs["probability_challenger"].nunique() < 2:
        return {"kind": "scores_across_entities", "pairs": len(pairs), "spearman": None, "kendall": None}
    x, y = pairs["probability_champion"].to_numpy(), pairs["probability_challenger"].to_numpy()
    return {
        "kind": "scores_across_entities",
        "pairs": len(pairs),
        "spearman": float(stats.spearmanr(x, y).statistic),
        "kendall": float(stats.kendalltau(x, y).statistic),
    }


# ---------------------------------------------------------------- the decision


def evaluate_stage(
    state: RolloutState,
    spec: RolloutSpec,
    requests: pd.DataFrame,
    outcomes: pd.DataFrame,
    now: datetime,
    fairness: FairnessContext | None = None,
) -> StageReport:
    """Measure the current stage and decide; writes nothing. `fairness`: what fairness checks need (else unmeasured)."""
    stage = state.stages[state.stage_index]
    listed = list(stage.get("checks") or [])
    rows = stage_rows(requests, state)
    shadow_mask = rows["shadow"].fillna(False).astype(bool) if not rows.empty else pd.Series(dtype=bool)
    served = rows[~shadow_mask] if not rows.empty else rows
    in_shadow = state.traffic <= 0.0
    challenger_rows = rows[shadow_mask] if in_shadow else served[served["side"] == "challenger"]
    sides = {
        "champion": side_stats(served[served["side"] == "champion"] if not served.empty else served),
        "challenger": side_stats(challenger_rows),
    }
    # the stage's evidence: in shadow the requests the challenger scored (its shadow_share), else all answered
    counted = challenger_rows if in_shadow else served
    samples = int(counted["request_id"].nunique()) if not counted.empty else 0
    started = datetime.fromisoformat(state.stage_started_at)
    age_s = (now - started).total_seconds()
    duration_s = parse_duration(stage.get("duration", "1d")).total_seconds()
    immediate, evaluation = spec.rollback.immediate, spec.rollback.evaluation
    checks: list[Check] = []
    ch = sides["challenger"]
    enough = ch.requests >= MIN_EVIDENCE

    def add(name: str, passed: bool | None, value: float | None, threshold: float | None, detail: str) -> None:
        checks.append(Check(name, passed, value, threshold, detail, name in listed))

    if "error_rate" in listed or immediate.error_rate is not None:
        limit = immediate.error_rate
        if limit is None or not enough:
            add("error_rate", None, ch.error_rate, limit, f"{ch.requests} challenger requests (< {MIN_EVIDENCE})")
        else:
            ok = ch.error_rate <= limit
            add("error_rate", ok, ch.error_rate, limit, f"challenger {ch.error_rate:.2%} vs limit {limit:.2%}")
    if "p99_latency_ms" in listed or immediate.p99_latency_ms is not None:
        limit = immediate.p99_latency_ms
        if limit is None or not enough or ch.p99_ms is None:
            add("p99_latency_ms", None, ch.p99_ms, limit, f"{ch.requests} challenger requests (< {MIN_EVIDENCE})")
        else:
            ok = ch.p99_ms <= limit
            add("p99_latency_ms", ok, ch.p99_ms, limit, f"challenger p99 {ch.p99_ms:.1f} ms vs limit {limit:g} ms")
    correlation = rank_correlation(rows) if in_shadow and not rows.empty else {"pairs": 0, "spearman": None}
    if in_shadow and ("rank_correlation" in listed) and evaluation.min_rank_correlation is not None:
        rho, limit = correlation.get("spearman"), evaluation.min_rank_correlation
        if rho is None or correlation["pairs"] < MIN_EVIDENCE:
            add("rank_correlation", None, rho, limit, f"{correlation['pairs']} champion/shadow pairs")
        else:
            add("rank_correlation", rho >= limit, rho, limit, f"Spearman {rho:.3f} vs minimum {limit:.2f}")
    t = age_s / duration_s if duration_s > 0 else 1.0  # information time: stage age / duration (ADR 0023)
    metric = metric_check(served, outcomes, evaluation, 0.0 < state.traffic < 1.0, t, sides, add)
    answered = served[(served["side"] == "challenger") & (served["status"] == "ok")] if not served.empty else served
    for name in listed:
        if is_fairness_check(name) and fairness is not None:
            verdict = evaluate_check(name, answered, outcomes, fairness)
            add(name, verdict["passed"], verdict["value"], verdict["threshold"], verdict["detail"])
        elif name not in KNOWN_CHECKS and name != evaluation.metric:
            add(
                name,
                None,
                None,
                None,
                f"not measured by the stage evaluation (it measures {', '.join(KNOWN_CHECKS)}, {evaluation.metric})",
            )
    # the in-service trigger may measure what the log sees too: both are failures, not only listed ones
    failed = [c for c in checks if c.passed is False]
    pending = [c for c in checks if c.passed is None and c.listed]
    following = state.stages[state.stage_index + 1] if state.stage_index + 1 < len(state.stages) else None
    report = StageReport(
        name=state.name,
        rollout_id=state.rollout_id,
        stage=state.stage,
        stage_index=state.stage_index,
        traffic=state.traffic,
        status=state.status,
        evaluated_at=now.isoformat(),
        stage_age_s=age_s,
        duration_s=duration_s,
        samples=samples,
        min_samples=int(stage.get("min_samples") or 0),
        sides=sides,
        metric=metric,
        rank_correlation=correlation,
        checks=checks,
        decision="hold",
        reason="",
        next_stage=following["name"] if following else None,
    )
    if not state.live:
        report.decision, report.reason = "none", f"rollout is {state.status}"
    elif failed:
        report.decision = "rollback"
        report.reason = "; ".join(f"{c.name}: {c.detail}" for c in failed)
    elif age_s < duration_s:
        report.reason = f"stage {state.stage} has run {_human(age_s)} of {_human(duration_s)}"
    elif samples < report.min_samples:
        report.reason = f"stage {state.stage} has {samples} of {report.min_samples} requests"
    elif pending:
        undecided = [c for c in pending if c.name == evaluation.metric and metric.get("verdict") == "inconclusive"]
        unmeasured = [c for c in pending if c not in undecided]
        parts = ["not measured yet: " + "; ".join(f"{c.name} ({c.detail})" for c in unmeasured)] if unmeasured else []
        parts += [f"inconclusive: {c.name} ({c.detail})" for c in undecided]
        report.reason = (
            "; ".join(parts)
            + f" — stage {state.stage} has run its {_human(duration_s)}: holding at this share until measured"
            " (or decide by hand: keel rollout advance / rollback)"
        )  # fmt: skip
    else:
        approval = find_approval(state)
        report.approval = approval
        if following is not None and following.get("approval") and approval is None:
            report.decision = "await_approval"
            report.reason = f"stage {following['name']} needs an approval"
        elif approval is not None and approval["decision"] == "reject":
            report.decision = "rollback"
            report.reason = f"rejected by {approval['by']}: {approval.get('comment') or 'no comment'}"
        else:
            report.decision = "advance"
            target = following["name"] if following else "promotion (100%, challenger becomes champion)"
            report.reason = f"checks passed after {_human(age_s)} and {samples} requests: on to {target}"
    return report


def find_approval(state: RolloutState) -> dict[str, Any] | None:
    """The latest approval or rejection recorded for entering the next stage from this one (None: nobody answered)."""
    if state.stage_index + 1 >= len(state.stages):
        return None
    following = state.stages[state.stage_index + 1]["name"]
    for event in reversed(state.events):
        if event.get("action") in ("advance", "start") and event.get("stage") == state.stage:
            return None  # answers given before this stage began do not count
        if (
            event.get("action") == "approval"
            and event.get("for_stage") == following
            and event.get("stage") == state.stage
        ):
            return {k: event.get(k) for k in ("decision", "by", "comment", "time", "via")}
    return None


def _human(seconds: float) -> str:
    if abs(seconds) >= 86400:
        return f"{seconds / 86400:.1f}d"
    if abs(seconds) >= 3600:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds:.0f}s"


# ---------------------------------------------------------------- the report


def render_markdown(report: StageReport) -> str:
    def fmt(value: Any, spec: str = ".4g") -> str:
        return "-" if value is None else format(value, spec)

    lines = [
        f"# Rollout {report.rollout_id} of {report.name}: stage {report.stage} ({report.traffic:.0%})",
        "",
        f"**Decision: {report.decision}** — {report.reason}",
        "",
        f"Evaluated at {report.evaluated_at}; stage age {_human(report.stage_age_s)} of "
        f"{_human(report.duration_s)}; {report.samples} of {report.min_samples} requests.",
        "",
        "| side | requests | errors | error rate | p50 ms | p99 ms | metric n | metric |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for side, s in report.sides.items():
        rate = None if s.error_rate is None else f"{s.error_rate:.2%}"
        lines.append(
            f"| {side} | {s.requests} | {s.errors} | {rate or '-'} | {fmt(s.p50_ms, '.2f')} | {fmt(s.p99_ms, '.2f')} "
            f"| {s.metric_n} | {fmt(s.metric)} |"
        )
    m = report.metric
    if "p_value" in m:
        lines += [
            "",
            f"{m['name']}: challenger {m['challenger']:.4f} vs champion {m['champion']:.4f}, "
            f"relative change {m['relative_change']:+.2%}; margin test of challenger/champion vs "
            f"{m['ratio_bound']:.2f} (ADR 0023): z={m['z']:.2f}, **{m['verdict'].replace('_', '-')}** "
            f"(rollback at z <= -{m['z_rollback']:.2f}, advance at z >= {m['z_advance']:.2f}; information time "
            f"{m['information_time']:.2f}, {m['sequential']}); one-sided p: drop beyond the margin {m['p_value']:.4g}, "
            f"non-inferior {m['p_noninferior']:.4g}",
        ]
    rc = report.rank_correlation
    if rc.get("pairs"):
        lines += ["", f"Rank correlation ({rc.get('kind')}, {rc['pairs']} pairs): Spearman {fmt(rc.get('spearman'))}, "
                  f"Kendall {fmt(rc.get('kendall'))}"]  # fmt: skip
    lines += ["", "| check | listed | passed | value | threshold | detail |", "|---|---|---|---:|---:|---|"]
    for c in report.checks:
        passed = {True: "yes", False: "**no**", None: "not yet"}[c.passed]
        listed = "yes" if c.listed else "no"
        lines.append(f"| {c.name} | {listed} | {passed} | {fmt(c.value)} | {fmt(c.threshold)} | {c.detail} |")
    if report.approval:
        a = report.approval
        lines += ["", f"Approval: {a['decision']} by {a['by']} ({a.get('via')}): {a.get('comment') or ''}"]
    if report.applied:
        lines += ["", f"Applied: {json.dumps(report.applied, default=str)}"]
    return "\n".join(lines) + "\n"


def write_report(report: StageReport, directory: Path) -> tuple[Path, Path]:
    """stage_report.md and stage_report.json in `directory` (a run dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / "stage_report.md", directory / "stage_report.json"
    md.write_text(report.to_markdown(), encoding="utf-8")
    js.write_text(json.dumps(report.to_dict(), indent=2, default=str), encoding="utf-8")
    return md, js
