"""`keel simulate SPEC --days N [--inject FAULT]`: a whole rollout on a virtual clock, against the real service.

Virtual time (ADR 0016): one virtual day is one batch of `requests_per_day` requests sent as fast
as the service answers, then synthetic outcomes, then the stage evaluation at the day boundary
with the clock set to start + day days. Stage durations, the record's timestamps and the stage
reports use the virtual clock; the service's immediate triggers keep their wall-clock window
(60 s, last 1000 requests), which at simulation speed spans the latest virtual hours, so a
fault trips them within the day it starts, as it would in production within minutes.

Faults (pipeline/rollout/simulate/faults.py, honoured only with KEEL_SIMULATION=1) start at the
first stage that routes traffic to the challenger: `challenger_errors` (every challenger answer
fails), `latency_spike` (twice the p99 trigger added to every challenger answer), `event_format_change` (the
challenger cannot parse one platform's requests), `worse_model` (no service fault: outcomes
make the challenger's CTR lower). Each must end in the rollback the spec prescribes at that
stage; `expected_outcome` states what that is, and the result says whether it happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.registry import BundleStore, promote
from pipeline.registry.aliases import aliases
from pipeline.registry.home import spec_store
from pipeline.rollout.backends import configure_backend
from pipeline.rollout.cycle import apply_decision, evaluate_current, log_dirs
from pipeline.rollout.drill import host_port, http_request, paced
from pipeline.rollout.errors import RolloutRefused
from pipeline.rollout.fairness_checks import is_fairness_check
from pipeline.rollout.outcomes import append_outcomes
from pipeline.rollout.record import read_rollout
from pipeline.rollout.simulate.faults import HEADER
from pipeline.rollout.simulate.traffic import Traffic, traffic_for
from pipeline.rollout.state import record_approval, start
from pipeline.serving.request_log import read_request_log
from pipeline.spec.load import LoadedSpec, dump_yaml
from pipeline.spec.schema import RolloutSpec

FAULTS = ("challenger_errors", "latency_spike", "worse_model", "event_format_change")
T0 = datetime(2030, 1, 1, tzinfo=UTC)  # virtual day 0; fixed so reports from two runs line up
REPO = Path(__file__).resolve().parents[3]


@dataclass
class SimConfig:
    days: int = 14
    requests_per_day: int = 2000
    inject: str | None = None
    seed: int = 0
    url: str | None = None  # a running service (KEEL_SIMULATION=1) over the spec's store; None: start one
    challenger: str | None = None  # default: the newest gate-passed bundle that is not the champion
    conns: int | None = None  # concurrent connections; None: 8 for /score, 2 for /recommend (below saturation)
    users: int = 1000
    base_ctr: float = 0.10
    better_lift: float = 0.25  # the challenger's relative CTR gain (a better model)
    worse_drop: float = 0.60  # worse_model: the challenger's relative CTR loss
    latency_ms: float | None = None  # latency_spike: added to each challenger answer; None: 2x the spec's p99 trigger
    fault_platform: str = "ios"
    trigger_min_samples: int = 50


@dataclass
class SimResult:
    outcome: str  # promoted | rolled_back | incomplete
    stage: str | None  # the stage it ended at (rolled back at, or the last one)
    by: str | None  # immediate trigger | stage evaluation | None
    reason: str | None
    expected: dict[str, Any]
    as_prescribed: bool
    days: list[dict[str, Any]] = field(default_factory=list)
    rollout_id: str | None = None
    champion: str | None = None
    wall_s: float = 0.0
    home: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def expected_outcome(spec: RolloutSpec, inject: str | None) -> dict[str, Any]:
    """What the spec prescribes for a fault: which rollback, at which stage, by which rule."""
    routed = [s.name for s in spec.stages if s.traffic > 0]
    if inject is None:
        return {"outcome": "promoted", "stage": spec.stages[-1].name, "by": None, "rule": None}
    first = routed[0] if routed else spec.stages[0].name
    immediate = spec.rollback.immediate
    if inject == "worse_model":
        return {
            "outcome": "rolled_back",
            "stage": first,
            "by": "stage evaluation",
            "rule": spec.rollback.evaluation.metric,
        }
    if inject == "latency_spike" and immediate.p99_latency_ms is not None:
        return {"outcome": "rolled_back", "stage": first, "by": "immediate trigger", "rule": "p99_latency_ms"}
    if inject in ("challenger_errors", "event_format_change") and immediate.error_rate is not None:
        return {"outcome": "rolled_back", "stage": first, "by": "immediate trigger", "rule": "error_rate"}
    rule = "p99_latency_ms" if inject == "latency_spike" else "error_rate"
    return {"outcome": "rolled_back", "stage": first, "by": "stage evaluation", "rule": rule}


class VirtualClock:
    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def simulation_service(home: Path, spec_file: Path, env: dict[str, str]) -> Iterator[str]:
    """`bentoml serve` with KEEL_SIMULATION=1 on a free loopback port over `home`; yields its URL."""
    import httpx

    from pipeline.serving.run import serve_command

    port = free_port()
    child = {k: v for k, v in os.environ.items() if k != "KEEL_REQUEST_LOG_DIR"}
    child.update(env, BENTOML_HOME=str(home), KEEL_SPEC=str(spec_file), KEEL_SIMULATION="1")
    child["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), child.get("PYTHONPATH", "")) if p)
    log = open(home / "serve.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(serve_command("127.0.0.1", port), cwd=REPO, env=child, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the simulation service exited {proc.returncode}; see {home / 'serve.log'}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulation service was not ready in 90 s; see {home / 'serve.log'}")
            time.sleep(0.2)
        yield url
    finally:
        from pipeline.serving.run import _stop

        if proc.poll() is None:
            _stop(proc)
        log.close()


def pick_challenger(store: BundleStore, name: str, champion: str) -> str:
    for ref in store.list(name):
        if ref.tag != champion and ref.manifest.gate_passed:
            return ref.tag
    raise RolloutRefused(f"no gate-passed bundle of {name!r} other than the champion {champion}: train a challenger")


def copy_bundles(source: BundleStore, target: BundleStore, tags: list[str]) -> None:
    """The champion and challenger, byte for byte, into the simulation's own store (their manifests still verify)."""
    for tag in tags:
        ref = source.get(tag)
        name, version = tag.split(":", 1)
        dest = target.bundle_dir(name, version)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ref.path, dest)
        target.get(tag).verify()


