"""The gate report reads in a minute: verdict and gate table on top, details below, no wall of text."""

from __future__ import annotations

import base64
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from pipeline.gates.evaluate import evaluate_gates
from pipeline.gates.report import render_gates, render_run_details
from pipeline.monitoring.charts import history_chart
from pipeline.reports.artifact import embed_images
from pipeline.reports.format import fmt_count, fmt_number, save_png
from pipeline.spec.schema import GateSpec

TASK = "binary_classification"
TOP = 30
PNG = b"\x89PNG\r\n\x1a\n"


def _gates() -> dict[str, GateSpec]:
    specs = {
        "auc": {"min": 0.75},
        "brier": {"max": 0.2},
        "auc_vs_champion": {"metric": "auc", "vs": "champion", "max_drop": 0.01},
        "f1": {"min": 0.9, "blocking": False},
        "tpr_gap_age_band": {"metric": "tpr_gap[age_band]", "max": 0.15},
        "hit_disparity": {"metric": "hit_disparity@10", "max": 0.2},
        "pr_auc": {"min": 0.3},
    }
    return {name: GateSpec(**spec) for name, spec in specs.items()}


def _report(auc: float = 0.86):
    metrics = {"auc": auc, "brier": 0.1, "f1": 0.5, "tpr_gap[age_band]": 0.05}  # pr_auc was not computed
    insufficient = {"hit_disparity@10": "every user group below 200 users"}
    return evaluate_gates(_gates(), metrics, TASK, champion={"auc": 0.85}, insufficient=insufficient)


def test_top_30_lines_have_the_verdict_and_every_gate() -> None:
    report = _report()
    text = render_gates(report, "Gate report — churn (x:1)", "NOT promoted (a gate said no)", False, ["bundle `x:1`"])
    top = text.splitlines()[:TOP]
    assert len(text.splitlines()) <= TOP
    assert top[2].startswith("**NOT promoted**") and "pr_auc was not computed" in top[2]  # one line: verdict + why
    for gate in _gates():
        assert any(line.startswith(f"| {gate}") for line in top), gate
    computed = top[top.index("| gate | value [interval] | rule | champion / baseline | evidence | result |") :]
    assert "| auc_vs_champion (`auc`) | 0.8600 | vs champion: drop <= 0.01 | 0.8500 | — | pass |" in computed
    assert "| f1 | 0.5000 | min 0.9 | — | — | fail, non-blocking |" in computed
    first = render_gates(evaluate_gates(_gates(), {"auc": 0.9}, TASK), "t")
    assert "| auc_vs_champion (`auc`) | 0.9000 | vs champion: drop <= 0.01 | none yet | — | pass |" in first
    # not computed / insufficient gates are listed apart from the passed and failed ones
    missing = top[next(i for i, line in enumerate(top) if line.startswith("**Not decided (2)**")) :]
    assert any(line.startswith("| pr_auc | — | not computed |") for line in missing)
    assert any(line.startswith("| hit_disparity (`hit_disparity@10`) | — | insufficient data |") for line in missing)
    table = top[: top.index(next(line for line in top if line.startswith("**Not decided")))]
    assert not any(line.startswith(("| pr_auc", "| hit_disparity")) for line in table)


def test_promoted_verdict_counts_blocking_gates() -> None:
    spec = {"auc": GateSpec(min=0.7), "f1": GateSpec(min=0.1, blocking=False)}
    report = evaluate_gates(spec, {"auc": 0.8, "f1": 0.5}, TASK)
    line = render_gates(report, "t", "promoted to champion", True).splitlines()[2]
    assert line == "**PROMOTED** to champion: all 1 blocking gates passed (2 gates in all)"
    held = render_gates(report, "t", "gates passed, held for the staged rollout", False).splitlines()[2]
    assert held == "**HELD**, not promoted: all 1 blocking gates passed (2 gates in all); held for the staged rollout"
    failed = render_gates(_report(auc=0.7), "t", "NOT promoted", False).splitlines()[2]
    assert "auc 0.7 is below min 0.75" in failed and "(+1 more)" in failed and len(failed) <= 200


def test_details_are_tables_not_one_long_line() -> None:
    metrics = {f"metric_{i}": 0.5 + i / 100 for i in range(60)} | {"outcomes": 20000.0, "tpr_gap[age_band]": 0.05}
    report = {
        "rows": {"in": 20000, "quarantined": 200, "train": 13177, "valid": 3267, "test": 3356},
        "spec_sha256": "ab" * 32,
        "run_dir": "/runs/x",
        "metrics": metrics,
        "selection": [],
        "calibration": [{"lower": 0.0, "upper": 0.1, "mean_predicted": 0.03, "observed_rate": 0.05, "count": 2145}],
        "lift": [{"decile": 1, "count": 336, "positives": 240, "rate": 0.71, "lift": 3.97, "cumulative_capture": 1.0}],
        "scoring": {"high_risk_csv": "/runs/x/high_risk.csv", "listed": 5064},
    }
    text = render_run_details(report, exclude={"tpr_gap[age_band]"})
    lines = text.splitlines()
    assert max(map(len, lines)) <= 200
    assert "| metric_59 | 1.0900 |" in lines and "| outcomes | 20,000 |" in lines
    assert "tpr_gap[age_band]" not in text  # the fairness section has it
    assert "20,000 in, 200 quarantined" in text and "e+" not in text
    assert "| 0.0–0.1 | 0.0300 | 0.0500 | 2,145 |" in lines


