"""The runner: import the heavy libraries once, then fork one child per `keel` flow verb.

Run as `python -m pipeline.warm.server` in the project directory (pipeline/warm/control.py starts
it from `keel server start`). The parent only imports third-party libraries that read nothing of
the caller's at import (see protocol.IMPORT_TIME_ENV for the settings that make a caller go cold)
and never starts a thread of its own, so a fork is a faithful copy. A child lives as long as its
caller: Ctrl-C is forwarded by the client, and a caller killed outright ends the child too. Keel's own modules are not
kept: each child imports them from disk, so an edited spec module or flow is what runs.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

from pipeline.warm.protocol import MAX_MESSAGE, SOCKET_NAME, fingerprint, mismatch, runner_dir, send_line

# What every flow verb imports and a cold `keel run` spends ~1.2 s of its ~2.3 s of imports on
# (measured with -X importtime on two cores); Prefect itself stays out: it reads its settings from
# the environment at import, and the caller's environment is only known after the fork.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "pyarrow.dataset",
    "scipy.stats",
    "sklearn.metrics",
    "sklearn.linear_model",
    "lightgbm",
    "pydantic",
    "yaml",
    "omegaconf",
    "hydra",
    "hydra.compose",
    "jinja2",
    "fastapi.encoders",  # Prefect imports it to store a flow's parameters
)
KEEL_PACKAGES = ("pipeline", "flows")


def preload() -> list[str]:
    """Import PRELOAD; the names that are not installed (an extra left out) are skipped."""
    missing = []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def serve(folder: Path) -> None:
    """Accept clients on folder/runner.sock until SIGTERM; one forked child per request."""
    preload()
    own = fingerprint()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SOCKET_NAME
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)  # the socket file: owner only (it runs commands as this user)
    try:
        listener.bind(os.path.relpath(path))  # relative: a deep project path may not fit sun_path
    finally:
        os.umask(old_umask)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"keel runner: pid {os.getpid()} on {path}", flush=True)
    try:
        while True:
            conn, _ = listener.accept()
            with contextlib.suppress(OSError, ValueError):
                _handle(conn, listener, own)
    finally:
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _handle(conn: socket.socket, listener: socket.socket, own: dict[str, Any]) -> None:
    fds: list[int] = []
    try:
        request, fds = _receive(conn)
        why = mismatch(request.get("fingerprint", {}), own)
        if why is not None or len(fds) != 3:
            send_line(conn, {"stale": why or "the client did not pass its stdin, stdout and stderr"})
            return
        pid = os.fork()
        if pid == 0:
            _child(conn, listener, request, fds)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        print(f"{stamp} pid {pid} in {request['cwd']}: keel {' '.join(request['argv'][:2])}", flush=True)
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The request (one JSON line) and the three descriptors sent with its first bytes."""
    data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
    fds = list(fds)
    buffer = bytearray(data)
    while not buffer.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk or len(buffer) > MAX_MESSAGE:
            raise ValueError("incomplete request")
        buffer += chunk
    return json.loads(buffer), fds


def _child(conn: socket.socket, listener: socket.socket, request: dict[str, Any], fds: list[int]) -> NoReturn:
    """Become the caller's `keel`: its descriptors, directory, environment, umask; run; report the status."""
    code: int = 1
    try:
        listener.close()
        for sig in (signal.SIGCHLD, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in zip((0, 1, 2), fds, strict=True):
            os.dup2(fd, target)
        for fd in {fd for fd in fds if fd > 2}:
            os.close(fd)  # the caller's descriptors now live on 0, 1, 2 only
        fds.clear()
        _std_streams()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.umask(int(request["umask"]))
        sys.path[0] = request.get("path0", sys.path[0])
        for name in [m for m in sys.modules if m.split(".")[0] in KEEL_PACKAGES]:
            del sys.modules[name]  # the runner's own Keel modules: the child imports today's from disk
        sys.argv = ["keel", *request["argv"]]
        send_line(conn, {"pid": os.getpid()})
        threading.Thread(target=_end_with_caller, args=(conn,), daemon=True).start()
        from pipeline.cli import main

        code = _status(main(list(request["argv"])))
    except SystemExit as exc:
        code = _status(exc.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # what a cold `keel` would print: the traceback, exit 1
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()  # Prefect flushes its logs and events at exit, as in a cold process
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        with contextlib.suppress(BaseException):
            send_line(conn, {"exit": code})
        os._exit(code)


def _end_with_caller(conn: socket.socket) -> None:
    """A caller killed outright (SIGKILL: nothing to forward) takes its command with it, as a cold one would."""
    with contextlib.suppress(OSError):
        while conn.recv(1):
            pass  # the caller sends nothing after its request: recv returns b"" when it is gone
    os.kill(os.getpid(), signal.SIGTERM)


def _status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints it and exits 1
    return 1


def _std_streams() -> None:
    """Text streams on the caller's descriptors, line-buffered on a terminal as a fresh process would be."""
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False, buffering=1 if os.isatty(1) else -1)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False, buffering=1)  # noqa: SIM115
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


if __name__ == "__main__":
    serve(runner_dir(Path.cwd()))
