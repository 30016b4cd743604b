"""Rollout operations: start, advance, rollback, status, history.

Every change is: take the name's rollout lock -> read rollout.json -> check -> change the
aliases if the step needs it (challenger alias, the promotion at completion) -> append the
history -> atomically replace rollout.json. Serving follows rollout.json, so the replace is
the moment a change takes effect in every worker. Refusals raise RolloutRefused (or the
registry's own error) before anything is written. Lock order is rollout lock, then alias
lock; the alias code never takes the rollout lock, so the two cannot deadlock.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, promote, set_challenger
from pipeline.registry.aliases import rollback as alias_rollback
from pipeline.registry.errors import IntegrityError, PromotionRefused, RegistryError
from pipeline.registry.manifest import BundleRef
from pipeline.registry.tags import check_name, parse_tag
from pipeline.rollout.errors import RolloutRefused
from pipeline.rollout.record import (
    RolloutState,
    last_revision,
    read_history,
    read_rollout,
    rollout_lock,
    write_rollout,
)
from pipeline.spec.schema import RolloutSpec

Clock = Callable[[], datetime]
GATE_REPORT = "metrics.json"  # written by training: {"test": {...}, "gates": {"passed": ..., "gates": [...]}}


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _actor(actor: str | None) -> str:
    return actor or f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}:{os.getpid()}"


def status(name: str, *, store: BundleStore | None = None) -> RolloutState | None:
    """The current record (None: no rollout ever started); RolloutStateError when damaged."""
    store = store or BundleStore()
    return read_rollout(store.keel_dir, check_name(name))


def history(name: str, *, store: BundleStore | None = None) -> list[dict[str, Any]]:
    store = store or BundleStore()
    return read_history(store.keel_dir, check_name(name))


def failing_gates(ref: BundleRef) -> list[str]:
    """The failed gates in the bundle's own gate report, worded as the report words them."""
    report: Any = ref.manifest.metrics.get("gates")
    if report is None and GATE_REPORT in ref.manifest.files:
        try:
            report = json.loads(ref.open_file(GATE_REPORT).read_text(encoding="utf-8")).get("gates")
        except (OSError, ValueError, AttributeError, RegistryError) as exc:
            return [f"gate report unreadable ({exc})"]
    gates = report.get("gates") if isinstance(report, dict) else None
    if not isinstance(gates, list):
        return ["no gate report in the bundle"]
    failed = [g for g in gates if isinstance(g, dict) and not g.get("passed", False)]
    return [f"{g.get('name', '?')}: {g.get('reason') or g.get('rule', 'failed')}" for g in failed] or [
        "gate_passed=false but no failed gate is listed"
    ]


def _routable(store: BundleStore, name: str, tag: str) -> BundleRef:
    """A committed, intact, gate-passed bundle of `name`: the only kind the router may send traffic to."""
    tag_name, _ = parse_tag(tag)
    if tag_name != name:
        raise RolloutRefused(f"tag {tag} belongs to {tag_name!r}, not {name!r}")
    ref = store.get(tag)
    try:
        ref.verify()
    except IntegrityError as exc:
        raise RolloutRefused(f"bundle {tag} failed verification, it cannot be routed to: {exc}") from exc
    if not ref.manifest.gate_passed:
        reasons = "; ".join(failing_gates(ref))
        raise RolloutRefused(f"bundle {tag} failed its gates, it cannot be routed to: {reasons}")
    return ref


def _event(clock: Clock, action: str, actor: str | None, reason: str, **extra: Any) -> dict[str, Any]:
    return {"time": clock().isoformat(), "action": action, "actor": _actor(actor), "reason": reason, **extra}


def _commit(store: BundleStore, state: RolloutState, event: dict[str, Any]) -> RolloutState:
    """Caller holds the rollout lock."""
    state.revision += 1
    state.updated_at = event["time"]
    state.events.append(event)
    write_rollout(store.keel_dir, state, [event])
    return state


def _enter_stage(state: RolloutState, index: int, now: str) -> None:
    stage = state.stages[index]
    state.stage_index, state.stage, state.traffic = index, stage["name"], float(stage["traffic"])
    state.stage_started_at = now