def simulate(loaded: LoadedSpec, config: SimConfig, store: BundleStore | None = None, log=print) -> SimResult:
    """Run the simulation; the real store is only read unless `config.url` points at a service over it."""
    spec = loaded.spec
    if spec.rollout is None:
        raise RolloutRefused(f"{loaded.path} has no rollout section")
    if config.inject is not None and config.inject not in FAULTS:
        raise ValueError(f"--inject must be one of {', '.join(FAULTS)}, got {config.inject!r}")
    if config.latency_ms is None:  # a spike the spec's own p99 trigger must catch, whatever its level
        threshold = spec.rollout.rollback.immediate.p99_latency_ms
        config = replace(config, latency_ms=2 * threshold if threshold else 150.0)
    source = store or spec_store(spec)
    champion = aliases(spec.name, store=source)["champion"]
    if champion is None:
        raise RolloutRefused(f"{spec.name!r} has no champion in {source.home}: train and promote one first")
    challenger = config.challenger or pick_challenger(source, spec.name, champion)
    began = time.perf_counter()
    if config.url:
        configure_backend(spec, source)  # write the rollout where that service reads it (file or Redis)
        result = _run(loaded, config, source, config.url, champion, challenger, log)
    else:
        sim_home = Path(tempfile.mkdtemp(prefix=f"keel-sim-{spec.name}-"))
        sim_store = BundleStore(sim_home)
        copy_bundles(source, sim_store, [champion, challenger])
        promote(spec.name, champion, "keel simulate: the champion at the start", store=sim_store)
        spec_file = sim_home / "spec.yaml"
        # its own service and store: the rollout record is the file beside that store, never a shared Redis
        resolved = copy.deepcopy(loaded.resolved)
        resolved.setdefault("runtime", {})["rollout_state"] = "file"
        spec_file.write_text(dump_yaml(resolved), encoding="utf-8")
        env = {"KEEL_TRIGGER_MIN_SAMPLES": str(config.trigger_min_samples), "KEEL_REQUEST_LOG_FLUSH_S": "0.2",
               "KEEL_WORKERS": "1"}  # fmt: skip
        log(f"simulation store {sim_home}; starting the service ...")
        with simulation_service(sim_home, spec_file, env) as url:
            result = _run(loaded, config, sim_store, url, champion, challenger, log)
        result.home = str(sim_home)
    result.wall_s = time.perf_counter() - began
    return result


