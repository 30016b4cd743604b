"""Run directories: every output sits beside the resolved spec that produced it.

`runs/<spec name>/<UTC time>-<verb>-<spec hash[:8]>/` holds `resolved_spec.yaml`,
`run.json` (spec hash, overrides, group choices, code version) and whatever the
verb writes. Reports from weeks ago stay explainable.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pipeline.crashed_runs import current_flow_run, mark_crashed
from pipeline.registry.home import store_home
from pipeline.spec.load import LoadedSpec
from pipeline.spec.secrets import redact


@dataclass(frozen=True)
class RunDir:
    path: Path

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, payload: Any) -> Path:
        target = self.path / name
        atomic_write_text(target, json.dumps(payload, indent=2, default=str, sort_keys=False) + "\n")
        return target

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target


def atomic_write_text(target: Path, text: str) -> None:
    """Write via a temp file and rename, so a crash never leaves half a report."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)


def record_cluster(run: RunDir, cluster: dict[str, Any]) -> None:
    """Set run.json's `cluster`: where the run's Dask steps ran (address, dashboard_link, n_workers, kind)."""
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    record["cluster"] = cluster
    run.write_json("run.json", record)


def code_version() -> str:
    """Package version plus the git commit (with '+dirty') when run from a checkout."""
    try:
        base = version("keel")
    except PackageNotFoundError:
        base = "0+unknown"
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True, timeout=5
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return base
    return f"{base}+g{sha}{'.dirty' if dirty else ''}"


def input_files(loaded: LoadedSpec) -> dict[str, dict[str, Any]]:
    """Key path -> {path, bytes, sha256} for each data file the spec names (synthetic sources: as written)."""
    out: dict[str, dict[str, Any]] = {}
    for key, source in loaded.data_sources().items():
        path = Path(source)
        if source.startswith("synthetic:") or not path.is_file():
            out[key] = {"path": source}
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        out[key] = {"path": source, "bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


def create_run_dir(loaded: LoadedSpec, verb: str, now: datetime | None = None) -> RunDir:
    """Make a fresh run directory and record the spec that the run uses (and the flow run it belongs to).

    Earlier flow runs of this spec whose process died are marked Crashed first (pipeline/crashed_runs.py).
    """
    now = now or datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
    root = Path(loaded.spec.runtime.runs_dir) / loaded.spec.name
    flow_run = current_flow_run()
    if flow_run:
        try:
            crashed = mark_crashed(root)
        except Exception as exc:  # housekeeping must never fail the run that found it
            crashed = [f"could not check: {type(exc).__name__}: {exc}"]
        flow_run["marked_crashed"] = crashed
    run = RunDir(root / f"{stamp}-{verb}-{loaded.sha256[:8]}")
    run.path.mkdir(parents=True, exist_ok=False)
    run.write_text("resolved_spec.yaml", redact(loaded.to_yaml()))  # no URL password ever reaches a record
    run.write_json(
        "run.json",
        redact(
            {
                "verb": verb,
                "spec": str(loaded.path),
                "spec_name": loaded.spec.name,
                "spec_sha256": loaded.sha256,
                "overrides": loaded.overrides,
                "config_choices": loaded.choices,
                "code_version": code_version(),
                "started_at": now.isoformat(),
                "store": str(store_home(loaded.spec.runtime)[0]),  # which BentoML store the run reads and writes
                "inputs": input_files(loaded),  # sha256 of every file the spec reads: a changed input is visible
                **flow_run,  # flow_run_id, host, pid: a later run can tell this one died
            }
        ),
    )
    return run
