"""A full disk while registering: exit 3 with a --json line, the champion untouched, nothing partial visible.

The store lives on a small tmpfs mounted for the test (root only; where mounting is not allowed the test
is skipped with that reason, since a size-limited filesystem is the only honest way to fill a disk).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.registry import BundleStore
from pipeline.registry.aliases import aliases

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def keel(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1])


def test_a_full_disk_during_register_exits_3_and_keeps_the_champion(small_disk: Path, tmp_path: Path) -> None:
    home = small_disk / "store"
    args = [SPEC, "data.rows=3000", "~masked_churners", f"runtime.bentoml_home={home}", f"runtime.runs_dir={tmp_path}"]
    code, first = keel("run", *args)
    assert code == 0 and first["promoted"], first
    free = os.statvfs(small_disk)
    with open(small_disk / "filler", "wb") as filler:  # leave ~16 KB: less than one bundle needs
        filler.write(b"\0" * max(0, free.f_bavail * free.f_frsize - 16 * 1024))

    code, failed = keel("run", *args)
    assert code == 3, failed
    assert failed["status"] == "error" and failed["problems"][0]["errno"] == "ENOSPC"
    store = BundleStore(home)
    assert [r.tag for r in store.list("streamflow-churn")] == [first["bundle"]]  # nothing partial visible
    assert aliases("streamflow-churn", store=store)["champion"] == first["bundle"]
    code, verified = keel("models", "verify", *args[:1], f"runtime.bentoml_home={home}")
    assert code == 0 and verified["problems"] == []
