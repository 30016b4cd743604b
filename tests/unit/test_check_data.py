"""`keel check SPEC --data [FILE]`: a first look at the data, before any run; optional id; epoch times."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.cli import main
from pipeline.data.prepare import load_frame, prepare
from pipeline.spec.load import load_spec

SPEC = """\
defaults: [{{model: lightgbm}}, _self_]
name: plain-table
task: binary_classification
data:
  source: ../rows.csv
  label: churn
  positive: {positive}
{extra}
contract:
  name: plain
  columns:
    x: {{dtype: float}}
    churn: {{dtype: str}}
{columns}
model:
  features: [x]
"""


def write_rows(tmp_path: Path, n: int = 200, labels: list[str] | None = None, **extra: object) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=n), "churn": labels or (["yes", "no"] * n)[:n], **extra})
    frame.to_csv(tmp_path / "rows.csv", index=False)


def check(write_spec, capsys, *args: str, positive: str = '"yes"', extra: str = "", columns: str = "") -> tuple:
    path = write_spec(SPEC.format(positive=positive, extra=extra, columns=columns))
    code = main(["check", str(path), *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out.strip().splitlines()[-1]), captured.err, path


def test_ok_without_entity_id_says_rows_are_numbered(tmp_path: Path, write_spec, capsys) -> None:
    write_rows(tmp_path)
    code, payload, _, _ = check(write_spec, capsys, "--data")
    assert code == 0, payload
    assert payload["data"]["rows"] == 200 and payload["data"]["label"]["positives"] == 100
    assert any("named by their position" in n for n in payload["data"]["notes"])


def test_missing_file_is_exit_2(tmp_path: Path, write_spec, capsys) -> None:
    code, payload, _, _ = check(write_spec, capsys, "--data")  # data.source ../rows.csv was never written
    assert code == 2 and "does not exist" in payload["problems"][0]["reason"]


def test_positive_value_that_never_occurs_names_the_key(tmp_path: Path, write_spec, capsys) -> None:
    write_rows(tmp_path, labels=["Yes", "No"] * 100)
    code, payload, _, path = check(write_spec, capsys, "--data")
    assert code == 2
    [problem] = payload["problems"]
    assert problem["key"] == "data.positive" and problem["line"] == 7 and problem["file"] == str(path)
    assert "'yes' never occurs" in problem["reason"] and "'Yes'" in problem["reason"]


def test_positive_outside_allowed_values_is_a_spec_error_without_data(tmp_path: Path, write_spec, capsys) -> None:
    columns = "    flag: {dtype: str}"
    spec = SPEC.format(positive="1", extra="", columns=columns).replace(
        "churn: {dtype: str}", 'churn: {dtype: str, allowed: ["yes", "no"]}'
    )
    path = write_spec(spec)
    assert main(["check", str(path)]) == 2
    assert "not among the label's allowed values" in capsys.readouterr().err


def test_single_class_and_absent_column(tmp_path: Path, write_spec, capsys) -> None:
    write_rows(tmp_path, labels=["yes"] * 200)
    code, payload, _, _ = check(write_spec, capsys, "--data", columns="    tenure: {dtype: int}")
    assert code == 2
    reasons = {p["key"]: p["reason"] for p in payload["problems"]}
    assert "one class only" in reasons["data.label"]
    assert "'tenure' is not in" in reasons["contract.columns.tenure"]


def test_other_file_and_epoch_timestamps(tmp_path: Path, write_spec, capsys) -> None:
    epochs = 1_700_000_000 + np.arange(200) * 3600
    write_rows(tmp_path, ts=epochs)
    columns = "    ts: {dtype: datetime}"
    extra = "  timestamp: ts"
    code, payload, _, _ = check(write_spec, capsys, "--data", extra=extra, columns=columns)
    assert code == 2 and payload["problems"][0]["key"] == "data.timestamp"
    assert "timestamp_unit" in payload["problems"][0]["reason"]
    other = tmp_path / "other.csv"
    other.write_text((tmp_path / "rows.csv").read_text())
    code, payload, _, path = check(
        write_spec, capsys, "--data", str(other), extra=extra + "\n  timestamp_unit: s", columns=columns
    )
    assert code == 0, payload
    assert payload["data"]["data"] == str(other) and payload["split"]["method"] == "time"
    loaded = load_spec(path)
    prepared = prepare(loaded.spec, load_frame(loaded.spec, loaded.base_dir))
    train, test = prepared.splits["train"]["ts"], prepared.splits["test"]["ts"]
    assert train.max() < test.min() and test.max() == pd.Timestamp(int(epochs[-1]), unit="s")


def test_epoch_unit_needs_a_datetime_column(write_spec, capsys) -> None:
    spec = SPEC.format(positive='"yes"', extra="  timestamp: ts\n  timestamp_unit: ms", columns="    ts: {dtype: int}")
    assert main(["check", str(write_spec(spec))]) == 2
    assert "contract.columns.ts.dtype" in capsys.readouterr().err
