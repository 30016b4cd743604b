"""`keel rollout evaluate`: the stage-evaluation flow, one cycle per run (schedule it daily).

Each run reads the rollout record and the logs, evaluates the current stage, applies the
decision (advance, hold, roll back) and writes a stage report (Markdown + JSON in a run
directory, and a Prefect artifact). A stage that needs an approval pauses the run with a
form (pipeline/rollout/approvals.py). The flow keeps nothing between runs: killed midway,
the next run resumes from the recorded state. `now` (ISO time) replaces the clock, for
virtual time; omitted, it is the real clock.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from pipeline.registry import BundleStore
from pipeline.registry.home import spec_store
from pipeline.rollout.approvals import wait_in_flow
from pipeline.rollout.backends import configure_backend
from pipeline.rollout.cycle import apply_decision, evaluate_current, utcnow
from pipeline.rollout.evaluate import StageReport, write_report
from pipeline.runs import create_run_dir
from pipeline.spec.load import load_spec


@task(cache_policy=NO_CACHE)
def evaluate_task(name: str, spec, store: BundleStore, clock, system=None, base_dir=None) -> StageReport | None:
    return evaluate_current(name, spec, store, clock, system=system, base_dir=base_dir)


@task(cache_policy=NO_CACHE)
def apply_task(report: StageReport, store: BundleStore, clock) -> None:
    apply_decision(report, store, clock)


@flow(name="keel-rollout-stage", log_prints=True)
def rollout_stage_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
    now: str | None = None,
    approval_timeout_s: int = 3600,
    approval_poll_s: int = 2,
) -> dict[str, Any]:
    """Evaluate the live rollout stage and act on it; the answer is the stage report as a dict.

    Args:
        spec_path: the spec file (absolute path on the machine that serves this deployment)
        overrides: Hydra overrides applied to the spec
        conf_dirs: extra config-group directories searched before Keel's conf/
        now: evaluate at this ISO time (virtual time, for replays); empty: now
        approval_timeout_s: seconds a stage that needs an approval waits for an answer in the UI
        approval_poll_s: seconds between looks at the rollout record while waiting
    """
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    spec = loaded.spec
    if spec.rollout is None:
        raise ValueError(f"{spec_path} has no rollout section")
    store = spec_store(spec)
    configure_backend(spec, store)  # runtime.rollout_state: the file beside the store, or Redis
    fixed = datetime.fromisoformat(now) if now else None
    clock = (lambda: fixed) if fixed else utcnow
    report = evaluate_task(spec.name, spec.rollout, store, clock, spec, loaded.base_dir)
    if report is None:
        return {"decision": "none", "reason": f"no rollout of {spec.name}"}
    apply_task(report, store, clock)
    if report.decision == "await_approval":
        answered = wait_in_flow(
            spec.name, store, (report.rollout_id, report.stage_index), report.next_stage,
            approval_timeout_s, approval_poll_s, clock,
        )  # fmt: skip
        if answered is None:
            report.reason += f" (no answer within {approval_timeout_s} s; the next run asks again)"
        else:  # act on the answer now, in the same run: evaluate again (the approval is in the record)
            report = evaluate_task(spec.name, spec.rollout, store, clock, spec, loaded.base_dir)
            apply_task(report, store, clock)
    run = create_run_dir(loaded, "rollout")  # real time: two virtual-time runs must not collide
    md, js = write_report(report, run.path)
    create_markdown_artifact(
        markdown=report.to_markdown(), key=f"{spec.name}-rollout-stage", description="Keel rollout stage report"
    )
    out = report.to_dict()
    out["report"] = {"markdown": str(md), "json": str(js)}
    return out
