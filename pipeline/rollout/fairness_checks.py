"""Fairness checks of a rollout stage: the challenger's own traffic, grouped, against the spec's fairness gates.

Why here and not in pipeline/fairness: the metric itself is pipeline.fairness.stage.stage_metric
(the offline report's sample-size rule); this module only turns a stage's log rows into its
frames and decides pass / fail / not yet (docs/adr/0016-rollout-evaluation-and-simulation.md):

- a check names a metric (`exposure_equity`, `hit_disparity@10`, `outcome_gap`, each with an
  optional `[grouping]`); its bound is the `gates` entry of that metric (the gate's `metric:` or
  its key). A bare check bounded by grouped gates (`exposure_equity` and a gate on
  `exposure_equity[region]`) is measured on those groupings; a bare check with a bare gate on
  every declared grouping (`fairness.groups` / `creator_groups`), the worst one counting, as offline.
- groups come from the spec's side tables (`data.users`, `data.items`: every group column), over
  the challenger bundle's catalogue (its `id_maps/items.parquet`, sha256-checked); the reference
  share of a creator group is its catalogue share among groups with `min_group_items` items.
- user-side metrics use one row per answered challenger request: the user's group and whether the
  request got a positive outcome of `rollback.evaluation.metric` (a click on the list: the online
  Hit@K). `ndcg_disparity` needs the clicked position, which the outcomes log does not have.
- exposure uses one row per shown slot of the challenger's lists (top `fairness.k`), weighted
  1 / log2(position + 2) as offline.
- classification gaps (`tpr_gap`, `fpr_gap`, `auc_gap`, ...: churn) use one row per answered
  challenger /score request that has a label: its groups from the request log's `groups` column
  (the record's fairness group fields, sent with /score and logged, never given to the model), the
  label from the outcomes log (outcome named after `data.label`, value > 0 = positive) and the
  challenger's probability, flagged at `evaluation.threshold`. A request without a label yet is left
  out (a churn label arrives weeks later; unlike a click, no row does not mean 0).
- "insufficient data" is not a pass: the check is not measured yet and holds the stage. A bound
  violated by the point estimate rolls back only when a one-sided bootstrap bound over requests
  (`fairness.confidence`) violates it too; a violation within noise holds for more traffic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.fairness.groups import group_codes, grouping_name
from pipeline.fairness.groups import groupings as declared_groupings
from pipeline.fairness.result import INSUFFICIENT
from pipeline.fairness.stage import STAGE_METRICS, stage_metric
from pipeline.spec.schema import GateSpec, Spec

_NAME = re.compile(r"^(?P<base>[a-z_]+?)(?P<k>@\d+)?(?:\[(?P<grouping>[A-Za-z0-9_*]+)\])?$")
USER_SIDE = ("hit_disparity", "outcome_gap")
CLASSIFICATION = ("tpr_gap", "fpr_gap", "auc_gap", "precision_gap", "flagged_share_gap", "equalized_odds_gap")
REPLICATES = 200


@dataclass(frozen=True)
class Bound:
    metric: str  # with its grouping, e.g. exposure_equity[region]
    min: float | None
    max: float | None


@dataclass
class FairnessContext:
    """What a fairness check needs beside the logs: group tables, declared groupings, bounds, sample sizes."""

    users: pd.DataFrame | None  # indexed by user id (str), group columns
    items: pd.DataFrame | None  # indexed by item id (str), the challenger's catalogue with group columns
    user_groupings: list[list[str]]
    creator_groupings: list[list[str]]
    gates: dict[str, GateSpec]
    outcome: str = "ctr"
    k: int = 10
    min_group_size: int = 200
    min_group_items: int = 20
    confidence: float = 0.95
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    label: str | None = None  # classification: the outcome name that carries the label (the spec's data.label)
    threshold: float = 0.5  # classification: flagged at this probability (evaluation.threshold)
    min_group_events: int = 20


def request_group_fields(spec: Spec) -> tuple[str, ...]:
    """Fairness group columns a /score record may carry (classification specs only), logged for stage checks."""
    if spec.task == "recommendation":
        return ()
    declared = spec.fairness.groups if spec.fairness else []
    columns = [c for cols in declared_groupings(declared, spec.evaluation.group_columns) for c in cols]
    return tuple(dict.fromkeys(columns))


def is_fairness_check(name: str) -> bool:
    match = _NAME.match(name)
    return bool(match) and match["base"] in STAGE_METRICS


def build_context(spec: Spec, catalogue: pd.DataFrame | None, base_dir: Path) -> FairnessContext:
    """From the resolved spec and the challenger's catalogue (id_maps/items.parquet); side tables the spec declares."""
    from pipeline.data.errors import DataSourceError
    from pipeline.recsys.system import load_side_tables

    fairness = spec.fairness
    data = spec.data
    notes: list[str] = []
    users = items = None
    if spec.task == "recommendation":
        try:
            tables = load_side_tables(spec, base_dir)
        except DataSourceError as exc:
            tables = None
            notes.append(f"side tables not loaded: {exc}")
        if tables is not None and tables.users is not None and data.users is not None:
            users = tables.users.assign(_id=tables.users[data.users.id].astype(str)).set_index("_id")
        if tables is not None and data.items is not None:
            items = tables.items.assign(_id=tables.items[data.items.id].astype(str)).set_index("_id")
            if catalogue is not None and data.item in catalogue:
                items = items[items.index.isin(catalogue[data.item].astype(str))]
    classification = spec.task != "recommendation"
    declared = list(fairness.groups) if fairness else []
    return FairnessContext(
        users=users,
        items=items,
        user_groupings=declared_groupings(declared, spec.evaluation.group_columns) if classification else declared,
        creator_groupings=[list(g) for g in (fairness.creator_groups if fairness else [])],
        gates=dict(spec.gates),
        outcome=spec.rollout.rollback.evaluation.metric if spec.rollout else "ctr",
        k=fairness.k if fairness else (spec.evaluation.top_k or 10),
        min_group_size=fairness.min_group_size if fairness else 200,
        min_group_items=fairness.min_group_items if fairness else 20,
        confidence=fairness.confidence if fairness else 0.95,
        seed=fairness.seed if fairness else 0,
        notes=notes,
        label=data.label if classification else None,
        threshold=spec.evaluation.threshold,
        min_group_events=fairness.min_group_events if fairness else 20,
    )


