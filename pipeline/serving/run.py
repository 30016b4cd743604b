"""`keel serve`: run the BentoML service for one spec, in the foreground, until Ctrl-C.

A subprocess rather than `bentoml.serve(...)` in-process: BentoML's serve forks a supervisor
with its own signal handling, and the service reads KEEL_SPEC / BENTOML_HOME from the env at
import; a child with its own env and process group starts and stops the same way every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline.spec.load import load_spec

SERVICE = "pipeline.serving.service:ChurnService"
REPO = Path(__file__).resolve().parents[2]


def serve_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]


def service_name(task: str) -> str:
    """The BentoML service's name: a recommendation spec's service is not the churn service."""
    return "keel-recommend" if task == "recommendation" else "keel-churn"


def serve(
    spec_path: str | Path,
    host: str = "127.0.0.1",
    port: int = 3000,
    home: str | Path | None = None,
    workers: int | None = None,
    overrides: list[str] | None = None,
    conf_dirs: list[str] | None = None,
) -> int:
    """Serve the spec's champion; returns the server's exit code (0 after a clean Ctrl-C/SIGTERM).

    The command line's overrides and config dirs reach the service's workers as KEEL_OVERRIDES /
    KEEL_CONF_DIRS (JSON), so they serve the spec `keel serve` checked (pipeline/serving/loader.py)."""
    env = {**os.environ, "KEEL_SPEC": str(Path(spec_path).resolve())}
    env["KEEL_OVERRIDES"] = json.dumps(list(overrides or []))
    env["KEEL_CONF_DIRS"] = json.dumps([str(Path(d).resolve()) for d in conf_dirs or []])
    task = load_spec(spec_path, list(overrides or []), [Path(d) for d in conf_dirs or []]).spec.task
    env["KEEL_SERVICE_NAME"] = service_name(task)
    if workers is not None:
        env["KEEL_WORKERS"] = str(workers)
        if workers > 1:  # one socket per worker, or one worker takes every keep-alive client (ADR 0012)
            env.setdefault("KEEL_REUSEPORT", "1")
    if home is not None:
        env["BENTOML_HOME"] = str(Path(home).resolve())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen(serve_command(host, port), env=env, cwd=REPO, start_new_session=True)
    # the child has its own session (so a terminal's Ctrl-C reaches only us once): forward SIGTERM too
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return _stop(proc)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if proc.poll() is None:
            _stop(proc)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop(proc: subprocess.Popen, grace_s: float = 15) -> int:
    """SIGTERM the whole process group (supervisor + workers), then SIGKILL after `grace_s`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        code = proc.wait(grace_s)
        return 0 if code == -signal.SIGTERM else code
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()
    except ProcessLookupError:
        return proc.wait()
