"""`vs: champion` compares like with like: the champion bundle re-scored on the challenger's test rows.

The champion's recorded test metrics came from *its* test rows (another split seed, other data,
another contract); a difference between two numbers measured on different rows says little. So
the champion bundle is loaded and scored on exactly the rows the challenger was measured on,
through the same calls as `keel score` (its own contract on its inputs, its own derived features,
`predict_proba`) and the same metric code (`classification_metrics`, the spec's threshold and
top_k). Rows the champion learned from (a new split seed puts some of its training rows in the
challenger's test part) would flatter it, so a bundle records hashes of the rows its model saw
(`training_rows.npy`) and those rows are left out of the comparison, for both models; the report
says how many. When it cannot score them — a different task or label, an input column the rows lack,
values its contract refuses, a model that raises — the comparison is *not comparable* and the
gate's `if_not_comparable` decides (default block). See docs/adr/0025-champion-rescored.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.gates.evaluate import ChampionReference
from pipeline.gates.seen_rows import is_bloom, load_record, seen_in, seen_record
from pipeline.metrics import classification_metrics

TRAINING_ROWS_FILE = "training_rows.npy"
"""The rows a bundle's model saw (hashes of its input columns + the label): exact, or a Bloom filter past 1M
distinct rows (pipeline/gates/seen_rows.py)."""
MIN_COMPARABLE_ROWS = 30
"""Fewer test rows the champion never saw than this (or one class only): not comparable."""


def row_hashes(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """One uint64 per row over `columns` (values and dtypes; the index is ignored)."""
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(dtype=np.uint64)


def input_columns(features: list[str], derived: dict[str, Any]) -> list[str]:
    """The raw columns a model's features come from (derived features replaced by their inputs), in order."""
    from pipeline.data.derived import derived_lineage

    lineage = derived_lineage({k: v for k, v in derived.items() if k in features})
    return list(dict.fromkeys(c for f in features for c in lineage.get(f, [f])))


def write_training_rows(
    directory: Path, seen: pd.DataFrame, features: list[str], derived: dict[str, Any], label: str
) -> Path:
    """`directory`/training_rows.npy: which rows the model saw, so a later challenger can leave them out."""
    columns = [*input_columns(features, derived), label]
    path = Path(directory) / TRAINING_ROWS_FILE
    np.save(path, seen_record(row_hashes(seen, columns)), allow_pickle=False)
    return path


def rescore_champion(
    spec: Any, ref: Any, frame: pd.DataFrame, labels: np.ndarray, split: str = "test"
) -> ChampionReference:
    """The champion bundle `ref` (a BundleRef) scored on `frame` (the challenger's `split` rows) with `labels`."""
    rows, positives = len(frame), int(np.asarray(labels).sum())

    def refused(reason: str) -> ChampionReference:
        return ChampionReference(ref.tag, None, rows, positives, split, False, reason)

    try:
        theirs = yaml.safe_load(ref.open_file("resolved_spec.yaml").read_text(encoding="utf-8")) or {}
    except Exception as exc:
        return refused(f"its resolved spec cannot be read ({exc})")
    task = theirs.get("task")
    if task != spec.task:
        return refused(f"it was trained for another task ({task}, not {spec.task})")
    their_data = theirs.get("data") or {}
    mine = (spec.data.label, str(spec.data.positive) if spec.data.positive is not None else None)
    their = (their_data.get("label"), str(their_data["positive"]) if their_data.get("positive") is not None else None)
    if mine != their:
        return refused(f"it predicts another label ({their[0]}={their[1]}, not {mine[0]}={mine[1]})")
    try:
        from pipeline.registry.tabular import load_tabular_bundle

        bundle = load_tabular_bundle(ref)
    except Exception as exc:
        return refused(f"it cannot be loaded ({exc})")
    needed = bundle.input_columns
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        return refused(f"the rows lack its input column(s) {', '.join(missing[:5])}")
    inputs = frame[needed].reset_index(drop=True)
    checked = {k: v for k, v in bundle.contract.columns.items() if k in needed}
    if checked:
        from pipeline.contracts.validate import validate_frame

        contract = bundle.contract.model_copy(
            update={"columns": checked, "allow_extra_columns": True, "max_quarantine_fraction": 1.0, "min_rows": 0}
        )
        try:
            result = validate_frame(inputs[list(checked)], contract)
        except Exception as exc:
            return refused(f"its contract cannot check the rows ({exc})")
        bad = rows - result.rows_accepted
        if bad or not result.ok:
            why = _first_reason(result)
            return refused(f"its contract refuses {bad:,} of {rows:,} rows{why}")
    try:
        from pipeline.data.derived import add_derived

        features = add_derived(inputs, bundle.derived) if bundle.derived else inputs
        p = np.asarray(bundle.model.predict_proba(features[bundle.model.features]), dtype=np.float64)
    except Exception as exc:
        return refused(f"its model cannot score the rows ({' '.join(str(exc).split())[:200]})")
    unseen = {k: v for k, v in bundle.model.last_unseen_counts.items() if v}
    labels = np.asarray(labels)
    keep, approximate = _not_trained_on(ref, frame, needed, spec.data.label)
    if keep is None or keep.all():
        metrics = classification_metrics(labels, p, spec.evaluation.threshold, spec.evaluation.top_k)
        note = "" if keep is not None else "its training rows are not recorded (an older bundle): overlap unknown"
        return ChampionReference(ref.tag, metrics, rows, positives, split, True, "", unseen, note=note)
    bloom_note = (
        "its training rows are kept as a Bloom filter: about 0.1% of the rows it never saw are left out too"
        if approximate
        else ""
    )
    left_out = int((~keep).sum())
    kept_rows, kept_positives = int(keep.sum()), int(labels[keep].sum())
    if kept_rows < MIN_COMPARABLE_ROWS or kept_positives in (0, kept_rows):
        return refused(
            f"it was trained on {left_out:,} of these {rows:,} rows; the {kept_rows:,} left "
            f"({kept_positives:,} positive) are too few to compare on"
        )
    threshold, k = spec.evaluation.threshold, spec.evaluation.top_k
    metrics = classification_metrics(labels[keep], p[keep], threshold, k)
    return ChampionReference(
        ref.tag,
        metrics,
        kept_rows,
        kept_positives,
        split,
        True,
        "",
        unseen,
        left_out=left_out,
        keep=keep,
        note=bloom_note,
    )


def _not_trained_on(
    ref: Any, frame: pd.DataFrame, needed: list[str], label: str | None
) -> tuple[np.ndarray | None, bool]:
    """(True for the rows the champion's model never saw, or None when the bundle does not record them;
    whether the record is a Bloom filter, which may also leave out a few rows it never saw)."""
    if TRAINING_ROWS_FILE not in ref.manifest.files or label is None or label not in frame.columns:
        return None, False
    record = load_record(ref.open_file(TRAINING_ROWS_FILE))
    return ~seen_in(record, row_hashes(frame, [*needed, label])), is_bloom(record)


def _first_reason(result: Any) -> str:
    """` (e.g. Department: not_allowed)`, from the contract result's per-column counts."""
    try:
        per_column = result.per_column
        for column, reasons in per_column.items():
            for reason, count in reasons.items():
                if count:
                    return f" (e.g. {column}: {reason})"
        problems = getattr(result, "schema_problems", None) or []
        if problems:
            first = problems[0]
            return f" ({first.column}: {first.problem})"
    except Exception:
        return ""
    return ""
