"""`keel rollout drill` against the real churn service: back and forth to the warm standby under steady load."""

from __future__ import annotations

import json
import warnings

import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases, history
from tests.integration.serving_fixtures import SPEC_PATH, build_bundle, running_service

pytestmark = pytest.mark.slow


def _drill(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["rollout", "drill", str(SPEC_PATH), *argv, "--json"])
    return code, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


GAP_S = 0.8
SWITCH_BOUND_MS = GAP_S * 1e3 / 2  # a switch must show well inside the gap: this test's correctness bound


def drill_problems(drill: dict) -> tuple[list[str], list[str]]:
    """(failures, timing misses) of a drill, in words: a bare dict in the assertion said nothing.

    Why two lists: the old bundle should stop answering within TARGET (100 ms) of the alias write,
    and on this shared 2-core machine under a load average of 5-6 that missed about one run in five
    (measured: the old bundle answered a request sent 126 ms after the write, every request still
    answered): the watcher thread was not scheduled in time, not a wrong switch. The drill reports
    that timing and fails on it only with --max-switch-ms (docs/cli.md); the 100 ms target is
    bench/bench_rollout.py's to measure. This test fails on what is wrong at any speed (a failed
    request, an answer from a third bundle, a switch that never showed or showed later than half
    the gap) and reports a miss of the target as a warning with the numbers.
    """
    failures, misses = [], []
    if drill["failed"]:
        failures.append(f"{drill['failed']} of {drill['requests']} requests failed (no 200 answer)")
    if drill["third_bundle"]:
        failures.append(f"{drill['third_bundle']} answers came from neither the champion nor the standby")
    for n, s in enumerate(drill["switches"], start=1):
        what = f"switch {n} ({s['direction']}: {s['old']} -> {s['new']}, alias write {s['write_ms']:.0f} ms)"
        timing = (
            f"last request the old bundle answered was sent {s['switch_ms'] or 0:.0f} ms after the write began, "
            f"first answer from the new one at {s['first_new_ms'] or float('nan'):.0f} ms"
        )
        if s["first_new_ms"] is None:
            failures.append(f"{what}: the service never answered from {s['new']} before the next switch")
        elif (s["switch_ms"] or 0) > SWITCH_BOUND_MS:
            failures.append(f"{what}: the old bundle still answered {SWITCH_BOUND_MS:.0f} ms on ({timing})")
        elif s["old_after_target"]:
            misses.append(
                f"{what}: {s['old_after_target']} requests sent over {drill['target_ms']:.0f} ms after the write "
                f"were answered by the old bundle ({timing})"
            )
    return failures, misses


def test_drill_switches_to_the_standby_and_back_without_a_failed_request(tmp_path, capsys, monkeypatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    first = build_bundle(home, rows=2000)
    code, payload = _drill(capsys, "--url", "http://127.0.0.1:9")  # a champion but no standby yet
    assert code == 1 and "warm standby" in payload["reason"]
    second = build_bundle(home, rows=2000, overrides=["model.params.num_leaves=7"])  # promoted: first is standby
    store = BundleStore(home)
    before = aliases(second.name, store=store)
    assert before["standby"] == first.tag
    env = {"KEEL_WORKERS": "1", "KEEL_WATCH_INTERVAL_S": "0.01"}  # a 10 ms tick: less of the target spent polling
    with running_service(home, env) as (url, _):
        code, payload = _drill(capsys, "--url", url, "--cycles", "2", "--rate", "100", "--gap", str(GAP_S))
    drill = payload["drill"]
    failures, misses = drill_problems(drill)
    assert not failures, f"drill exit {code}: " + "; ".join(failures)
    assert code == 0 and drill["ok"], (code, drill)  # a missed 100 ms target is reported, not a failure
    assert drill["missed_target"] == sum(1 for s in drill["switches"] if s["old_after_target"]), drill
    for miss in misses:
        warnings.warn(f"drill missed its {drill['target_ms']:.0f} ms target (a loaded machine): {miss}", stacklevel=1)
    assert drill["requests"] >= 300, f"only {drill['requests']} requests were sent (expected 400 at 100/s)"
    assert [s["direction"] for s in drill["switches"]] == ["to standby", "back"] * 2, drill["switches"]
    for s in drill["switches"]:
        assert s["new"] == (first.tag if s["direction"] == "to standby" else second.tag), s
    assert aliases(second.name, store=store) == before  # the drill leaves the aliases as it found them
    drills = [e for e in history(second.name, store=store) if "drill" in e.get("reason", "")]
    assert len(drills) >= 4