def bounds_for(check: str, ctx: FairnessContext) -> list[Bound]:
    """The gate bounds a check is held to: its own gate, else the gates of its groupings (see the module doc)."""
    named = {(gate.metric or key): gate for key, gate in ctx.gates.items() if gate.vs is None}
    named = {m: g for m, g in named.items() if g.min is not None or g.max is not None}
    if check in named:
        return [Bound(check, named[check].min, named[check].max)]
    if "[" in check:
        return []
    return [Bound(m, g.min, g.max) for m, g in named.items() if m.startswith(f"{check}[")]


def evaluate_check(check: str, challenger: pd.DataFrame, outcomes: pd.DataFrame, ctx: FairnessContext) -> dict:
    """{"passed": True/False/None, "value", "threshold", "detail"} for one listed fairness check."""
    parsed = _NAME.match(check)
    base = parsed["base"] if parsed else check
    bounds = bounds_for(check, ctx)
    if not bounds:
        return _verdict(None, None, None, f"no gate in `gates` bounds {check} (add one, e.g. {check}: {{max: ...}})")
    if base == "ndcg_disparity":
        return _verdict(None, None, None, "not measurable online: the outcomes log has no clicked position")
    results = []
    for bound in bounds:
        measured = _measure(bound.metric, base, challenger, outcomes, ctx)
        if isinstance(measured, str):
            return _verdict(None, None, _threshold(bound), measured)
        results.append((bound, *measured))
    insufficient = [(b, r) for b, r, _ in results if r["value"] is None]
    if insufficient:
        reasons = "; ".join(f"{r['metric']}: {r['reason']}" for _, r in insufficient)
        return _verdict(None, None, _threshold(insufficient[0][0]), reasons)
    worst = max(results, key=lambda t: _excess(t[0], t[1]["value"]))
    bound, result, resample = worst
    value, limit = result["value"], _threshold(bound)
    sizes = ", ".join(f"{g} {n}" for g, n in result["groups"].items())
    rule = " and ".join(r for r in (_rule(">=", bound.min), _rule("<=", bound.max)) if r)
    if _excess(bound, value) <= 0:
        return _verdict(True, value, limit, f"{bound.metric} {value:.3f} (rule {rule}; groups: {sizes})")
    level = _one_sided(bound, resample(), ctx.confidence)
    if level is None or _excess(bound, level) <= 0:
        return _verdict(
            None, value, limit, f"{bound.metric} {value:.3f} breaks {rule} but its {ctx.confidence:.0%} bootstrap "
            f"bound {_fmt(level)} does not: within noise, waiting for more traffic (groups: {sizes})",
        )  # fmt: skip
    return _verdict(
        False, value, limit, f"{bound.metric} {value:.3f} breaks {rule} (one-sided {ctx.confidence:.0%} bootstrap "
        f"bound {level:.3f}; groups: {sizes})",
    )  # fmt: skip


