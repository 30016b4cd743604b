"""`keel simulate` against the real service: a better challenger is promoted; each injected fault ends in
the rollback the spec prescribes, at the stage it prescribes (the first stage that routes traffic).

The StreamRec test runs the spec's own rollout (conf/rollout/two_phase_canary.yaml: shadow 3d -> canary
10% 3d -> canary-fairness 25% 4d with exposure_equity and hit_disparity@10 -> ramp-50 -> full) over two
8000-row bundles; see test_streamrec_promotes_through_two_phase_canary_with_its_fairness_stage.

Tiny settings for the churn tests: a five-day rollout (tests/integration/conf_sim/rollout/sim_small.yaml: shadow 1d ->
canary 20% 2d -> ramp-50 (approval) 1d -> full 1d), 400-600 requests per virtual day, two 3000-row
bundles. The promotion runs through the CLI with a service the simulator starts itself; the four
faults share one service started here with KEEL_SIMULATION=1 (faults only leave the champion as it is).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.rollout.simulate.run import SimConfig, simulate
from pipeline.rollout.state import history
from pipeline.spec.load import load_spec
from tests.integration.serving_fixtures import SPEC_PATH, build_bundle, running_service

pytestmark = pytest.mark.slow
CONF = Path(__file__).parent / "conf_sim"
OVERRIDES = ["rollout=sim_small"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    home = tmp_path_factory.mktemp("simulate") / "home"
    champion = build_bundle(home, rows=3000).tag
    challenger = build_bundle(home, rows=3000, champion=False, overrides=["model.params.num_leaves=7"]).tag
    return home, champion, challenger


@pytest.fixture(scope="module")
def service(bundles) -> Iterator[str]:
    home, _, _ = bundles
    env = {"KEEL_SIMULATION": "1", "KEEL_REQUEST_LOG_FLUSH_S": "0.2", "KEEL_TRIGGER_MIN_SAMPLES": "50"}
    with running_service(home, env) as (url, _):
        yield url


@pytest.mark.parametrize(
    ("fault", "by", "rule"),
    [
        ("challenger_errors", "immediate trigger", "rollback.immediate.error_rate"),
        ("latency_spike", "immediate trigger", "rollback.immediate.p99_latency_ms"),
        ("event_format_change", "immediate trigger", "rollback.immediate.error_rate"),
        ("worse_model", "stage evaluation", "ctr:"),
    ],
)
def test_each_fault_ends_in_the_prescribed_rollback(bundles, service, monkeypatch, fault, by, rule) -> None:
    home, champion, challenger = bundles
    monkeypatch.setenv("BENTOML_HOME", str(home))
    store = BundleStore(home)
    loaded = load_spec(SPEC_PATH, OVERRIDES, [CONF])
    # worse_model is decided by the margin test (ADR 0023), whose boundaries hold over every look: at 600
    # requests a day (120 at the canary's 20%) a -60% challenger is rolled back within the canary's 2 days
    # only ~84% of the time (computed), at 1,200 ~99%. The faults the service's triggers catch keep 600.
    per_day = 1200 if fault == "worse_model" else 600
    config = SimConfig(days=5, requests_per_day=per_day, inject=fault, url=service, challenger=challenger, seed=3)
    result = simulate(loaded, config, store, log=lambda _: None)
    assert result.as_prescribed, result.to_dict()
    assert (result.outcome, result.stage, result.by) == ("rolled_back", "canary", by)
    assert rule in result.reason
    assert aliases(loaded.spec.name, store=store)["champion"] == champion  # a rollback never touches the champion
    events = [e for e in history(loaded.spec.name, store=store) if e["rollout_id"] == result.rollout_id]
    rollback = [e for e in events if e["action"] == "rollback"]
    assert len(rollback) == 1 and rollback[0]["stage"] == "canary"
    if fault == "worse_model":
        day = result.days[-1]
        assert day["p_value"] < 0.05 and day["relative_change"] < -0.3
        assert rollback[0]["actor"] == "keel-rollout-evaluation"
    else:
        assert rollback[0]["actor"].startswith("keel-serving:")  # the service itself, not the daily flow
        assert result.days[-1]["failed"] == 0  # the champion answered every request the challenger failed


def test_a_better_challenger_is_promoted_through_every_stage(bundles, capsys, monkeypatch, request) -> None:
    home, champion, challenger = bundles
    monkeypatch.setenv("BENTOML_HOME", str(home))
    argv = ["simulate", str(SPEC_PATH), *OVERRIDES, "--conf", str(CONF), "--days", "7", "--requests-per-day", "400",
            "--challenger", challenger, "--json"]  # fmt: skip
    code = main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    payload = json.loads(out[-1])["simulation"]
    request.addfinalizer(lambda: shutil.rmtree(payload["home"], ignore_errors=True))  # the simulator's own store
    assert code == 0, payload
    assert payload["outcome"] == "promoted" and payload["champion"] == challenger
    assert [d["stage"] for d in payload["days"]] == ["shadow", "canary", "canary", "ramp-50", "full"]
    assert [d["decision"] for d in payload["days"]] == ["advance", "hold", "advance", "advance", "advance"]
    assert all(d["failed"] == 0 for d in payload["days"])
    full = payload["days"][-1]
    assert full["challenger_answers"] == full["requests"]  # 100%: the challenger answers everyone
    # the simulator ran in its own store: the real one is untouched
    assert aliases(load_spec(SPEC_PATH).spec.name, store=BundleStore(home))["champion"] == champion
    sim_store = BundleStore(Path(payload["home"]))
    events = history(load_spec(SPEC_PATH).spec.name, store=sim_store)
    approval = [e for e in events if e["action"] == "approval"]
    assert approval and approval[0]["via"] == "simulator" and approval[0]["for_stage"] == "ramp-50"


# ---------------------------------------------------------------- StreamRec through two_phase_canary

STREAMREC = SPEC_PATH.parent / "streamrec.yaml"
# A tiny StreamRec whose bundles must pass their gates to be rolled out (the gates are not under test here):
# ~86 evaluated users, so min_users 50, and equity on its point estimate (its interval is wide at this size)
REC_DATA = [
    "data.rows=8000",
    "data.scenario.items=600",
    "model.params.epochs=2",
    "evaluation.min_users=50",
    "gates.exposure_equity_language.decide_on=point",
]
# The shipped stages and durations; min_samples scaled from 2000 to 600 requests a day and the user
# groups to language only with 50 users each (600 challenger requests at 25% over 4 days, ~100 a group).
REC_SCALE = ["rollout.stages.1.min_samples=1500", "rollout.stages.2.min_samples=2000",
             "fairness.min_group_size=50", "fairness.groups=[[language]]"]  # fmt: skip


@pytest.fixture(scope="module")
def streamrec_home(tmp_path_factory: pytest.TempPathFactory, prefect_api) -> Path:
    """Two `keel run`s of the tiny StreamRec (the second is the newest, so the first is the gate-passed other)."""
    root = tmp_path_factory.mktemp("simulate-streamrec")
    home = root / "home"
    for _ in range(2):
        argv = ["run", str(STREAMREC), *REC_DATA, f"runtime.bentoml_home={home}", f"runtime.runs_dir={root / 'runs'}"]
        assert main(argv) == 0
    return home


def test_streamrec_promotes_through_two_phase_canary_with_its_fairness_stage(streamrec_home, capsys) -> None:
    loaded = load_spec(STREAMREC, [*REC_DATA, *REC_SCALE, f"runtime.bentoml_home={streamrec_home}"])
    store = BundleStore(streamrec_home)
    champion = aliases("streamrec", store=store)["champion"]
    lines: list[str] = []
    # a 3% click rate: with ~100 users a group, a 10% CTR's noise alone spreads Hit@10 by group past
    # the 0.10 bound now and then (the check then holds as inconclusive, as it should, but the test would too)
    config = SimConfig(days=14, requests_per_day=600, seed=5, base_ctr=0.03)
    result = simulate(loaded, config, store, log=lines.append)
    shutil.rmtree(result.home, ignore_errors=True)
    assert result.outcome == "promoted" and result.as_prescribed, "\n".join(lines)
    timeline = "\n".join(lines)
    stages = [d["stage"] for d in result.days]
    fair_days = stages.count("canary-fairness")  # 4, or more if noise left a check inconclusive for a day
    expected = ["shadow"] * 3 + ["canary-predictive"] * 3 + ["canary-fairness"] * fair_days + ["ramp-50", "full"]
    assert stages == expected and fair_days >= 4, timeline
    last = [d for d in result.days if d["stage"] == "canary-fairness"][-1]
    assert last["decision"] == "advance", timeline
    equity, disparity = last["fairness"]["exposure_equity"], last["fairness"]["hit_disparity@10"]
    assert equity["passed"] and equity["threshold"] == 0.6 and equity["value"] >= 0.6, timeline
    assert "exposure_equity[language]" in equity["detail"], timeline
    assert disparity["passed"] and disparity["threshold"] == 0.10 and disparity["value"] <= 0.10, timeline
    assert result.champion != champion  # the challenger was promoted (in the simulator's own store)
    assert aliases("streamrec", store=store)["champion"] == champion  # the real store is untouched


@pytest.mark.parametrize(
    ("fault", "by", "rule"),
    [
        ("latency_spike", "immediate trigger", "p99_latency_ms"),
        ("challenger_errors", "immediate trigger", "error_rate"),
        ("event_format_change", "immediate trigger", "error_rate"),
        ("worse_model", "stage evaluation", "ctr"),
    ],
)
def test_streamrec_faults_roll_back_at_the_first_routed_stage(streamrec_home, fault: str, by: str, rule: str) -> None:
    loaded = load_spec(STREAMREC, [*REC_DATA, *REC_SCALE, f"runtime.bentoml_home={streamrec_home}"])
    lines: list[str] = []
    # worse_model needs clicks to be measured: 10% of 1,200 requests a day reach the challenger.
    # The service's immediate triggers wait for 20 challenger requests (the CLI default is 50): at
    # 10% of 600 a day the challenger gets ~60 +- 8, and a day under 50 would leave an error burst
    # to the daily evaluation instead (same limit, other mechanism: not what the spec prescribes).
    per_day = 1200 if fault == "worse_model" else 600
    config = SimConfig(days=6, requests_per_day=per_day, seed=6, inject=fault, trigger_min_samples=20)
    result = simulate(loaded, config, BundleStore(streamrec_home), log=lines.append)
    shutil.rmtree(result.home, ignore_errors=True)
    timeline = "\n".join(lines)
    assert result.as_prescribed, timeline
    assert (result.outcome, result.stage, result.by) == ("rolled_back", "canary-predictive", by), timeline
    assert rule in result.reason, timeline
    if by == "immediate trigger":
        assert len(result.days) == 4, timeline  # shadow 3 days, then the first routed day
