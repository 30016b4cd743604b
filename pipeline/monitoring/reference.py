"""The reference a monitor compares against: an overall profile plus one profile per segment.

The champion bundle's training profile covers the contract's columns only, so derived
features and per-segment shares come from profiling the reference data (the same rows
the champion was trained on, for a spec's own data). Each feature records where its
reference came from so a report never hides which distribution it used.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from pipeline.contracts.profile import ReferenceProfile, build_profile
from pipeline.data.derived import add_derived
from pipeline.spec.schema import ColumnContract, ContractSpec, DerivedFeature

MIN_SEGMENT_ROWS = 50
BUNDLE_FILE = "monitor_reference.json"  # written into a bundle by `keel run`: the champion's full reference


@dataclass
class MonitorReference:
    profile: ReferenceProfile
    segment_column: str | None = None
    segments: dict[str, ReferenceProfile] = field(default_factory=dict)
    source: str = ""
    sources: dict[str, str] = field(default_factory=dict)  # feature -> where its reference came from

    def to_json(self) -> str:
        return json.dumps(
            {
                "profile": json.loads(self.profile.to_json()),
                "segment_column": self.segment_column,
                "segments": {k: json.loads(p.to_json()) for k, p in self.segments.items()},
                "source": self.source,
                "sources": self.sources,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> MonitorReference:
        d = json.loads(text)
        return cls(
            profile=ReferenceProfile.from_json(json.dumps(d["profile"])),
            segment_column=d.get("segment_column"),
            segments={k: ReferenceProfile.from_json(json.dumps(v)) for k, v in d.get("segments", {}).items()},
            source=d.get("source", ""),
            sources=d.get("sources", {}),
        )


def monitored_contract(contract: ContractSpec, derived: Mapping[str, DerivedFeature]) -> ContractSpec:
    """The contract plus each derived feature as a float column, so one profile covers both."""
    columns = dict(contract.columns)
    for name, feature in derived.items():
        columns.setdefault(name, ColumnContract(dtype="float", unit=feature.unit, nullable=True))
    return contract.model_copy(update={"columns": columns})


def build_reference(
    frame: pd.DataFrame,
    contract: ContractSpec,
    derived: Mapping[str, DerivedFeature],
    bins: int,
    segment_column: str | None,
    source: str,
) -> MonitorReference:
    """Profile `frame` (derived features already added) overall and per segment value."""
    full = monitored_contract(contract, derived)
    profile = build_profile(frame, full, bins)
    segments: dict[str, ReferenceProfile] = {}
    if segment_column and segment_column in frame.columns:
        keys = frame[segment_column].astype("string")
        for value, part in frame.groupby(keys, sort=True, observed=True):
            if len(part) >= MIN_SEGMENT_ROWS:
                segments[str(value)] = build_profile(part, full, bins)
    names = [*profile.numeric, *profile.categorical]
    return MonitorReference(profile, segment_column, segments, source, dict.fromkeys(names, source))


def with_training_profile(reference: MonitorReference, training: ReferenceProfile, label: str) -> MonitorReference:
    """Prefer the champion's training profile for every column it covers; keep the rest."""
    profile = ReferenceProfile(
        contract=reference.profile.contract,
        bins=training.bins,
        rows=training.rows,
        numeric={**reference.profile.numeric, **training.numeric},
        categorical={**reference.profile.categorical, **training.categorical},
    )
    sources = dict(reference.sources)
    sources.update(dict.fromkeys([*training.numeric, *training.categorical], label))
    return MonitorReference(profile, reference.segment_column, reference.segments, label, sources)


def training_reference(
    accepted: pd.DataFrame,
    contract: ContractSpec,
    derived: Mapping[str, DerivedFeature],
    bins: int,
    segment: str | None,
) -> MonitorReference:
    """What `keel run` stores in a bundle: contract columns, derived features and segments of the training data.

    Stored at registration so a later monitor compares with exactly what the champion learned
    from, derived features and per-segment shares included, without re-reading the data.
    """
    frame = add_derived(accepted, derived)
    return build_reference(frame, contract, derived, bins, segment, "training data")


def relabelled(reference: MonitorReference, label: str) -> MonitorReference:
    """The same reference, every feature credited to `label` (e.g. the champion's tag)."""
    sources = dict.fromkeys(reference.sources or [*reference.profile.numeric, *reference.profile.categorical], label)
    return MonitorReference(reference.profile, reference.segment_column, reference.segments, label, sources)
