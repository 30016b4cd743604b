"""A flow run whose process died (kill -9, OOM, a lost host) stays "Running" in Prefect forever.

Nothing in Prefect notices a dead process of an un-worker-managed flow run, so Keel does: each
run directory records the flow run id, the host and the pid (pipeline/runs.py), and the next run
of the same spec asks the Prefect API which of the recent ones still say RUNNING, and marks those
whose process is gone on this host as Crashed, with the reason. A pid that is alive (maybe reused)
or another host's run is left alone: never mark a live run crashed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from pipeline.processes import pid_alive

RECENT_RUNS = 50  # run directories looked at; older ones were surely settled by a run in between


def current_flow_run() -> dict[str, Any]:
    """{flow_run_id, host, pid} of the flow run this process is in (empty outside a Prefect flow)."""
    import sys

    if "prefect" not in sys.modules:
        return {}
    try:
        from prefect.runtime import flow_run

        run_id = flow_run.id
    except Exception:
        return {}
    return {"flow_run_id": str(run_id), "host": socket.gethostname(), "pid": os.getpid()} if run_id else {}


def orphaned_candidates(spec_runs_dir: Path, own_pid: int) -> dict[str, str]:
    """flow_run_id -> run dir, for recent runs of this spec whose recorded process is gone from this host."""
    host = socket.gethostname()
    out: dict[str, str] = {}
    if not spec_runs_dir.is_dir():
        return out
    for run_dir in sorted(spec_runs_dir.iterdir(), reverse=True)[:RECENT_RUNS]:
        try:
            record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        pid, run_id = record.get("pid"), record.get("flow_run_id")
        if run_id and record.get("host") == host and isinstance(pid, int) and pid != own_pid and not pid_alive(pid):
            out[run_id] = str(run_dir)
    return out


def mark_crashed(spec_runs_dir: Path) -> list[str]:
    """Mark this spec's dead-but-RUNNING flow runs Crashed on the Prefect API in use; their ids."""
    candidates = orphaned_candidates(spec_runs_dir, os.getpid())
    if not candidates:
        return []
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    marked: list[str] = []
    with get_client(sync_client=True) as client:
        running = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                id=FlowRunFilterId(any_=[UUID(i) for i in candidates]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING])),
            )
        )
        for run in running:
            where = candidates[str(run.id)]
            message = f"its process died without a final state (found by a later keel run; run dir {where})"
            client.set_flow_run_state(run.id, Crashed(message=message), force=True)
            marked.append(str(run.id))
    return marked
