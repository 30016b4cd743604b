"""The layout of a tabular (churn) bundle, written by training and read by serving.

One directory, registered as one version: the model, the contract that serving
validates requests against, the derived features it recomputes, the training
reference for readable reasons and drift, the metrics and the resolved spec.
Every file is read through `BundleRef.open_file`, which checks its sha256 first.

    model/                    TabularModel.save() (LightGBM text or logistic JSON + model.json)
    contract.json             the ContractSpec (columns the model's inputs need)
    derived.json              {name: DerivedFeature} the model uses
    feature_reference.json    training medians/modes for top reasons
    reference_profile.json    training profile for PSI
    metrics.json              test metrics and the gate report
    resolved_spec.yaml        the spec that made it
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.models import TabularModel, load_model
from pipeline.models.explain import FeatureReference
from pipeline.registry.bundle import BundleRef
from pipeline.spec.schema import ContractSpec, DerivedFeature

MODEL_DIR = "model"


@dataclass
class TabularBundle:
    """What serving and batch scoring need, loaded from a verified bundle."""

    tag: str
    model: TabularModel
    contract: ContractSpec
    derived: dict[str, DerivedFeature]
    reference: FeatureReference
    metrics: dict[str, Any]
    threshold: float

    @property
    def input_columns(self) -> list[str]:
        """Columns a request must carry: model features that are not derived, plus derived inputs."""
        from pipeline.data.derived import derived_lineage

        lineage = derived_lineage(self.derived)
        needed: list[str] = []
        for feature in self.model.features:
            for column in lineage.get(feature, [feature]):
                if column not in needed:
                    needed.append(column)
        return needed


def write_bundle_dir(
    directory: Path,
    model: TabularModel,
    contract: ContractSpec,
    derived: dict[str, DerivedFeature],
    reference: FeatureReference,
    metrics: dict[str, Any],
    profile_json: str,
    resolved_spec_yaml: str,
    threshold: float,
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save(directory / MODEL_DIR)
    used = {name: d for name, d in derived.items() if name in model.features}
    (directory / "contract.json").write_text(contract.model_dump_json(indent=2))
    (directory / "derived.json").write_text(json.dumps({k: v.model_dump() for k, v in used.items()}, indent=2))
    (directory / "feature_reference.json").write_text(json.dumps(reference.to_dict(), indent=2, default=float))
    (directory / "reference_profile.json").write_text(profile_json)
    (directory / "metrics.json").write_text(json.dumps({**metrics, "threshold": threshold}, indent=2, default=str))
    (directory / "resolved_spec.yaml").write_text(resolved_spec_yaml)
    return directory


def load_tabular_bundle(ref: BundleRef) -> TabularBundle:
    """Verify every file, then load; a tampered file raises IntegrityError before any parsing."""
    ref.verify()
    with tempfile.TemporaryDirectory(prefix="keel-model-") as tmp:
        # copy the verified model files so a later change in the store cannot swap them mid-load
        target = Path(tmp) / MODEL_DIR
        target.mkdir()
        for rel in ref.manifest.files:
            if rel.startswith(f"{MODEL_DIR}/"):
                shutil.copyfile(ref.open_file(rel), target / rel.split("/", 1)[1])
        model = load_model(target)
    read = lambda rel: json.loads(ref.open_file(rel).read_text())  # noqa: E731
    metrics = read("metrics.json")
    return TabularBundle(
        tag=ref.tag,
        model=model,
        contract=ContractSpec.model_validate(read("contract.json")),
        derived={k: DerivedFeature.model_validate(v) for k, v in read("derived.json").items()},
        reference=FeatureReference.from_dict(read("feature_reference.json")),
        metrics=metrics,
        threshold=float(metrics.get("threshold", 0.5)),
    )