def _measure(metric: str, base: str, challenger: pd.DataFrame, outcomes: pd.DataFrame, ctx: FairnessContext):
    """(stage_metric result, replicate function) over the worst grouping, or a reason it cannot be measured."""
    parsed = _NAME.match(metric)
    grouping = parsed["grouping"] if parsed else None
    if base == "exposure_equity":
        if ctx.items is None:
            return "no item table with creator groups (data.items)"
        groupings = [grouping.split("*")] if grouping else ctx.creator_groupings
        frames = [_exposure_frame(challenger, ctx, cols) for cols in groupings]
    elif base in USER_SIDE:
        if ctx.users is None:
            return "no user table with user groups (data.users)"
        groupings = [grouping.split("*")] if grouping else ctx.user_groupings
        frames = [_user_frame(challenger, outcomes, ctx, cols) for cols in groupings]
    elif base in CLASSIFICATION:
        groupings = [grouping.split("*")] if grouping else ctx.user_groupings
        frames = [_classification_frame(challenger, outcomes, ctx, cols) for cols in groupings]
    else:
        return f"{base} is not measured by the stage evaluation"
    if not groupings:
        return f"no groupings declared for {metric} (fairness.groups / fairness.creator_groups)"
    bad = [f for f in frames if isinstance(f, str)]
    if bad:
        return bad[0]
    name = metric if grouping else base + (parsed["k"] or "")
    scored = []
    for cols, (frame, reference) in zip(groupings, frames, strict=True):
        result = stage_metric(f"{name}[{grouping_name(cols)}]" if not grouping else name, frame, reference=reference,
                              **_sizes(ctx))  # fmt: skip
        scored.append((cols, frame, reference, result))
    ok = [s for s in scored if s[3]["value"] is not None]
    if len(ok) < len(scored):  # every grouping must have data before the check counts
        return next(s[3] for s in scored if s[3]["value"] is None), lambda: []
    sign = -1.0 if base == "exposure_equity" else 1.0
    cols, frame, reference, result = max(ok, key=lambda s: sign * s[3]["value"])
    return result, lambda: _replicates(result["metric"], frame, reference, ctx)


def _sizes(ctx: FairnessContext) -> dict[str, Any]:
    """stage_metric's sample-size and threshold arguments, the same for the point estimate and every replicate."""
    return {"min_group_size": ctx.min_group_size, "min_group_events": ctx.min_group_events, "threshold": ctx.threshold}


def _classification_frame(challenger: pd.DataFrame, outcomes: pd.DataFrame, ctx: FairnessContext, cols: list[str]):
    """One row per labelled challenger request: group (from the log's `groups` JSON), outcome, prediction."""
    if ctx.label is None:
        return "no label outcome for classification checks (the spec's data.label)"
    if "groups" not in challenger.columns or challenger["groups"].isna().all():
        return (f"the request log carries no group values: send the fairness group fields {cols} with each /score "
                f"record (logged while a rollout is live)")  # fmt: skip
    rows = challenger.drop_duplicates("request_id")
    labels = pd.Series(dtype=float)
    if not outcomes.empty:
        wanted = outcomes[outcomes["outcome"] == ctx.label].drop_duplicates("request_id", keep="last")
        labels = wanted.set_index("request_id")["value"]
    rows = rows[rows["request_id"].isin(labels.index) & rows["probability"].notna()]
    if rows.empty:
        return f"no answered challenger request has a label yet (outcome {ctx.label!r} in the outcomes log)"
    parsed = [json.loads(g) if isinstance(g, str) else {} for g in rows["groups"]]
    groups = pd.DataFrame({c: [p.get(c) for p in parsed] for c in cols})
    codes, names = group_codes(groups, cols, "fairness.groups")
    frame = pd.DataFrame({
        "group": np.asarray(names, dtype=object)[codes],
        "outcome": (labels.reindex(rows["request_id"]).to_numpy(dtype=float) > 0).astype(float),
        "prediction": rows["probability"].to_numpy(dtype=float),
        "request": np.arange(len(rows)),
    })  # fmt: skip
    return frame, None


