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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs Redis on 127.0.0.1:6379 (skipped, with the reason, without it)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `redis` skip with what to install when no Redis answers, instead of failing."""
    from tests.services import NEEDS_REDIS, redis_up

    marked = [item for item in items if item.get_closest_marker("redis")]
    if marked and not redis_up():
        for item in marked:
            item.add_marker(pytest.mark.skip(reason=NEEDS_REDIS))
