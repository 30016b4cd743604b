"""Approvals for a stage that needs one: a paused Prefect flow run with a form, or the CLI.

Why two paths that end in one record: the Prefect UI shows a paused run's `wait_for_input`
model as a form (approve, comment, who), which is where an operator watching the flow answers;
`keel rollout approve` must also work when nobody runs Prefect's UI, or when no flow is
paused (a daily flow that timed out, a simulator). The CLI resumes the paused run with the
same input if one is waiting (the flow then records the answer), otherwise it records the
answer itself and the next stage evaluation acts on it. Either way the answer, who gave it,
how, and the comment are one `approval` event in the rollout history.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from uuid import UUID

from prefect.input import RunInput
from pydantic import Field

from pipeline.registry import BundleStore
from pipeline.rollout.errors import RolloutRefused
from pipeline.rollout.record import read_rollout
from pipeline.rollout.state import Clock, _actor, _utcnow, note, record_approval

log = logging.getLogger("keel.rollout")


class StageApproval(RunInput):
    """The form a paused rollout flow shows in the Prefect UI."""

    approve: bool = Field(description="true: enter the next stage; false: reject (the rollout rolls back)")
    comment: str = Field("", description="why; recorded in the rollout history")
    approver: str = Field("", description="who answers (recorded in the rollout history)")
    via: str = Field("prefect-ui", description="how the answer was given (the CLI sets 'cli')")


def wait_in_flow(
    name: str,
    store: BundleStore,
    expect: tuple[str, int],
    next_stage: str | None,
    timeout_s: int,
    poll_s: int,
    clock: Clock = _utcnow,
) -> dict[str, Any] | None:
    """Inside a flow run: note the run id in the rollout history, pause for a StageApproval, record the answer.

    None when the pause timed out (the rollout stays awaiting_approval; the next run asks again).
    """
    from prefect import pause_flow_run
    from prefect.context import FlowRunContext
    from prefect.exceptions import FlowPauseTimeout

    context = FlowRunContext.get()
    run_id = str(context.flow_run.id) if context and context.flow_run else None
    note(name, "approval_requested", f"waiting for an approval to enter {next_stage}", actor="keel-rollout-flow",
         store=store, clock=clock, flow_run_id=run_id, for_stage=next_stage)  # fmt: skip
    try:
        answer = pause_flow_run(wait_for_input=StageApproval, timeout=timeout_s, poll_interval=poll_s)
    except FlowPauseTimeout:
        return None
    decision = "approve" if answer.approve else "reject"
    record_approval(name, decision, answer.comment, by=answer.approver or "prefect-ui-user", via=answer.via,
                    store=store, clock=clock, expect=expect)  # fmt: skip
    return {"decision": decision, "by": answer.approver, "comment": answer.comment, "via": answer.via}


def waiting_flow_run(name: str, store: BundleStore) -> str | None:
    """The id of the flow run paused for this stage's approval, when one is recorded and Prefect says it is PAUSED."""
    state = read_rollout(store.keel_dir, name)
    if state is None or state.status != "awaiting_approval":
        return None
    run_id = None
    for event in reversed(state.events):
        if event.get("action") == "approval_requested" and event.get("stage") == state.stage:
            run_id = event.get("flow_run_id")
            break
        if event.get("action") in ("advance", "start"):
            break
    if not run_id:
        return None
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():  # no server to ask: an ephemeral API would not know the run
        return None
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(UUID(run_id))
    except Exception as exc:  # unreachable API, run deleted: fall back to recording the answer
        log.info("flow run %s not readable (%s): recording the approval instead", run_id, exc)
        return None
    return run_id if run.state is not None and run.state.is_paused() else None


def answer(
    name: str,
    approve: bool,
    comment: str = "",
    *,
    by: str | None = None,
    store: BundleStore | None = None,
    clock: Clock = _utcnow,
    wait_s: float = 15.0,
) -> dict[str, Any]:
    """`keel rollout approve`: resume the waiting flow run with the answer, or record it for the next evaluation.

    After resuming, waits up to `wait_s` for the flow to record the answer; a run whose process
    died while paused never will, so the answer is then recorded here instead.
    """
    store = store or BundleStore()
    who = _actor(by)
    run_id = waiting_flow_run(name, store)
    decision = "approve" if approve else "reject"
    if run_id is not None:
        from prefect.flow_runs import resume_flow_run

        seen = _answers(store, name)
        resume_flow_run(UUID(run_id), run_input={"approve": approve, "comment": comment, "approver": who, "via": "cli"})
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if _answers(store, name) > seen:
                return {"via": "prefect", "flow_run_id": run_id, "decision": decision, "by": who}
            time.sleep(0.2)
        # a run PAUSED in Prefect whose process is gone (killed, host lost) never records it: do it here
        log.warning("flow run %s did not record the answer within %.0f s: recording it directly", run_id, wait_s)
    state = read_rollout(store.keel_dir, name)
    if state is None or not state.live:
        raise RolloutRefused(f"no live rollout of {name!r} to approve")
    record_approval(name, decision, comment, by=who, via="cli", store=store, clock=clock)
    return {"via": "record", "flow_run_id": run_id, "decision": decision, "by": who}


def _answers(store: BundleStore, name: str) -> int:
    state = read_rollout(store.keel_dir, name)
    return sum(1 for e in state.events if e.get("action") == "approval") if state else 0
