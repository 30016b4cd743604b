"""Splits that fit any table: stratified, group, the default without a timestamp, and `keel check`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.data.split import split_frame
from pipeline.spec.schema import SplitSpec

SPEC = """\
defaults: [{{model: lightgbm}}, _self_]
name: plain-table
task: binary_classification
data:
  source: ../rows.csv
  entity_id: customer
  label: churn
  positive: "yes"
  split: {split}
contract:
  name: plain
  columns:
    customer: {{dtype: str}}
    x: {{dtype: float}}
    churn: {{dtype: str, allowed: ["yes", "no"]}}
model:
  features: [x]
"""


def table(n: int = 2000, positives: float = 0.05, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < positives).astype(np.int8)
    customers = rng.integers(0, n // 4, n)  # about four rows per customer
    return pd.DataFrame({"customer": customers, "x": rng.normal(size=n)}), labels


def test_stratified_keeps_the_class_balance_in_every_part() -> None:
    df, labels = table()
    parts = split_frame(df, SplitSpec(method="stratified"), None, seed=3, labels=labels)
    rate = labels.mean()
    for name, part in parts.items():
        share = labels[part.index].mean()
        assert abs(share - rate) < 0.005, (name, share, rate)
    assert sum(len(p) for p in parts.values()) == len(df)
    assert abs(len(parts["test"]) - 0.2 * len(df)) <= 2
    again = split_frame(df, SplitSpec(method="stratified"), None, seed=3, labels=labels)
    assert all(parts[k].index.equals(again[k].index) for k in parts)  # data.seed makes it repeatable


def test_group_split_never_puts_one_entity_in_two_parts() -> None:
    df, _ = table()
    parts = split_frame(df, SplitSpec(method="group"), None, seed=1, groups=df["customer"])
    seen = [set(p["customer"]) for p in parts.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(p) for p in parts.values()) == len(df)
    assert 0.15 * len(df) < len(parts["test"]) < 0.25 * len(df)


def test_no_method_and_no_timestamp_is_stratified_not_time() -> None:
    df, labels = table(positives=0.02)
    parts = split_frame(df, SplitSpec(), None, seed=0, labels=labels)
    assert labels[parts["test"].index].sum() == round(labels.sum() * 0.2)


@pytest.mark.parametrize(
    ("split", "method", "code"),
    [
        ("{}", "stratified", 0),
        ("{method: random}", "random", 0),
        ("{method: group}", "group", 0),
        ("{method: time}", None, 2),
        ("{method: group, group_column: nope}", None, 2),
    ],
)
def test_check_names_the_method_and_refuses_time_without_timestamp(
    write_spec, capsys, split: str, method: str | None, code: int
) -> None:
    path = write_spec(SPEC.format(split=split))
    assert main(["check", str(path), "--json"]) == code
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    if code == 0:
        assert payload["split"]["method"] == method
        assert f"split: {method}" in captured.out
    else:
        assert f"{path}:9: data.split." in captured.err  # file:line of the split key