def start(
    name: str,
    challenger: str,
    rollout: RolloutSpec,
    reason: str = "",
    *,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
    canary_approval: str | None = None,
) -> RolloutState:
    """Begin a rollout of `challenger` at the spec's first stage; the champion keeps serving everyone else.

    Refused (nothing written) for a bundle that failed its gates or verification, with no
    champion, when the challenger is the champion, or while another rollout of `name` is live.
    `canary_approval` (why: e.g. the retrain trigger's approval flag) makes the first stage with
    traffic need an approval in this rollout even when the spec's stage does not.
    """
    store = store or BundleStore()
    check_name(name)
    with rollout_lock(store.keel_dir, name):
        current = read_rollout(store.keel_dir, name)  # a damaged record raises: look at it before starting over
        if current is not None and current.live:
            raise RolloutRefused(
                f"rollout {current.rollout_id} of {name!r} is already {current.status} "
                f"({current.challenger} at stage {current.stage}, {current.traffic:.0%}); "
                "roll it back or complete it before starting another"
            )
        _routable(store, name, challenger)
        champion = aliases(name, store=store)["champion"]
        if champion is None:
            raise RolloutRefused(f"{name!r} has no champion to roll out against: promote a bundle first")
        if champion == challenger:
            raise RolloutRefused(f"{challenger} is already the champion of {name!r}")
        now = clock()
        rollout_id = f"ro-{now:%Y%m%dt%H%M%S}-{secrets.token_hex(3)}"
        stages = [s.model_dump() for s in rollout.stages]
        gated = _require_canary_approval(stages, canary_approval) if canary_approval else None
        state = RolloutState(
            name=name,
            rollout_id=rollout_id,
            challenger=challenger,
            champion=champion,
            stages=stages,
            stage_index=0,
            stage=stages[0]["name"],
            traffic=float(stages[0]["traffic"]),
            stage_started_at=now.isoformat(),
            status="active",
            started_at=now.isoformat(),
            updated_at=now.isoformat(),
            revision=max(current.revision if current else 0, last_revision(store.keel_dir, name)),
        )
        set_challenger(name, challenger, reason or f"rollout {rollout_id}", actor=actor, store=store, clock=clock)
        extra: dict[str, Any] = {"approval_required": {"stage": gated, "reason": canary_approval}} if gated else {}
        event = _event(
            clock, "start", actor, reason, stage=state.stage, traffic=state.traffic, champion=champion, **extra
        )
        return _commit(store, state, event)


def _require_canary_approval(stages: list[dict[str, Any]], why: str) -> str | None:
    """Mark the first stage with traffic (the canary) as needing an approval, with why; its name.

    A rollout whose first stage already routes traffic could not wait for that approval: refused,
    so a person starts it by hand (`keel rollout start`), which is the approval.
    """
    canary = next((i for i, s in enumerate(stages) if float(s["traffic"]) > 0), None)
    if canary is None:
        return None
    if canary == 0:
        raise RolloutRefused(
            f"an approval is needed before canary ({why}), but the first stage {stages[0]['name']} already routes "
            "traffic: review the challenger and start the rollout by hand (keel rollout start)"
        )
    stages[canary]["approval"] = True
    stages[canary]["approval_reason"] = why
    return str(stages[canary]["name"])


def advance(
    name: str,
    reason: str = "",
    *,
    approved_by: str | None = None,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
    expect: tuple[str, int] | None = None,
) -> RolloutState:
    """Move to the next stage; past the last one, promote the challenger (the old champion becomes standby).

    A next stage with `approval: true` is not entered without `approved_by`: the rollout waits
    in status awaiting_approval, still at its current traffic. Stage checks and durations are the
    stage-evaluation flow's job (not this function's): an operator advancing by hand is trusted.
    `expect=(rollout_id, stage_index)` pins what an evaluation measured: refused if the record moved on.
    """
    store = store or BundleStore()
    check_name(name)
    with rollout_lock(store.keel_dir, name):
        state = _live(store, name, "advance")
        _check_expected(state, expect)
        now = clock().isoformat()
        last = state.stage_index == len(state.stages) - 1
        if last:
            try:
                promote(name, state.challenger, f"rollout {state.rollout_id} completed", actor=actor, store=store)
            except PromotionRefused as exc:
                raise RolloutRefused(f"cannot complete rollout {state.rollout_id}: {exc}") from exc
            state.status = "completed"
            return _commit(store, state, _event(clock, "complete", actor, reason, champion=state.challenger))
        following = state.stages[state.stage_index + 1]
        if following.get("approval") and not approved_by:
            if state.status == "awaiting_approval":
                raise RolloutRefused(f"stage {following['name']} of rollout {state.rollout_id} still needs an approval")
            state.status = "awaiting_approval"
            return _commit(store, state, _event(clock, "awaiting_approval", actor, reason, next=following["name"]))
        previous = state.stage
        _enter_stage(state, state.stage_index + 1, now)
        state.status = "active"
        extra: dict[str, Any] = {"from": previous, "stage": state.stage, "traffic": state.traffic}
        if approved_by:
            extra["approved_by"] = approved_by
        return _commit(store, state, _event(clock, "advance", actor, reason, **extra))


