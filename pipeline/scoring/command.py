"""`keel score SPEC --data FILE`: score your own table with a registered bundle.

The file is held to the spec's contract in *scoring mode*: the label column may be absent
(new rows have no outcome yet) but every other rule applies, and a bad row is quarantined
with its reasons, never dropped silently. Accepted rows get the bundle's derived features and
model through the same calls as `keel run`'s high-risk list (`add_derived`, `predict_proba`,
`top_reasons`), so a row scores the same here, in the list and on `/score_batch`.
Every accepted row is written (filter on `decision` for the flagged ones): see
docs/adr/0019-keel-score.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic_files import write_frame_atomic
from pipeline.contracts.result import ContractResult
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases
from pipeline.registry.errors import RegistryError
from pipeline.registry.tabular import TabularBundle, load_tabular_bundle
from pipeline.scoring.progress import reasons_with_progress
from pipeline.spec.schema import ContractSpec, Spec

ROW_COLUMN = "row"  # the row's position in FILE (0-based); the id column when the spec has no entity id
OUT_SUFFIXES = (".parquet", ".pq", ".csv")


class ScoreError(Exception):
    """Bad input for `keel score` (unknown bundle, output suffix, wrong task); exit 2."""


@dataclass
class Scored:
    """The scores of the accepted rows and the contract result they came from."""

    frame: pd.DataFrame
    contract: ContractResult
    bundle: str
    threshold: float
    id_column: str
    notes: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> int:
        return int(self.frame["decision"].sum()) if len(self.frame) else 0


def scoring_contract(contract: ContractSpec, label: str | None, columns: pd.Index) -> ContractSpec:
    """The contract without the label column when FILE has none; every other rule unchanged."""
    if label is None or label in columns or label not in contract.columns:
        return contract
    return contract.model_copy(update={"columns": {k: v for k, v in contract.columns.items() if k != label}})


def resolve_bundle(spec: Spec, store: BundleStore, which: str) -> str:
    """champion | challenger (the aliases) or an exact NAME:VERSION tag of this spec's system."""
    if which in ("champion", "challenger"):
        tag = aliases(spec.name, store=store)[which]
        if not tag:
            hint = "train one with `keel run`" if which == "champion" else "start a rollout or name a tag"
            raise ScoreError(f"{spec.name} has no {which} bundle in {store.models_dir}: {hint}")
        return tag
    if ":" not in which:
        raise ScoreError(f"--bundle must be champion, challenger or NAME:VERSION, got {which!r}")
    if which.split(":", 1)[0] != spec.name:
        raise ScoreError(f"bundle {which} belongs to another system than {spec.name}")
    return which


def load_bundle(store: BundleStore, tag: str) -> TabularBundle:
    try:
        return load_tabular_bundle(store.get(tag))
    except RegistryError as exc:
        raise ScoreError(str(exc)) from None


def check_out_path(out: Path | None) -> None:
    """Refuse an unknown output suffix before any work is done."""
    if out is not None and not out.name.lower().endswith(OUT_SUFFIXES):
        raise ScoreError(f"--out {out}: the suffix must be one of {', '.join(OUT_SUFFIXES)} (it picks the format)")


def score_frame(
    spec: Spec, bundle: TabularBundle, frame: pd.DataFrame, reasons: int = 0, spec_sha256: str = ""
) -> Scored:
    """Validate `frame` in scoring mode, then score every accepted row (in FILE order, ranked)."""
    contract = scoring_contract(spec.contract, spec.data.label, frame.columns)
    result = validate_frame(frame, contract)
    entity = spec.data.entity_id
    id_column = entity if entity else ROW_COLUMN
    notes = [] if entity else [f"the spec declares no data.entity_id: rows are named by their position ({ROW_COLUMN})"]
    if contract is not spec.contract:
        notes.append(f"no label column {spec.data.label!r} in the file: scored without it")
    accepted = result.accepted
    threshold = float(spec.evaluation.threshold)
    if not result.ok or accepted.empty:
        return Scored(_empty(id_column, reasons), result, bundle.tag, threshold, id_column, notes)
    features = add_derived(accepted, bundle.derived) if bundle.derived else accepted
    probability = np.asarray(bundle.model.predict_proba(features[bundle.model.features]), dtype=np.float64)
    order = np.argsort(-probability, kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(1, len(order) + 1)
    rows = np.asarray(accepted.index, dtype=np.int64)
    out = pd.DataFrame({ROW_COLUMN: rows})
    if entity:
        out.insert(0, entity, accepted[entity].astype("string").to_numpy())
    out["probability"] = probability
    out["decision"] = probability >= threshold
    out["rank"] = rank
    if reasons > 0:
        out["reasons"] = reasons_with_progress(bundle.model, features[bundle.model.features], bundle.reference, reasons)
    out["bundle"] = bundle.tag
    out["spec_sha256"] = spec_sha256
    return Scored(out, result, bundle.tag, threshold, id_column, notes)


def _empty(id_column: str, reasons: int) -> pd.DataFrame:
    columns = {id_column: pd.Series(dtype="string")} if id_column != ROW_COLUMN else {}
    columns |= {ROW_COLUMN: pd.Series(dtype="int64"), "probability": pd.Series(dtype="float64")}
    columns |= {"decision": pd.Series(dtype="bool"), "rank": pd.Series(dtype="int64")}
    if reasons > 0:
        columns["reasons"] = pd.Series(dtype="object")
    return pd.DataFrame(columns | {"bundle": pd.Series(dtype="string"), "spec_sha256": pd.Series(dtype="string")})


def write_scores(frame: pd.DataFrame, path: Path) -> Path:
    """Parquet or CSV by suffix; in CSV a row's reasons are one '; '-joined cell."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.lower().endswith(".csv"):
        out = frame.assign(reasons=frame["reasons"].map("; ".join)) if "reasons" in frame.columns else frame
        out.to_csv(path, index=False)
    else:
        write_frame_atomic(frame, path)
    return path


def write_quarantine(result: ContractResult, path: Path) -> Path:
    """Every refused row with its original values, its row number and one reason per failed check."""
    frame = result.quarantined
    frame = frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
    write_frame_atomic(frame, path)
    return path


def summary(scored: Scored, outputs: dict[str, str], run_dir: str, spec_sha256: str) -> dict[str, Any]:
    """The CLI's text and --json fields."""
    result = scored.contract
    status = "ok" if result.ok else "failed"
    reasons = [] if result.ok else [result.policy_reason]
    lines = [
        f"score {status}: {result.rows_in:,} rows in, {len(scored.frame):,} scored, "
        f"{result.rows_quarantined:,} quarantined; {scored.flagged:,} at or above the threshold "
        f"{scored.threshold:g} (bundle {scored.bundle})",
        *(f"  - {r}" for r in reasons),
        *(f"  note: {n}" for n in scored.notes),
        *(f"  {k}: {v}" for k, v in outputs.items()),
    ]
    return {
        "text": "\n".join(lines),
        "status": status,
        "run_dir": run_dir,
        "bundle": scored.bundle,
        "spec_sha256": spec_sha256,
        "threshold": scored.threshold,
        "rows_in": result.rows_in,
        "rows_scored": len(scored.frame),
        "rows_quarantined": result.rows_quarantined,
        "rows_flagged": scored.flagged,
        "id_column": scored.id_column,
        "reasons": reasons,
        "check_counts": result.check_counts,
        "schema_problems": [p.to_dict() for p in result.schema_problems],
        "notes": scored.notes,
        "outputs": outputs,
    }
