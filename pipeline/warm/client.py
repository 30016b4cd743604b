"""The `keel` side: hand a flow verb to the project's warm runner, or say it must run cold.

Standard library only, and nothing done unless the verb is one of WARM_VERBS and the project has a
runner socket: every other command pays a few stat calls at most.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from pathlib import Path

from pipeline.warm.protocol import SOCKET_NAME, WARM_VERBS, fingerprint, runner_dir

OFF_VALUES = frozenset({"0", "false", "no", "off"})
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def wanted(argv: list[str]) -> bool:
    """A flow verb, and KEEL_WARM not switched off."""
    if os.environ.get("KEEL_WARM", "1").strip().lower() in OFF_VALUES:
        return False
    verb = next((arg for arg in argv if not arg.startswith("-")), None)
    return verb in WARM_VERBS and "--help" not in argv and "-h" not in argv


def delegate(argv: list[str]) -> int | None:
    """The verb's exit status when the runner ran it; None when it must run in this process."""
    if not wanted(argv):
        return None
    path = runner_dir(Path.cwd()) / SOCKET_NAME
    if not path.exists():
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.path.relpath(path))
        request = {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "umask": _umask(),
            "path0": sys.path[0],
            "fingerprint": fingerprint(),
        }
        socket.send_fds(conn, [json.dumps(request).encode("utf-8") + b"\n"], [0, 1, 2])
        answers = conn.makefile("rb")
        first = json.loads(answers.readline() or b"{}")
    except (OSError, ValueError):  # no runner behind the socket (it crashed), or closed descriptors here
        conn.close()
        return None
    if "pid" not in first:
        if first.get("stale"):
            print(f"keel: the warm runner cannot serve this ({first['stale']}); running cold", file=sys.stderr)
        conn.close()
        return None
    with conn, _forwarding(int(first["pid"])):
        last = answers.readline()
    if not last:
        print("keel: the run ended without an exit status (its process was killed)", file=sys.stderr)
        return 1
    return int(json.loads(last)["exit"])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def _forwarding(pid: int):
    """Ctrl-C and termination reach the child that does the work, as they would reach a cold `keel`."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
