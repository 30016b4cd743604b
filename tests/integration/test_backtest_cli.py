"""`keel backtest`, `keel diff --backtest` and `keel schedule` from the command line: text, JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.backtest.incidents import slow_population_shift, trending_release
from pipeline.cli import main

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "streamrec.yaml"


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("backtest") / "slide.parquet"
    slow_population_shift().history.to_parquet(path, index=False)
    return path


def test_backtest_prints_the_timeline_and_json(slide: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backtest", str(SPEC), "--history", str(slide)]) == 0
    text = capsys.readouterr().out
    assert "2026-02-17 Tue 00:30  performance FIRED   ndcg@10" in text
    assert "REJECTED: ndcg_vs_baseline" in text
    assert main(["backtest", str(SPEC), "--history", str(slide), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["summary"]["first_fired"]["performance"] == "2026-02-17T00:30:00+00:00"
    assert {e["status"] for e in payload["evaluations"]} >= {"fired", "suppressed", "below_threshold"}


def test_diff_backtest_shows_both_timelines(slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "streamrec_seed_triggers.yaml"
    text = SPEC.read_text().replace("max_relative_decline: 0.025, baseline_window: 28d", "baseline_window: 7d")
    old.write_text(text.replace("defaults:\n", f"defaults:\n  # copy of {SPEC}\n"))
    code = main(["diff", str(old), str(SPEC), "--backtest", str(slide), "--conf", str(REPO / "conf")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "triggers.performance.max_relative_decline: 0.1 -> 0.025" in out
    first = [line for line in out.splitlines() if line.startswith("first performance")]
    assert first and first[0].split()[2] == "never" and first[0].split()[3].startswith("2026-02-17")


def test_bad_history_exits_2_naming_the_dates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frame = trending_release(days=5).history
    path = tmp_path / "dup.parquet"
    pd.concat([frame, frame.iloc[[1]]]).to_parquet(path, index=False)
    assert main(["backtest", str(SPEC), "--history", str(path)]) == 2
    err = capsys.readouterr().err
    assert "duplicate days 2026-01-06" in err and "Traceback" not in err
    assert main(["backtest", str(SPEC), "--history", str(tmp_path / "missing.parquet")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_schedule_without_a_server_is_a_usage_error(
    monkeypatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # a project without a `keel server` (the checkout may have one up)
    assert main(["schedule", str(SPEC), "--register-only"]) == 2
    assert "keel schedule needs a Prefect server" in capsys.readouterr().err
