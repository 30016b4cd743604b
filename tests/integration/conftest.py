"""One real (ephemeral) Prefect API for the whole test session, isolated from ~/.prefect."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # Import Prefect here, outside any test's capsys: its console log handler keeps the stream
    # it finds at import, and a test's capsys stream is closed when that test ends.
    import prefect  # noqa: F401
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    settings = {PREFECT_HOME: home, PREFECT_LOCAL_STORAGE_PATH: home / "storage"}
    with temporary_settings(settings), prefect_test_harness(server_startup_timeout=120):
        yield
