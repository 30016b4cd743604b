"""Bodies of `keel rollout approve|evaluate|drill|outcomes` and `keel simulate` (pipeline/cli/ parses and prints).

Each returns (exit code, text for people, payload for --json); refusals are exit 1 with the reason.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipeline.registry import BundleStore, RegistryError
from pipeline.registry.home import spec_store
from pipeline.rollout.errors import RolloutError

Outcome = tuple[int, str, dict[str, Any]]
EXTRA_ACTIONS = ("approve", "evaluate", "drill", "outcomes")


def rollout_action(args: argparse.Namespace, loaded: Any, store: BundleStore) -> Outcome:
    name = loaded.spec.name
    try:
        if args.action == "approve":
            from pipeline.rollout.approvals import answer

            got = answer(name, not args.reject, args.comment or "", by=args.approved_by, store=store)
            where = f"resumed the paused flow run {got['flow_run_id']}" if got["via"] == "prefect" else (
                "recorded in the rollout history; the next stage evaluation acts on it"
            )  # fmt: skip
            return 0, f"{got['decision']} by {got['by']}: {where}", {"status": "ok", "approval": got}
        if args.action == "evaluate":
            from flows.rollout import rollout_stage_flow

            report = rollout_stage_flow(
                str(loaded.path), loaded.overrides, [str(d) for d in loaded.conf_dirs], args.now,
                args.approval_timeout, 2,
            )  # fmt: skip
            text = f"{report['decision']}: {report['reason']}"
            if "report" in report:
                text += f"\nreport: {report['report']['markdown']}"
            return 0, text, {"status": "ok", "report": report}
        if args.action == "drill":
            return _drill(args, loaded, store)
        return _outcomes(args, loaded, store)
    except (RolloutError, RegistryError, ValueError) as exc:
        return 1, f"keel rollout {args.action}: {exc}", {"status": "failed", "reason": str(exc)}


def _drill(args: argparse.Namespace, loaded: Any, store: BundleStore) -> Outcome:
    from pipeline.registry.aliases import aliases
    from pipeline.rollout.drill import http_request, render, run_drill
    from pipeline.rollout.simulate.traffic import traffic_for

    spec = loaded.spec
    champion = aliases(spec.name, store=store)["champion"]
    if champion is None:
        return 1, f"keel rollout drill: {spec.name!r} has no champion", {"status": "failed"}
    traffic = traffic_for(spec, store, champion)
    work = []
    for user in range(200):
        req = traffic.request(user)
        work.append((req.entity, http_request(req.path, req.body)))
    report = run_drill(
        args.url,
        spec.name,
        work,
        store=store,
        cycles=args.cycles,
        rate=args.rate,
        gap_s=args.gap,
        max_switch_ms=getattr(args, "max_switch_ms", None),
    )
    return (
        (0 if report.ok else 1),
        render(report),
        {"status": "ok" if report.ok else "failed", "drill": report.to_dict()},
    )


def _outcomes(args: argparse.Namespace, loaded: Any, store: BundleStore) -> Outcome:
    from pipeline.rollout.outcomes import append_outcomes, outcomes_dir, read_outcomes_csv

    if args.file is None:
        raise ValueError("keel rollout outcomes needs --file CSV (columns request_id, outcome, value)")
    rows = read_outcomes_csv(args.file)
    part = append_outcomes(outcomes_dir(store.keel_dir, loaded.spec.name), rows)
    return 0, f"{len(rows)} outcomes appended to {part}", {"status": "ok", "rows": len(rows), "part": str(part)}


def simulate_command(args: argparse.Namespace, loaded: Any) -> Outcome:
    from pipeline.rollout.simulate.run import SimConfig, render, simulate

    config = SimConfig(
        days=args.days,
        requests_per_day=args.requests_per_day,
        inject=args.inject,
        seed=args.seed,
        url=args.url,
        challenger=args.challenger,
        conns=args.conns,
    )
    try:
        result = simulate(loaded, config, spec_store(loaded.spec))
    except (RolloutError, RegistryError, ValueError, RuntimeError) as exc:
        return 1, f"keel simulate: {exc}", {"status": "failed", "reason": str(exc)}
    payload = {"status": "ok" if result.as_prescribed else "failed", "simulation": result.to_dict()}
    return (0 if result.as_prescribed else 1), render(result), payload
