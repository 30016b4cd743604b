"""`keel server start|stop|status`: one Prefect server per project, in the background, that every verb uses.

Why: without a server each verb starts a temporary one (10-15 s on two cores) and prints Prefect's
notice about it; with one running, a flow run costs about a second, and the Prefect UI shows every
run, schedule and report. The server keeps its state on the local PostgreSQL (a `keel_prefect`
database) when 127.0.0.1:5432 takes connections, else in SQLite under `.keel/prefect/`. Its address
is recorded in `.keel/prefect/server.json` (project-local, like the model store), which
pipeline/prefect_target.py reads (docs/adr/0017-one-store-one-server.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from pipeline.processes import pid_alive, terminate

STATE_DIR = Path(".keel") / "prefect"
STATE_FILE = "server.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "keel_prefect"


class ServerError(Exception):
    """The server could not be started or stopped (the message says why and where the log is)."""


@dataclass
class ServerInfo:
    pid: int
    url: str
    database: str
    log: str
    started_at: str


def state_dir(base: Path | None = None) -> Path:
    return ((base or Path.cwd()) / STATE_DIR).resolve()


def read_info(base: Path | None = None) -> ServerInfo | None:
    try:
        data = json.loads((state_dir(base) / STATE_FILE).read_text(encoding="utf-8"))
        return ServerInfo(**data)
    except (OSError, ValueError, TypeError):
        return None


def healthy(url: str, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=timeout_s) as answer:
            return answer.status == 200
    except (OSError, ValueError):
        return False


def running(base: Path | None = None) -> ServerInfo | None:
    """The project's server when its process lives and its API answers; None otherwise."""
    info = read_info(base)
    if info is None or not pid_alive(info.pid) or not healthy(info.url):
        return None
    return info


def _free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database(folder: Path) -> str:
    """The local PostgreSQL (a keel_prefect database, created when missing) when it answers, else SQLite."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)).fetchone()
            if not exists:
                conn.execute(f"CREATE DATABASE {PG_DATABASE}")
        return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{PG_DATABASE}"
    except Exception:  # no PostgreSQL here (or no rights): SQLite still serves one project well
        return f"sqlite+aiosqlite:///{folder / 'prefect.db'}"


def start(
    port: int = 4200, timeout_s: float = 180, base: Path | None = None, database: str | None = None
) -> tuple[ServerInfo, bool]:
    """Start the server in the background (a no-op when one already answers); (info, started_now).

    database: a SQLAlchemy URL for the server's state; default the local PostgreSQL, else SQLite."""
    current = running(base)
    if current is not None:
        _warm_runner(base)
        return current, False
    folder = state_dir(base)
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port(port)
    url = f"http://127.0.0.1:{port}/api"
    database = database or _database(folder)
    log_path = folder / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env |= {
        "PREFECT_HOME": str(folder / "home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
        "PREFECT_UI_API_URL": url,  # the UI calls the API where it really is (else :4200 on another port)
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    prefect = Path(sys.executable).parent / "prefect"
    command = [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while not healthy(url, 2.0):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            raise ServerError(f"the Prefect server did not come up on {url}; its log: {log_path}")
        time.sleep(0.5)
    info = ServerInfo(
        proc.pid, url, _redacted(database), str(log_path), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    (folder / STATE_FILE).write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    _warm_runner(base)
    return info, True


def _warm_runner(base: Path | None) -> None:
    """Beside the server, the warm runner that saves each flow verb its imports (KEEL_WARM=0: none)."""
    from pipeline.warm.client import OFF_VALUES
    from pipeline.warm.control import start_runner

    if os.environ.get("KEEL_WARM", "1").strip().lower() not in OFF_VALUES:
        start_runner(base)


def stop(base: Path | None = None, grace_s: float = 20) -> ServerInfo | None:
    """Stop the project's server (its whole process group); None when none was recorded."""
    from pipeline.warm.control import stop_runner

    stop_runner(base)
    info = read_info(base)
    if info is None:
        return None
    terminate(info.pid, grace_s, group=True)
    with contextlib.suppress(FileNotFoundError):
        (state_dir(base) / STATE_FILE).unlink()
    return info


def _redacted(url: str) -> str:
    """A database URL as it may be written down: no password."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}@{host}"