def _run(
    loaded: LoadedSpec, config: SimConfig, store: BundleStore, url: str, champion: str, challenger: str, log
) -> SimResult:
    spec = loaded.spec
    rollout: RolloutSpec = spec.rollout  # type: ignore[assignment]
    name = spec.name
    clock = VirtualClock()
    traffic = traffic_for(spec, store, champion, config.seed)
    expected = expected_outcome(rollout, config.inject)
    state = start(name, challenger, rollout, f"keel simulate (inject={config.inject})", store=store, clock=clock)
    log(f"rollout {state.rollout_id}: {challenger} against {champion}, stages "
        + " -> ".join(f"{s['name']} {s['traffic']:.0%} {s['duration']}" for s in state.stages))  # fmt: skip
    _wait_service(url, state)
    requests_dir, outcomes = log_dirs(store, name)
    base_dir = loaded.base_dir
    rng = np.random.default_rng(config.seed)
    days: list[dict[str, Any]] = []
    for day in range(1, config.days + 1):
        state = read_rollout(store.keel_dir, name)
        faulty = config.inject is not None and state.live and state.traffic > 0
        replies = _send_day(url, traffic, config, rng, faulty)
        ok = [r for r in replies if r.status == 200]
        clicks = _clicks(ok, config, rng, rollout.rollback.evaluation.metric)
        append_outcomes(outcomes, clicks, ts=clock.now)
        _wait_logged(requests_dir, {r.request_id for r in ok if r.request_id})
        time.sleep(0.3)  # the watcher checks the immediate triggers every 0.25 s
        clock.now = T0 + timedelta(days=day)
        summary: dict[str, Any] = {
            "day": day,
            "stage": state.stage,
            "traffic": state.traffic,
            "requests": len(replies),
            "failed": len(replies) - len(ok),
            "challenger_answers": sum(1 for r in ok if r.side == "challenger"),
            "clicks": len(clicks),
            "fault": faulty,
        }
        report = evaluate_current(name, rollout, store, clock, system=spec, base_dir=base_dir)
        if report is not None and report.decision == "await_approval":
            record_approval(name, "approve", "simulated approver", by="keel-simulate", via="simulator",
                            store=store, clock=clock)  # fmt: skip
            report = evaluate_current(name, rollout, store, clock, system=spec, base_dir=base_dir)
        if report is not None:
            apply_decision(report, store, clock)
            summary.update(decision=report.decision, reason=report.reason, p_value=report.metric.get("p_value"),
                           relative_change=report.metric.get("relative_change"),
                           verdict=report.metric.get("verdict"), z=report.metric.get("z"))  # fmt: skip
            fair = [c for c in report.checks if is_fairness_check(c.name)]
            summary["fairness"] = {c.name: {"passed": c.passed, "value": c.value, "threshold": c.threshold,
                                            "detail": c.detail} for c in fair}  # fmt: skip
        state = read_rollout(store.keel_dir, name)
        summary["status_after"] = state.status
        days.append(summary)
        log(f"day {day:>2}: {summary['stage']:<18} {summary['requests']} requests, "
            f"{summary['challenger_answers']} by the challenger, {summary['clicks']} clicks -> "
            f"{summary.get('decision', '-')}: {summary.get('reason', '')}{_fairness_note(summary)}")  # fmt: skip
        if not state.live:
            break
        _wait_service(url, state)
    return _result(store, name, state, expected, days)