def _user_frame(challenger: pd.DataFrame, outcomes: pd.DataFrame, ctx: FairnessContext, cols: list[str]):
    missing = [c for c in cols if c not in ctx.users.columns]
    if missing:
        return f"the user table has no group columns {missing}"
    rows = challenger.drop_duplicates("request_id")
    users = ctx.users.reindex(rows["entity_id"].astype(str).to_numpy())
    codes, labels = group_codes(users.reset_index(drop=True), cols, "fairness.groups")
    hit: set[str] = set()
    if not outcomes.empty:
        hit = set(outcomes.loc[(outcomes["outcome"] == ctx.outcome) & (outcomes["value"] > 0), "request_id"])
    frame = pd.DataFrame({
        "group": np.asarray(labels, dtype=object)[codes],
        "outcome": rows["request_id"].isin(hit).to_numpy(dtype=float),
        "request": np.arange(len(rows)),
    })  # fmt: skip
    return frame, None


def _exposure_frame(challenger: pd.DataFrame, ctx: FairnessContext, cols: list[str]):
    missing = [c for c in cols if c not in ctx.items.columns]
    if missing:
        return f"the item table has no creator group columns {missing}"
    codes, labels = group_codes(ctx.items.reset_index(drop=True), cols, "fairness.creator_groups")
    label_of = pd.Series(np.asarray(labels, dtype=object)[codes], index=ctx.items.index)
    catalogue = label_of.value_counts()
    eligible = catalogue[catalogue >= ctx.min_group_items]
    reference = (eligible / eligible.sum()).to_dict() if len(eligible) else {}
    rows = challenger.drop_duplicates("request_id")
    lists = [list(x)[: ctx.k] if x is not None else [] for x in rows["items"]]
    lengths = np.array([len(x) for x in lists], dtype=np.int64)
    flat = [str(i) for x in lists for i in x]
    frame = pd.DataFrame({
        "group": label_of.reindex(flat).fillna("(not in catalogue)").to_numpy(dtype=object),
        "position": np.concatenate([np.arange(n) for n in lengths]) if len(flat) else np.array([], dtype=np.int64),
        "request": np.repeat(np.arange(len(rows)), lengths),
    })  # fmt: skip
    return frame, reference


def _replicates(metric: str, frame: pd.DataFrame, reference, ctx: FairnessContext) -> list[float | None]:
    """The metric on REPLICATES resamples of the requests (a request's slots travel together)."""
    rng = np.random.default_rng([ctx.seed, 16])
    requests = frame["request"].to_numpy()
    n = int(requests.max()) + 1 if len(requests) else 0
    order = np.argsort(requests, kind="stable")
    starts = np.searchsorted(requests[order], np.arange(n))
    counts = np.bincount(requests, minlength=n)
    out = []
    for _ in range(REPLICATES):
        picked = rng.integers(0, n, size=n)
        idx = np.repeat(starts[picked], counts[picked]) + _ranges(counts[picked])
        sample = frame.iloc[order[idx]]
        out.append(stage_metric(metric, sample, reference=reference, **_sizes(ctx))["value"])
    return out


def _ranges(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] without a Python loop."""
    total = int(counts.sum())
    if total == 0:
        return np.array([], dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total) - np.repeat(ends - counts, counts)


def _one_sided(bound: Bound, values: list[float | None], confidence: float) -> float | None:
    finite = np.array([v for v in values if v is not None], dtype=float)
    if len(finite) < 0.9 * max(len(values), 1):
        return None  # too many replicates without enough data: no bound
    if bound.max is not None:
        return float(np.quantile(finite, 1 - confidence))  # the disparity is at least this, with confidence
    return float(np.quantile(finite, confidence))  # the equity is at most this


def _excess(bound: Bound, value: float | None) -> float:
    """How far a value breaks the bound (> 0: broken)."""
    if value is None:
        return -np.inf
    over = value - bound.max if bound.max is not None else -np.inf
    under = bound.min - value if bound.min is not None else -np.inf
    return max(over, under)


def _threshold(bound: Bound) -> float | None:
    return bound.max if bound.max is not None else bound.min


def _rule(op: str, limit: float | None) -> str | None:
    return None if limit is None else f"{op} {limit:g}"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _verdict(passed: bool | None, value: float | None, threshold: float | None, detail: str) -> dict[str, Any]:
    return {"passed": passed, "value": value, "threshold": threshold, "detail": detail}


__all__ = [
    "INSUFFICIENT",
    "FairnessContext",
    "build_context",
    "evaluate_check",
    "is_fairness_check",
    "request_group_fields",
]
