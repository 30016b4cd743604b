"""Start, stop and find the project's warm runner (with `keel server start|stop|status`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.processes import pid_alive, terminate
from pipeline.warm.protocol import LOG_NAME, SOCKET_NAME, STATE_NAME, runner_dir


@dataclass
class RunnerInfo:
    pid: int
    socket: str
    log: str
    started_at: str


def read_runner(base: Path | None = None) -> RunnerInfo | None:
    try:
        return RunnerInfo(**json.loads((runner_dir(base) / STATE_NAME).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def runner_running(base: Path | None = None) -> RunnerInfo | None:
    """The runner when its process lives and its socket accepts a connection."""
    info = read_runner(base)
    if info is None or not pid_alive(info.pid) or not _answers(Path(info.socket)):
        return None
    return info


def start_runner(base: Path | None = None, timeout_s: float = 60) -> tuple[RunnerInfo, bool]:
    """Start the runner in the background (a no-op when one answers); (info, started_now)."""
    current = runner_running(base)
    if current is not None:
        return current, False
    stop_runner(base)  # a recorded runner that no longer answers
    project = (base or Path.cwd()).resolve()
    folder = runner_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / LOG_NAME
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.warm.server"],
            cwd=project,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    sock = folder / SOCKET_NAME
    deadline = time.monotonic() + timeout_s
    while not _answers(sock):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            raise RuntimeError(f"the warm runner did not come up; its log: {log_path}")
        time.sleep(0.1)
    info = RunnerInfo(proc.pid, str(sock), str(log_path), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    (folder / STATE_NAME).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    return info, True


def stop_runner(base: Path | None = None, grace_s: float = 10) -> RunnerInfo | None:
    """Stop the runner (runs it forked keep going to their end); None when none was recorded."""
    info = read_runner(base)
    if info is None:
        return None
    terminate(info.pid, grace_s)  # the runner only: commands it forked run to their end
    folder = runner_dir(base)
    for name in (STATE_NAME, SOCKET_NAME):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    return info


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(os.path.relpath(path))
        except OSError:
            return False
    return True
