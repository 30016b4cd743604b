"""Whether a process still lives, and stopping one: what `keel server`, the warm runner and the crashed-run
sweep share."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def pid_alive(pid: int) -> bool:
    """True while `pid` exists (also when it belongs to another user: EPERM still means it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(pid: int, grace_s: float, group: bool = False) -> None:
    """SIGTERM (to its process group with `group`), up to `grace_s` to exit, then SIGKILL.

    A child of this process (in-process tests) is reaped while waiting, so it stops existing."""
    kill = os.killpg if group else os.kill
    if not pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            kill(pid, signal.SIGKILL)
