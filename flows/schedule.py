"""`keel schedule SPEC`: the spec's flows as Prefect deployments with the spec's cron schedules.

Two deployments per spec: `<name>-retrain` (the `keel-retrain` flow below, on
`triggers.schedule`) and `<name>-monitor` (flows/monitor.py's `keel-monitor`, on
`triggers.monitor`), both with the spec path and overrides as parameters, so the Prefect
UI shows them and can start them. They are served by a `prefect.serve` runner in this
process: no work pool, no image, nothing downloaded (docs/adr/0014-triggers-backtest-schedule.md).

A scheduled retrain goes through the trigger record first, so a drift retrain and the
weekly one in the same minute (or within min_interval) start one run between them.

A triggered retrain of a spec with a `rollout` section registers its challenger without
promoting it and, when the gates pass, starts the spec's staged rollout of it: the rollout,
not the retrain, makes it champion. A trigger with `approval: true` makes the rollout's
canary wait for a person (docs/adr/0014-triggers-backtest-schedule.md, "Retrains roll out").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.schedules import Cron
from prefect.states import Completed

from pipeline.spec.load import LoadedSpec, load_spec
from pipeline.triggers import Decision, evaluate_and_record

RETRAIN_TRIGGERS = ("schedule", "drift", "performance", "manual")


Trigger = Literal["schedule", "drift", "performance", "manual"]


@flow(name="keel-retrain", log_prints=True)
def retrain_flow(
    spec_path: str,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
    trigger: Trigger = "schedule",
    approval: bool | None = None,
    reason: str = "",
) -> Any:
    """One retrain of the spec (keel run), decided against the trigger record when the schedule fires.

    Args:
        spec_path: the spec file (absolute path on the machine that serves this deployment)
        overrides: Hydra overrides applied to the spec, e.g. ["data.rows=5000"]
        conf_dirs: extra config-group directories searched before Keel's conf/
        trigger: why this retrain runs. schedule: the cron fired, so the trigger record decides (dedup against
            retrains that ran); drift / performance / manual: already decided by the monitor or a person
        approval: whether the new model needs a person's approval before its canary; empty: the spec's
            triggers.<trigger>.approval (manual: no)
        reason: why the trigger fired, kept in the rollout history
    """
    if trigger not in RETRAIN_TRIGGERS:
        raise ValueError(f"trigger must be one of {', '.join(RETRAIN_TRIGGERS)}, not {trigger!r}")
    loaded = load_spec(spec_path, overrides or [], [Path(d) for d in conf_dirs or []])
    if trigger == "schedule":
        decision = evaluate_and_record(loaded.spec, scheduled=True, source="schedule")
        if decision.retrain is None:
            reasons = "; ".join(e.reason for e in decision.evaluations) or "no schedule trigger in the spec"
            print(f"no retrain: {reasons}")
            _decision_artifact(loaded, "No retrain", reasons)
            return Completed(name="No retrain", message=reasons, data={"status": "skipped", "reason": reasons})
        approval = decision.approval if approval is None else approval
        reason = reason or _fired_reason(decision)
    if approval is None:
        declared = getattr(loaded.spec.triggers, trigger, None) if trigger != "manual" else None
        approval = bool(declared is not None and declared.approval)
    result = retrain_and_roll_out(loaded, trigger, approval, reason)
    print(result["text"])
    _decision_artifact(loaded, f"Retrained ({trigger})", result["text"])
    return {k: v for k, v in result.items() if k != "text"}


def _decision_artifact(loaded: LoadedSpec, verdict: str, details: str) -> None:
    """What this retrain run decided, on the run's page in the Prefect UI (a skipped run says why)."""
    body = "\n".join(f"    {line}" for line in details.splitlines())
    markdown = f"# {verdict}: {loaded.spec.name}\n\nspec `{loaded.path}` (sha256 {loaded.sha256[:12]})\n\n{body}\n"
    create_markdown_artifact(markdown=markdown, key=f"{loaded.spec.name}-retrain", description="Keel retrain decision")


def retrain_and_roll_out(loaded: LoadedSpec, trigger: str, approval: bool = False, reason: str = "") -> dict[str, Any]:
    """Train, gate, register; with a rollout section (and a champion to roll out against) start the staged rollout.

    Without a rollout section, or without a champion yet (the first model has nothing to be
    compared against in traffic), a passed bundle is promoted as `keel run` does (both tasks).
    A refused start (a rollout already live) leaves the bundle registered and says why; it
    never fails the retrain.
    """
    from flows.lifecycle import bundle_store, run_lifecycle
    from pipeline.registry.aliases import aliases

    spec = loaded.spec
    store = bundle_store(loaded)
    rollout = spec.rollout
    hold = rollout is not None and aliases(spec.name, store=store)["champion"] is not None
    summary = run_lifecycle(loaded, promote_on_pass=not hold)
    result: dict[str, Any] = {
        "status": summary["status"],
        "trigger": trigger,
        "bundle": summary.get("bundle"),
        "promoted": summary.get("promoted"),
        "promotion": summary.get("promotion"),
        "rollout": None,
    }
    lines = [summary["text"]]
    if hold and summary["status"] == "ok":
        result["rollout"] = _start_rollout(loaded, store, summary["bundle"], trigger, approval, reason)
        lines.append(result["rollout"]["text"])
    elif rollout is not None and not hold and summary.get("promoted"):
        lines.append("no champion yet: the first model is promoted directly (nothing to roll out against)")
    return {**result, "text": "\n".join(lines)}


