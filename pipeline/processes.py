"""Whether a process still lives: the one check `keel server` and the crashed-run sweep share."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """True while `pid` exists (also when it belongs to another user: EPERM still means it is there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
