"""Bodies of `keel backtest SPEC --history FILE` and `keel diff OLD NEW --backtest FILE`.

They return (text, JSON payload) and raise HistoryError for a bad history file; the CLI
turns that into exit 2 with the message. No Prefect: a backtest is pure computation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.backtest.history import read_history
from pipeline.backtest.render import render_side_by_side, render_text
from pipeline.backtest.replay import backtest
from pipeline.spec.schema import Spec


def backtest_command(spec: Spec, history_path: Path, show_all: bool = False) -> tuple[str, dict[str, Any]]:
    timeline = backtest(spec, read_history(history_path))
    return render_text(timeline, show_all), {"status": "ok", **timeline.to_dict()}


def diff_backtest(old: Spec, new: Spec, history_path: Path, labels: tuple[str, str]) -> tuple[str, dict[str, Any]]:
    """Both specs' timelines over one history, side by side (instants where either did something)."""
    history = read_history(history_path)
    before, after = backtest(old, history), backtest(new, history)
    text = f"\nbacktest over {history_path} (* marks a difference):\n" + render_side_by_side(before, after, labels)
    return text, {
        "old": before.summary(),
        "new": after.summary(),
        "old_timeline": before.to_dict()["evaluations"],
        "new_timeline": after.to_dict()["evaluations"],
    }
