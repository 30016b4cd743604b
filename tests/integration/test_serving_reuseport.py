"""KEEL_REUSEPORT=1 (pipeline/serving/reuseport.py): each BentoML worker listens on its own socket.

A real `bentoml serve` with two workers; the workers' listening sockets are read from /proc.
Without the setting both workers hold the arbiter's one socket (the same inode), which is what
lets one worker take every keep-alive connection (ADR 0012, "Worker balance").
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.serving_fixtures import running_service

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT balancing is Linux-only")


def _listening_inodes(proc, port: int) -> dict[int, str]:
    """{worker pid: inode of the socket it listens on `port` with}."""
    out = {}
    for child in psutil.Process(proc.pid).children(recursive=True):
        if "_bentoml_impl.worker.service" not in " ".join(child.cmdline()):
            continue
        for conn in child.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.fd >= 0:
                out[child.pid] = os.readlink(f"/proc/{child.pid}/fd/{conn.fd}")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("reuseport", ["1", "0"])
def test_each_worker_gets_its_own_listening_socket(tmp_path: Path, reuseport: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {"KEEL_WORKERS": "2", "KEEL_REUSEPORT": reuseport}
    with running_service(home, env, wait_ready=False) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        for _ in range(20):
            inodes = _listening_inodes(proc, port)
            if len(inodes) == 2:
                break
            time.sleep(0.25)
        assert len(inodes) == 2, inodes
        assert len(set(inodes.values())) == (2 if reuseport == "1" else 1), inodes
        assert all(httpx.get(f"{url}/livez", timeout=5).status_code == 200 for _ in range(10))


@pytest.mark.slow
def test_metrics_add_up_every_workers_requests(tmp_path: Path) -> None:
    """/metrics is answered by one worker but counts both (Keel's route metrics, ADR 0031)."""
    home = tmp_path / "home"
    home.mkdir()
    with running_service(home, {"KEEL_WORKERS": "2", "KEEL_REUSEPORT": "1"}, wait_ready=False) as (url, proc):
        port = int(url.rsplit(":", 1)[1])
        for _ in range(20):
            if len(_listening_inodes(proc, port)) == 2:
                break
            time.sleep(0.25)
        sent = 60
        for _ in range(sent):  # a new connection each: the kernel spreads them over the two sockets
            assert httpx.get(f"{url}/status", timeout=5).status_code == 503  # no champion in an empty store
        # A request is counted after its response is sent (its duration is known then), so the last count
        # may land just after the client has its answer: wait for it (a count that never arrives still fails).
        deadline = time.monotonic() + 5
        per_worker = _status_counts(home / "prometheus_multiproc_dir")
        while sum(per_worker.values()) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
            per_worker = _status_counts(home / "prometheus_multiproc_dir")
        assert len(per_worker) == 2 and all(per_worker.values()), per_worker  # both workers answered some
        assert sum(per_worker.values()) == sent, per_worker
        for _ in range(4):  # whichever worker answers, the sum is the same
            text = httpx.get(f"{url}/metrics", timeout=5).text
            match = re.search(r'^keel_http_requests_total\{code="503",route="/status"\} (\S+)$', text, re.M)
            assert match and float(match.group(1)) == sent, text[-2000:]


def _status_counts(directory: Path) -> dict[str, float]:
    """Each worker's own count of /status answers, read from its metric file (prometheus_client's format)."""
    from prometheus_client.mmap_dict import MmapedDict

    counts = {}
    for path in directory.glob("counter_*.db"):
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(str(path)):
            if '"keel_http_requests_total"' in key and '"/status"' in key:
                counts[path.stem] = counts.get(path.stem, 0.0) + value
    return counts