def test_numbers_read_as_numbers() -> None:
    assert fmt_number(20000.0) == fmt_number(20000) == fmt_count(20000.0) == "20,000"
    assert fmt_number(0.867) == "0.8670" and fmt_number(None) == "n/a" and fmt_number(float("nan")) == "n/a"
    assert fmt_number(1234.5) == "1,234.5" and fmt_number(0.00012) == "1.200e-04"


def test_artifact_embeds_local_charts_as_data_uris(tmp_path: Path) -> None:
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1], [0, 1])
    save_png(fig, tmp_path / "chart.png", 80)
    plt.close(fig)
    data = (tmp_path / "chart.png").read_bytes()
    assert data.startswith(PNG) and len(data) < 30_000
    markdown = "# r\n\n![a chart](chart.png)\n\n![gone](missing.png) ![web](https://example.org/x.png)\n"
    embedded = embed_images(markdown, tmp_path)
    uri = f"![a chart](data:image/png;base64,{base64.b64encode(data).decode()})"
    assert uri in embedded and "![gone](missing.png)" in embedded and "(https://example.org/x.png)" in embedded
    assert "chart too large" in embed_images(markdown, tmp_path, max_bytes=10)


def test_one_day_history_has_a_days_wide_axis(tmp_path: Path) -> None:
    import matplotlib.dates as mdates

    rows = pd.DataFrame([{"date": "2026-03-01", "kind": "metric", "name": "auc", "value": 0.8}])
    seen = {}
    original = plt.Figure.savefig

    def spy(fig, *args, **kwargs):
        seen["xlim"] = fig.axes[0].get_xlim()
        return original(fig, *args, **kwargs)

    plt.Figure.savefig = spy
    try:
        assert history_chart(rows, tmp_path / "h.png").read_bytes().startswith(PNG)
    finally:
        plt.Figure.savefig = original
    low, high = (mdates.num2date(x).date() for x in seen["xlim"])
    assert (high - low).days <= 7 and str(low) < "2026-03-01" < str(high)


def test_monitor_report_counts_and_embedded_chart_links(tmp_path: Path) -> None:
    from datetime import date

    from pipeline.monitoring.drift import Thresholds
    from pipeline.monitoring.report import MonitorReport

    chart = tmp_path / "charts" / "metric_history.png"
    report = MonitorReport(
        "churn", date(2026, 3, 1), 20000, "training", {}, Thresholds(), {}, [], [], [], {"outcomes": 20000.0}
    )
    report.outputs = {"report": str(tmp_path / "monitor_report.md"), "metric_history_png": str(chart)}
    text = report.to_markdown()
    assert "| outcomes | 20,000 |" in text and "e+04" not in text
    assert "![metric_history](charts/metric_history.png)" in text  # relative: resolves next to the report
    fig = plt.figure(figsize=(2, 2))
    save_png(fig, chart, 80)
    plt.close(fig)
    assert "data:image/png;base64," in embed_images(text, tmp_path)  # what the Prefect artifact gets


def test_fairness_tables_one_row_per_group() -> None:
    from pipeline.fairness.result import INSUFFICIENT, OK, FairnessReport, GroupMetric
    from pipeline.fairness.sections import Sections, render_markdown

    groups = [
        GroupMetric("age_band", band, metric, 0.5, 0.4, 0.6, n, OK if n >= 50 else INSUFFICIENT)
        for band, n in (("18-24", 120), ("50+", 20))
        for metric in ("auc", "tpr", "fpr")
    ]
    report = FairnessReport(groups=groups)
    report.add_metric(
        "tpr_gap[age_band]", None, (None, None), "insufficient data: fewer than 2 groups; short: 50+ (n=20)"
    )
    text = render_markdown(Sections(fairness=report, chart="c.png"))
    lines = text.splitlines()
    assert "| grouping | group | rows | auc | tpr | fpr |" in lines
    assert "| age_band | 18-24 | 120 | 0.5000 | 0.5000 | 0.5000 |" in lines
    assert "| age_band | 50+ | 20 | 0.5000† | 0.5000† | 0.5000† |" in lines
    assert "- † age_band: insufficient data: fewer than 2 groups (group sizes below)" in lines
    assert max(map(len, lines)) <= 200
