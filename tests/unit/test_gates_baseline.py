"""`vs: baseline` against the promoted history: the seed's slow slide passes vs the champion, not vs the best."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.gates.evaluate import baseline_reference, evaluate_gates
from pipeline.spec.schema import BaselineSpec, GateSpec

# five weekly models after the first: each within 1-2% of the last, 0.186 -> 0.171 overall
SLIDE = [0.1860, 0.1829, 0.1799, 0.1769, 0.1739, 0.1710]
GATES = {
    "ndcg_vs_champion": GateSpec(metric="ndcg@20", vs="champion", max_relative_drop=0.02),
    "ndcg_vs_baseline": GateSpec(
        metric="ndcg@20", vs="baseline", max_relative_drop=0.05, baseline=BaselineSpec(window=5, statistic="best")
    ),
}


def replay(gates: dict[str, GateSpec]) -> list[tuple[float, bool, bool]]:
    """Each week's challenger against the promoted history so far (newest first)."""
    promoted = [{"ndcg@20": SLIDE[0]}]
    out = []
    for value in SLIDE[1:]:
        report = evaluate_gates(gates, {"ndcg@20": value}, "recommendation", promoted[0], history=promoted)
        by_name = {r.name: r.passed for r in report.results}
        out.append((value, by_name["ndcg_vs_champion"], by_name.get("ndcg_vs_baseline", True)))
        if report.passed:
            promoted.insert(0, {"ndcg@20": value})
    return out


def test_the_slide_passes_every_champion_gate_but_not_the_baseline() -> None:
    weeks = replay(GATES)
    rejected = [(value, champion) for value, champion, baseline in weeks if not baseline]
    # the fourth step: 1.7% below the champion (passes), 6.5% below the best of the last five (0.186)
    assert rejected[0] == (0.1739, True)
    assert all(champion for value, champion, _ in weeks if value > 0.1739)
    champion_only = replay({"ndcg_vs_champion": GATES["ndcg_vs_champion"]})
    assert all(passed for _, passed, _ in champion_only)  # invisible to a champion-only comparison


def test_statistics_and_direction() -> None:
    history = [{"m": 0.17}, {"m": 0.18}, {"m": 0.186}, {"m": None}, {"m": 0.10}]
    assert baseline_reference(history, "m", BaselineSpec(window=3, statistic="best")) == {"m": 0.186}
    assert baseline_reference(history, "m", BaselineSpec(window=3, statistic="best"), False) == {"m": 0.17}
    assert baseline_reference(history, "m", BaselineSpec(window=3, statistic="mean"))["m"] == (0.17 + 0.18 + 0.186) / 3
    # None is skipped: the median of 0.17, 0.18, 0.186, 0.10
    assert baseline_reference(history, "m", BaselineSpec(window=5, statistic="median"))["m"] == pytest.approx(0.175)
    assert baseline_reference([], "m", BaselineSpec()) is None


def test_no_promoted_history_passes_and_says_so() -> None:
    report = evaluate_gates({"b": GATES["ndcg_vs_baseline"]}, {"ndcg@20": 0.1}, "recommendation", history=[])
    assert report.passed and "no baseline yet" in report.results[0].reason
    assert "best of last 5" in report.results[0].rule


def test_promoted_history_from_the_registry(tmp_path) -> None:
    """Newest champion first; a rolled-back champion is no yardstick; never-promoted bundles do not count."""
    from flows.evaluate import promoted_history
    from pipeline.registry import BundleStore, promote, rollback, save_bundle
    from pipeline.spec.load import load_spec

    store = BundleStore(tmp_path / "bentoml")
    spec = load_spec(Path(__file__).resolve().parents[2] / "specs" / "streamflow_churn.yaml").spec

    def save(auc: float) -> str:
        src = tmp_path / f"src-{auc}"
        src.mkdir()
        (src / "model.txt").write_text(str(auc))
        kwargs = {"spec_sha256": "0" * 64, "data_fingerprint": "fp", "code_version": "t", "gate_passed": True}
        return save_bundle(spec.name, src, metrics={"auc": auc}, store=store, **kwargs).tag

    for auc in (0.80, 0.82):
        promote(spec.name, save(auc), reason="test", store=store)
    save(0.99)  # registered, never promoted
    promote(spec.name, save(0.70), reason="test", store=store)
    assert [m["auc"] for m in promoted_history(spec, store)] == [0.70, 0.82, 0.80]
    rollback(spec.name, reason="bad in production", store=store)
    assert [m["auc"] for m in promoted_history(spec, store)] == [0.82, 0.80]


# ---------------------------------------------------------------- a same-run baseline by name (issue 14.3)

SAME_RUN = {"ease": {"ndcg@10": 0.0777}, "popularity": {"ndcg@10": 0.0558}}


def test_a_named_baseline_is_this_runs_on_the_same_users_not_the_history() -> None:
    vs_ease = GateSpec(metric="ndcg@10", vs="baseline", max_drop=0.0, baseline=BaselineSpec(name="ease"))
    history = [{"ndcg@10": 0.01}]  # a weak promoted history that the named gate must ignore
    [result] = evaluate_gates(
        {"beats_ease": vs_ease}, {"ndcg@10": 0.0655}, "recommendation", history=history, same_run=SAME_RUN
    ).results
    assert not result.passed and result.reference == pytest.approx(0.0777)
    assert "vs baseline ease 0.0777" in result.reason and "same run" in result.rule
    [result] = evaluate_gates({"beats_ease": vs_ease}, {"ndcg@10": 0.081}, "recommendation", same_run=SAME_RUN).results
    assert result.passed


def test_a_named_baseline_missing_from_the_run_fails_closed() -> None:
    vs_als = GateSpec(metric="ndcg@10", vs="baseline", max_drop=0.01, baseline=BaselineSpec(name="als"))
    [result] = evaluate_gates({"g": vs_als}, {"ndcg@10": 0.5}, "recommendation", same_run=SAME_RUN).results
    assert not result.passed and "no same-run baseline 'als'" in result.reason


def test_check_refuses_a_baseline_name_the_spec_does_not_fit(tmp_path: Path) -> None:
    from pipeline.spec.errors import SpecError
    from pipeline.spec.load import load_spec

    spec = Path(__file__).resolve().parents[2] / "specs" / "streamrec.yaml"
    ok = load_spec(spec, ["+gates.beats_ease={metric: ndcg@10, vs: baseline, max_drop: 0.0, baseline: {name: ease}}"])
    assert ok.spec.gates["beats_ease"].baseline.name == "ease"
    with pytest.raises(SpecError) as bad:
        load_spec(spec, ["+gates.beats_x={metric: ndcg@10, vs: baseline, max_drop: 0.0, baseline: {name: svd}}"])
    assert "gates.beats_x.baseline.name" in bad.value.render() and "ease" in bad.value.render()
