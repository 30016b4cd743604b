"""Masked churners: entities whose change in a feature falls short of their segment's expected change.

A segment-wide gain (a launch, a price change) lifts everyone's absolute values, so an entity
that did not join in still looks normal to a model scoring the current snapshot; against its
segment it lags. The expected change is the segment's median change between the two snapshots
(docs/adr/0008-masked-churners.md). Everything is vectorised: one merge, one groupby.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.atomic_files import write_frame_atomic
from pipeline.contracts.validate import validate_frame
from pipeline.data.derived import add_derived
from pipeline.data.errors import DataSourceError
from pipeline.data.sources import load_source
from pipeline.scoring.batch import latest_snapshot
from pipeline.spec.schema import DerivedFeature, Spec

Direction = Literal["increase", "decrease"]


@dataclass
class MaskedChurners:
    """The list, ranked by share of the expected change (smallest first), and what it was built from."""

    frame: pd.DataFrame
    compared: int
    """Entities with a segment and the feature in both snapshots."""
    expected: dict[str, float | None] = field(default_factory=dict)
    """Segment -> expected change in feature units; None when the segment is too small."""

    def write(self, directory: Path, stem: str = "masked_churners") -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        parquet, csv = directory / f"{stem}.parquet", directory / f"{stem}.csv"
        write_frame_atomic(self.frame, parquet)
        self.frame.to_csv(csv, index=False)
        return {
            "masked_churners": len(self.frame),
            "masked_churners_compared": self.compared,
            "masked_churners_parquet": str(parquet),
            "masked_churners_csv": str(csv),
        }


def find_masked_churners(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    entity_id: str,
    feature: str,
    segment: str,
    fraction: float = 0.5,
    direction: Direction = "increase",
    min_segment_size: int = 1,
    flagged: pd.Series | None = None,
) -> MaskedChurners:
    """Entities whose change, in the healthy `direction`, is strictly below `fraction` x their segment's median.

    Entities are joined by `entity_id` (compared as text; the last row of an id wins). An entity
    missing from `previous`, or with a null feature or segment, is neither listed nor counted in
    its segment's median. Only segments whose median moved the healthy way list anyone: a segment
    moving the other way is a visible shift, not a masked one. `flagged` ids (the high-risk list)
    are marked in a `high_risk` column so the list can be read as a supplement.
    """
    sign = 1.0 if direction == "increase" else -1.0
    now = pd.DataFrame(
        {
            entity_id: _keys(current[entity_id]),
            segment: current[segment].to_numpy(),
            "current": _floats(current[feature]),
        }
    ).drop_duplicates(entity_id, keep="last")
    before = pd.DataFrame({entity_id: _keys(previous[entity_id]), "previous": _floats(previous[feature])})
    joined = now.merge(before.drop_duplicates(entity_id, keep="last"), on=entity_id, how="left")
    change = (joined["current"] - joined["previous"]).to_numpy()
    gain = sign * change
    valid = ~np.isnan(gain) & joined[segment].notna().to_numpy() & joined[entity_id].notna().to_numpy()
    groups = pd.DataFrame({"segment": joined[segment][valid].astype(str).to_numpy(), "gain": gain[valid]})
    stats = groups.groupby("segment", sort=True)["gain"].agg(["median", "size"])
    median = stats["median"].where(stats["size"] >= min_segment_size)
    mapped = joined[segment].astype(str).map(median).to_numpy(dtype=float, na_value=np.nan)
    expected_gain = np.where(valid, mapped, np.nan)
    with np.errstate(invalid="ignore"):
        listed = valid & (expected_gain > 0) & (gain < fraction * expected_gain)
    out = joined.loc[listed, [entity_id, segment, "previous", "current"]].reset_index(drop=True)
    out.columns = [entity_id, segment, f"{feature}_previous", f"{feature}_current"]
    out["change"] = change[listed]
    out["expected_change"] = sign * expected_gain[listed]
    out["share_of_expected"] = gain[listed] / expected_gain[listed]
    if flagged is not None:
        out["high_risk"] = out[entity_id].isin(_keys(flagged))
    out = out.sort_values(["share_of_expected", entity_id], kind="stable", ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    expected = {str(k): (None if pd.isna(v) else float(sign * v)) for k, v in median.items()}
    return MaskedChurners(out, int(valid.sum()), expected)


def masked_churner_outputs(
    spec: Spec, current: pd.DataFrame, base_dir: Path, run_dir: Path, flagged: pd.Series | None = None
) -> dict[str, Any]:
    """Build and write the spec's masked-churner list; {} when the spec declares none or disables it."""
    masked = spec.masked_churners
    if masked is None or not masked.enabled:
        return {}
    previous = load_previous(spec, base_dir)
    derived = spec.features.derived
    result = find_masked_churners(
        _with_feature(previous, masked.feature, derived),
        _with_feature(current, masked.feature, derived),
        spec.data.entity_id,
        masked.feature,
        masked.segment,
        masked.fraction,
        masked.direction,
        masked.min_segment_size,
        flagged,
    )
    return result.write(run_dir)


def load_previous(spec: Spec, base_dir: Path) -> pd.DataFrame:
    """The earlier snapshot held to the same contract (bad rows dropped), one row per entity."""
    assert spec.masked_churners is not None
    source = spec.masked_churners.previous
    try:
        frame = load_source(source, base_dir)
    except DataSourceError as exc:
        raise DataSourceError(f"masked_churners.previous: {exc}") from exc
    result = validate_frame(frame, spec.contract)
    if not result.ok:
        raise DataSourceError(
            f"masked_churners.previous ({source.source}) breaks contract {spec.contract.name}: {result.policy_reason}"
        )
    return latest_snapshot(result.accepted, spec.data.entity_id, spec.data.timestamp)


def _with_feature(frame: pd.DataFrame, feature: str, derived: Mapping[str, DerivedFeature]) -> pd.DataFrame:
    return frame if feature in frame.columns else add_derived(frame, derived)


def _keys(ids: pd.Series) -> np.ndarray:
    """Ids as text, so a Parquet int id matches a CSV string id."""
    return ids.astype("string").to_numpy(dtype=object, na_value=None)


def _floats(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
