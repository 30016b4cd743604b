"""One evaluation cycle: read the record and the logs, evaluate the stage, apply the decision through state.py.

Shared by the Prefect flow (flows/rollout.py), the simulator and `keel rollout evaluate`. Each
cycle starts from the recorded state alone (rollout.json + the logs), so a cycle killed midway
is simply run again: nothing in memory is needed to resume. The decision is applied pinned to
the (rollout id, stage) it measured; if the record moved on in between (an in-service trigger
rolled back, an operator advanced), the write is refused and the next cycle re-evaluates.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from pipeline.registry import BundleStore
from pipeline.rollout.errors import RolloutRefused
from pipeline.rollout.evaluate import StageReport, evaluate_stage
from pipeline.rollout.fairness_checks import FairnessContext, build_context, is_fairness_check
from pipeline.rollout.outcomes import outcomes_dir, read_outcomes, requests_dir
from pipeline.rollout.record import RolloutState, read_rollout
from pipeline.rollout.state import advance, rollback
from pipeline.serving.request_log import read_request_log
from pipeline.spec.schema import RolloutSpec, Spec

Clock = Callable[[], datetime]
ACTOR = "keel-rollout-evaluation"


def utcnow() -> datetime:
    return datetime.now(UTC)


def log_dirs(store: BundleStore, name: str, requests: Path | None = None) -> tuple[Path, Path]:
    """(request log, outcomes log) directories; KEEL_REQUEST_LOG_DIR as the service reads it."""
    env = os.environ.get("KEEL_REQUEST_LOG_DIR")
    req = requests or (Path(env) if env else requests_dir(store.keel_dir, name))
    return req, outcomes_dir(store.keel_dir, name)


def load_logs(store: BundleStore, name: str, requests: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    req, out = log_dirs(store, name, requests)
    return read_request_log(req), read_outcomes(out)


def evaluate_current(
    name: str,
    spec: RolloutSpec,
    store: BundleStore,
    clock: Clock = utcnow,
    requests: Path | None = None,
    system: Spec | None = None,
    base_dir: Path | None = None,
) -> StageReport | None:
    """The current stage's report (None: no rollout ever started); RolloutStateError on a damaged record.

    `system` (the whole resolved spec) lets the stage's fairness checks be measured: its gates bound
    them, its side tables group users and creators. Without it they stay "not measured" and hold.
    """
    state = read_rollout(store.keel_dir, name)
    if state is None:
        return None
    frame, outcomes = load_logs(store, name, requests)
    checks = (state.stages[state.stage_index].get("checks") or []) if state.stages else []
    context = None
    if system is not None and any(is_fairness_check(c) for c in checks):
        context = fairness_context(system, store, state.challenger, base_dir or Path.cwd())
    return evaluate_stage(state, spec, frame, outcomes, clock(), fairness=context)


_CONTEXTS: dict[tuple[str, str], FairnessContext] = {}


def fairness_context(system: Spec, store: BundleStore, challenger: str | None, base_dir: Path) -> FairnessContext:
    """Side tables over the challenger's catalogue; cached per (spec, challenger): a stage evaluates it daily."""
    key = (hashlib.sha256(system.model_dump_json().encode()).hexdigest(), str(challenger))
    if key not in _CONTEXTS:
        catalogue = None
        if challenger:
            ref = store.get(challenger)
            if "id_maps/items.parquet" in ref.manifest.files:
                catalogue = pd.read_parquet(ref.open_file("id_maps/items.parquet"))  # sha256-checked
        if len(_CONTEXTS) >= 4:
            _CONTEXTS.clear()
        _CONTEXTS[key] = build_context(system, catalogue, base_dir)
    return _CONTEXTS[key]


def apply_decision(
    report: StageReport,
    store: BundleStore,
    clock: Clock = utcnow,
    actor: str = ACTOR,
) -> RolloutState | None:
    """Write what the report decided (hold and none write nothing); report.applied says what happened."""
    expect = (report.rollout_id, report.stage_index)
    try:
        if report.decision == "advance":
            by = report.approval["by"] if report.approval else None
            state = advance(
                report.name, f"stage evaluation: {report.reason}", approved_by=by, actor=actor, store=store,
                clock=clock, expect=expect,
            )  # fmt: skip
        elif report.decision == "rollback":
            state = rollback(
                report.name, f"stage evaluation at {report.stage}: {report.reason}", rollout_id=report.rollout_id,
                actor=actor, store=store, clock=clock,
            )  # fmt: skip
        elif report.decision == "await_approval" and report.status != "awaiting_approval":
            state = advance(report.name, report.reason, actor=actor, store=store, clock=clock, expect=expect)
        else:
            report.applied = {"written": False}
            return read_rollout(store.keel_dir, report.name)
    except RolloutRefused as exc:
        report.applied = {"written": False, "refused": str(exc)}
        return read_rollout(store.keel_dir, report.name)
    report.applied = {"written": True, "status": state.status, "stage": state.stage, "traffic": state.traffic}
    return state