def _fairness_note(summary: dict[str, Any]) -> str:
    """` [exposure_equity 0.91 (min 0.6) ok, ...]` for the day's fairness checks, nothing without them."""
    checks = summary.get("fairness") or {}
    if not checks:
        return ""
    word = {True: "ok", False: "FAILED", None: "not yet"}
    parts = [
        f"{name} {'-' if c['value'] is None else format(c['value'], '.3f')} (bound {c['threshold']}) "
        f"{word[c['passed']]}"
        for name, c in checks.items()
    ]
    return " [" + ", ".join(parts) + "]"


def _send_day(url: str, traffic: Traffic, config: SimConfig, rng, faulty: bool):
    host, port = host_port(url)
    users = rng.integers(0, config.users, size=config.requests_per_day)
    work = []
    for u in users:
        req = traffic.request(int(u))
        headers = {}
        if faulty:
            fault = _fault_header(config, req.platform)
            if fault:
                headers[HEADER] = fault
        work.append((req.entity, http_request(req.path, req.body, headers)))
    conns = config.conns or (2 if traffic.path.startswith("/recommend") else 8)
    replies, _ = asyncio.run(paced(host, port, work, conns, 0.0))
    return replies


def _fault_header(config: SimConfig, platform: str) -> str | None:
    if config.inject == "challenger_errors":
        return "error"
    if config.inject == "latency_spike":
        return f"latency={config.latency_ms:g}"
    if config.inject == "event_format_change" and platform == config.fault_platform:
        return f"format:{platform}"
    return None


def _clicks(ok, config: SimConfig, rng, metric: str) -> list[tuple[str, str, float]]:
    """A click per answered request with the side's CTR: a better challenger clicks more, a worse one less."""
    lift = -config.worse_drop if config.inject == "worse_model" else config.better_lift
    rows = []
    for r in ok:
        ctr = config.base_ctr * (1 + lift) if r.side == "challenger" else config.base_ctr
        if r.request_id and rng.random() < ctr:
            rows.append((r.request_id, metric, 1.0))
    return rows


def _wait_logged(directory: Path, ids: set[str], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while ids and time.monotonic() < deadline:
        frame = read_request_log(directory)
        if ids <= set(frame["request_id"]):
            return
        time.sleep(0.1)


def _wait_service(url: str, state, timeout_s: float = 5.0) -> None:
    """Until the service routes the record's stage (best effort: a service without /status is not waited for)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            body = httpx.get(f"{url}/status", timeout=2).json()
        except (httpx.HTTPError, ValueError):
            return
        rollout = body.get("rollout") or {}
        if not state.live or (rollout.get("stage") == state.stage and rollout.get("routing")):
            return
        time.sleep(0.05)


def _result(store: BundleStore, name: str, state, expected: dict[str, Any], days: list[dict]) -> SimResult:
    by = reason = None
    if state.status == "completed":
        outcome = "promoted"
    elif state.status == "rolled_back":
        outcome = "rolled_back"
        event = next(e for e in reversed(state.events) if e["action"] == "rollback")
        reason = event.get("reason", "")
        by = "immediate trigger" if reason.startswith("immediate trigger") else "stage evaluation"
    else:
        outcome = "incomplete"
    rule_seen = expected["rule"] is None or expected["rule"] in (reason or "")
    as_prescribed = (
        outcome == expected["outcome"] and state.stage == expected["stage"] and by == expected["by"] and rule_seen
    )
    return SimResult(
        outcome=outcome,
        stage=state.stage,
        by=by,
        reason=reason,
        expected=expected,
        as_prescribed=as_prescribed,
        days=days,
        rollout_id=state.rollout_id,
        champion=aliases(name, store=store)["champion"],
    )


def render(result: SimResult) -> str:
    exp = result.expected
    lines = [
        f"simulation: {result.outcome} at stage {result.stage} after {len(result.days)} virtual days "
        f"({result.wall_s:.1f} s wall)",
    ]
    if result.reason:
        lines.append(f"rolled back by {result.by}: {result.reason}")
    lines.append(f"champion now {result.champion}")
    lines.append(
        f"prescribed: {exp['outcome']} at {exp['stage']}" + (f" by {exp['by']} ({exp['rule']})" if exp["by"] else "")
        + f" -> {'as prescribed' if result.as_prescribed else 'NOT as prescribed'}"
    )  # fmt: skip
    return "\n".join(lines)
