"""Session-wide test settings: isolate every store and keep traffic on loopback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def write_spec(tmp_path: Path):
    """Write a spec next to a copy-free conf search path (Keel's own conf/ is always searched)."""

    def _write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / "specs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    return _write