def _start_rollout(
    loaded: LoadedSpec, store: Any, tag: str, trigger: str, approval: bool, reason: str
) -> dict[str, Any]:
    from pipeline.registry import RegistryError
    from pipeline.rollout import RolloutError, start
    from pipeline.rollout.backends import configure_backend

    spec = loaded.spec
    assert spec.rollout is not None
    why = f"{trigger} retrain: {reason or 'no reason given'}"
    gate = f"{why} (triggers.{trigger}.approval)" if approval else None
    try:
        configure_backend(spec, store)
        state = start(spec.name, tag, spec.rollout, why, actor="keel-retrain", store=store, canary_approval=gate)
    except (RolloutError, RegistryError) as exc:
        text = f"rollout NOT started, bundle {tag} stays registered: {exc}"
        return {"status": "refused", "reason": str(exc), "text": text}
    gated = next((s["name"] for s in state.stages if s.get("approval_reason")), None)
    text = f"rollout {state.rollout_id} started: {tag} at stage {state.stage} ({state.traffic:.0%})"
    if gated:
        text += f"; entering {gated} needs an approval ({trigger} trigger)"
    return {
        "status": "started",
        "rollout_id": state.rollout_id,
        "stage": state.stage,
        "traffic": state.traffic,
        "approval_stage": gated,
        "text": text,
    }


def _fired_reason(decision: Decision) -> str:
    return "; ".join(f"{e.trigger}: {e.reason}" for e in decision.fired)


def _parameters(loaded: LoadedSpec) -> dict[str, Any]:
    return {
        "spec_path": str(loaded.path.resolve()),
        "overrides": list(loaded.overrides),
        "conf_dirs": [str(Path(d).resolve()) for d in loaded.conf_dirs],
    }


def _cron(schedule: Any) -> list[Cron]:
    return [Cron(schedule.cron, timezone=schedule.timezone)] if schedule else []


def deployments(loaded: LoadedSpec) -> list[Any]:
    """The spec's RunnerDeployments: retrain (one at a time), monitor and, with a rollout, the stage evaluation."""
    from flows.monitor import monitor_flow
    from flows.rollout import rollout_stage_flow

    spec = loaded.spec
    triggers = spec.triggers
    params = _parameters(loaded)
    tags = ["keel", spec.name]
    out = [
        retrain_flow.to_deployment(
            name=f"{spec.name}-retrain",
            schedules=_cron(triggers.schedule),
            parameters=params,
            tags=tags,
            concurrency_limit=1,  # two retrains of one spec would race for the champion alias
            description=f"Retrain {spec.name} (keel run) when its schedule fires; dedup via the trigger record",
        ),
        monitor_flow.to_deployment(
            name=f"{spec.name}-monitor",
            schedules=_cron(triggers.monitor),
            # scheduled: a trigger that fires starts the retrain deployment (dedup is in the record)
            parameters={**params, "start_retrain": True},
            tags=tags,
            description=f"Daily monitor of {spec.name}: PSI, metrics, trigger evaluation",
        ),
    ]
    if spec.rollout is not None:
        out.append(
            rollout_stage_flow.to_deployment(
                name=f"{spec.name}-rollout",
                schedules=_cron(spec.rollout.schedule),
                parameters=params,
                tags=tags,
                concurrency_limit=1,  # one evaluation at a time acts on the rollout record
                description=f"Evaluate {spec.name}'s live rollout stage: advance, hold, wait for approval or roll back",
            )
        )
    return out


def register(loaded: LoadedSpec) -> list[dict[str, Any]]:
    """Create or update the deployments on the Prefect API in PREFECT_API_URL; what was registered."""
    out = []
    for deployment in deployments(loaded):
        deployment_id = deployment.apply()
        crons = [getattr(s.schedule, "cron", None) for s in deployment.schedules or []]
        out.append({"name": f"{deployment.flow_name}/{deployment.name}", "id": str(deployment_id), "cron": crons})
    return out


def serve(loaded: LoadedSpec) -> None:
    """Register and run the deployments until interrupted (scheduled and UI-started runs execute here)."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments(loaded), print_starting_message=True)


def start_retrain(loaded: LoadedSpec, decision: Decision) -> dict[str, Any]:
    """A trigger fired: start the retrain deployment when a server has it, else run the flow in-process."""
    trigger = decision.fired[0].trigger if decision.fired else "manual"
    name = f"keel-retrain/{loaded.spec.name}-retrain"
    why = {"trigger": trigger, "approval": decision.approval, "reason": _fired_reason(decision)}
    try:
        from prefect.deployments import run_deployment

        run = run_deployment(name, parameters={**_parameters(loaded), **why}, timeout=0)
        return {"started": "deployment", "deployment": name, "flow_run_id": str(run.id)}
    except Exception as exc:  # no server, or the spec was never scheduled: the embedded default
        print(f"retrain deployment {name} not available ({type(exc).__name__}); running the retrain here")
    params = _parameters(loaded)
    result = retrain_flow(params["spec_path"], params["overrides"], params["conf_dirs"], **why)
    return {"started": "in-process", **result}
