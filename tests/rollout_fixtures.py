"""Stub bundles for rollout tests: the rollout record only needs registered, gate-passed versions."""

from __future__ import annotations

from pathlib import Path

from pipeline.registry import BundleStore, promote, save_bundle


def champion_and_challenger(store: BundleStore, name: str, tmp_path: Path) -> list[str]:
    """Two one-file bundles of `name`, the first promoted to champion; returns [champion, challenger] tags."""
    tags = []
    for payload in ("champion", "challenger"):
        src = tmp_path / f"src-{payload}"
        src.mkdir()
        (src / "model.txt").write_text(payload)
        ref = save_bundle(name, src, spec_sha256="0" * 64, data_fingerprint="fp", code_version="t",
                          metrics={"auc": 0.8}, gate_passed=True, store=store)  # fmt: skip
        tags.append(ref.tag)
    promote(name, tags[0], "first", store=store)
    return tags