def rollback(
    name: str,
    reason: str,
    *,
    rollout_id: str | None = None,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
) -> RolloutState:
    """Take the challenger out of traffic (the champion stays champion): one atomic write of rollout.json.

    After completion it rolls the promotion back instead (the standby, the old champion, becomes
    champion again), refused with RollbackUnavailable when there is no standby. `rollout_id` pins
    the rollout a trigger measured, so a late trigger never rolls back a newer one. Rolling back
    an already rolled-back rollout changes nothing and returns it (two workers may both fire).
    """
    store = store or BundleStore()
    check_name(name)
    with rollout_lock(store.keel_dir, name):
        state = read_rollout(store.keel_dir, name)
        if state is None:
            raise RolloutRefused(
                f"{name!r} has no rollout to roll back; `keel models rollback` swaps champion and standby"
            )
        if rollout_id is not None and rollout_id != state.rollout_id:
            raise RolloutRefused(f"rollout {rollout_id} is not current for {name!r} (current: {state.rollout_id})")
        if state.status == "rolled_back":
            return state
        if state.status == "completed":
            champion = aliases(name, store=store)["champion"]
            if champion != state.challenger:
                raise RolloutRefused(
                    f"rollout {state.rollout_id} completed with {state.challenger}, but the champion is now "
                    f"{champion}; use `keel models rollback` for the current champion"
                )
            restored = alias_rollback(name, reason, actor=actor, store=store, clock=clock)["champion"]
            state.status = "rolled_back"
            return _commit(store, state, _event(clock, "rollback_after_completion", actor, reason, champion=restored))
        state.status, state.traffic = "rolled_back", 0.0
        committed = _commit(store, state, _event(clock, "rollback", actor, reason, stage=state.stage))
        # tidy-up only: the rollback took effect with the write above, a damaged alias record must not undo that
        with contextlib.suppress(RegistryError):
            if aliases(name, store=store)["challenger"] == state.challenger:
                note = f"rollout {state.rollout_id} rolled back"
                set_challenger(name, None, note, actor=actor, store=store, clock=clock)
        return committed


def _check_expected(state: RolloutState, expect: tuple[str, int] | None) -> None:
    if expect is not None and (state.rollout_id, state.stage_index) != tuple(expect):
        raise RolloutRefused(
            f"rollout {state.rollout_id} is at stage {state.stage} (index {state.stage_index}), not the "
            f"{expect[0]} stage {expect[1]} that was evaluated; evaluate again"
        )


def record_approval(
    name: str,
    decision: str,
    comment: str = "",
    *,
    by: str | None = None,
    via: str = "cli",
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
    expect: tuple[str, int] | None = None,
) -> RolloutState:
    """Record an answer (approve/reject) for entering the next stage; the next stage evaluation acts on it.

    Recorded in the rollout history with who, how (cli, prefect-ui, simulator) and the comment.
    Refused when no live rollout has a next stage that needs an approval.
    """
    if decision not in ("approve", "reject"):
        raise RolloutRefused(f"decision must be approve or reject, got {decision!r}")
    store = store or BundleStore()
    check_name(name)
    with rollout_lock(store.keel_dir, name):
        state = _live(store, name, "approve")
        _check_expected(state, expect)
        if state.stage_index + 1 >= len(state.stages) or not state.stages[state.stage_index + 1].get("approval"):
            raise RolloutRefused(
                f"rollout {state.rollout_id} is at stage {state.stage}; the next stage does not need an approval"
            )
        following = state.stages[state.stage_index + 1]["name"]
        event = _event(
            clock, "approval", by, comment, decision=decision, by=_actor(by), comment=comment, via=via,
            stage=state.stage, for_stage=following,
        )  # fmt: skip
        return _commit(store, state, event)


def note(
    name: str,
    action: str,
    reason: str = "",
    *,
    actor: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
    **extra: Any,
) -> RolloutState:
    """Append an informational event (e.g. approval_requested with the paused flow run id) to a live rollout."""
    store = store or BundleStore()
    check_name(name)
    with rollout_lock(store.keel_dir, name):
        state = _live(store, name, action)
        return _commit(store, state, _event(clock, action, actor, reason, stage=state.stage, **extra))


def _live(store: BundleStore, name: str, verb: str) -> RolloutState:
    state = read_rollout(store.keel_dir, name)
    if state is None or not state.live:
        what = "no rollout" if state is None else f"rollout {state.rollout_id} is {state.status}"
        raise RolloutRefused(f"cannot {verb}: {what} for {name!r}; start one with `keel rollout start`")
    return state
