"""What client and runner share: where the socket is, the messages, and when a warm start is faithful.

Standard library only: the client side runs before any of Keel's heavy imports.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

RUNNER_DIR = Path(".keel") / "runner"
SOCKET_NAME = "runner.sock"
STATE_NAME = "runner.json"
LOG_NAME = "runner.log"
MAX_MESSAGE = 1 << 20  # the request: argv, cwd and the environment

# Verbs that start Prefect flows: the ones whose imports the runner saves. The cheap verbs (check,
# show, diff, models, schema, init) stay cold; `serve` and `server` own long-lived processes.
WARM_VERBS = frozenset({"run", "validate", "score", "backtest", "monitor", "simulate", "rollout"})

# Read by native libraries or by Python when the runner imported them, so a client that sets them
# differently must not be served by that runner (OpenMP and BLAS size their thread pools at load).
IMPORT_TIME_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "KMP_AFFINITY",
    "SKLEARN_ASSUME_FINITE",
    "SKLEARN_WORKING_MEMORY",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "PYTHONWARNINGS",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "MALLOC_ARENA_MAX",
    "ARROW_DEFAULT_MEMORY_POOL",
)


def runner_dir(base: Path | None = None) -> Path:
    return (base or Path.cwd()) / RUNNER_DIR


def fingerprint() -> dict[str, Any]:
    """What a process's pre-imported libraries depend on: the interpreter, its packages, import-time settings."""
    packages = {}
    for entry in sys.path[1:]:  # [0] is the script's folder or the working directory: differs by design
        if entry and ("site-packages" in entry or entry.startswith(sys.base_prefix)):
            try:
                packages[entry] = os.stat(entry).st_mtime_ns  # installing or removing a package touches it
            except OSError:
                continue
    return {
        "python": sys.executable,
        "version": sys.version,
        "prefix": sys.prefix,
        "uid": os.getuid(),
        "env": {name: os.environ.get(name) for name in IMPORT_TIME_ENV},
        "packages": packages,
    }


def mismatch(client: dict[str, Any], runner: dict[str, Any]) -> str | None:
    """Why the runner's imports would not be what this client would import; None when they would be."""
    for key, what in (("python", "another interpreter"), ("version", "another Python"), ("prefix", "another venv")):
        if client.get(key) != runner.get(key):
            return what
    if client.get("uid") != runner.get("uid"):
        return "another user"
    for name, value in runner["env"].items():
        if client.get("env", {}).get(name) != value:
            return f"{name} differs from the runner's"
    if client.get("packages") != runner.get("packages"):
        return "packages were installed or removed since it started"
    return None


def send_line(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode("utf-8") + b"\n")
