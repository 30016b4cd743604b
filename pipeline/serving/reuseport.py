"""Opt-in (KEEL_REUSEPORT=1): each BentoML worker listens on its own SO_REUSEPORT socket.

Why: BentoML 1.4 binds ONE socket in its arbiter and every worker accepts from it. asyncio accepts
up to `backlog` (>= 64) pending connections per wake-up, so the first worker to wake takes a whole
burst of keep-alive clients and keeps them: at concurrency 8 one worker did all the work
(bentoml#5426; the fix, bentoml#5557, was closed unmerged). Circus, BentoML's process manager,
already gives each process its own socket when a socket has `so_reuseport` and the watcher's
`cmd` names it; BentoML asks for neither. One wrapper, around the arbiter factory `serve_http`
calls (in the arbiter process only), adjusts the objects it is handed before circus starts:

* the API server's `CircusSocket` gets `so_reuseport` (plus the `_cfg` circus re-creates each
  process's copy from);
* the workers' watcher carries its arguments in `cmd`, where circus looks for the socket name.

The kernel then spreads connections over the workers by a hash of the 4-tuple (random, not even).
Guarded: Linux, bentoml 1.4.x and the patched names as expected; anything else changes nothing
(a warning says why). docs/adr/0012-recommend-serving.md, "Worker balance", has the figures.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
from typing import Any

log = logging.getLogger("keel.serving")

API_SOCKET = "_bento_api_server"  # _bentoml_impl.server.serving.API_SERVER_NAME in bentoml 1.4
MARKER = f"$(circus.sockets.{API_SOCKET})"


def enable_reuseport(environ: dict[str, str] | None = None) -> bool:
    """Wrap BentoML's arbiter factory when KEEL_REUSEPORT=1 and the libraries are the ones this was written for."""
    env = os.environ if environ is None else environ
    if env.get("KEEL_REUSEPORT", "0") != "1":
        return False
    if not sys.platform.startswith("linux") or not hasattr(socket, "SO_REUSEPORT"):
        log.warning("KEEL_REUSEPORT=1 ignored: SO_REUSEPORT balancing needs Linux")
        return False
    import bentoml
    from _bentoml_impl.server import serving as impl
    from bentoml._internal.utils import circus as bento_circus

    if not bentoml.__version__.startswith("1.4.") or getattr(impl, "API_SERVER_NAME", None) != API_SOCKET:
        log.warning("KEEL_REUSEPORT=1 ignored: written for bentoml 1.4.x, found %s", bentoml.__version__)
        return False
    factory = bento_circus.create_standalone_arbiter
    if getattr(factory, "keel_reuseport", False):
        return True
    bento_circus.create_standalone_arbiter = _wrapped(factory)  # serve_http imports it at call time
    return True


def _wrapped(factory: Any) -> Any:
    def create_standalone_arbiter(watchers: list, **kwargs: Any) -> Any:
        sockets = [s for s in kwargs.get("sockets") or [] if s.name == API_SOCKET and not s.is_unix]
        users = [w for w in watchers if MARKER in (w.args or [])]
        if len(sockets) == 1 and users:
            _per_process(sockets[0], users)
        return factory(watchers, **kwargs)

    create_standalone_arbiter.keel_reuseport = True  # type: ignore[attr-defined]
    return create_standalone_arbiter


def _per_process(sock: Any, watchers: list) -> None:
    """Circus skips binding a reuseport socket and binds a fresh one (from `_cfg`) for each process of a
    watcher whose `cmd` names it, which BentoML's watcher does only in its `args`."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.so_reuseport = True
    sock._cfg = {
        "name": sock.name,
        "host": sock.host,
        "port": str(sock.port),
        "family": "AF_INET6" if sock.family == socket.AF_INET6 else "AF_INET",
        "backlog": str(sock.backlog),
        "so_reuseport": "true",
    }
    for watcher in watchers:
        watcher.cmd = f"{watcher.cmd} {shlex.join(watcher.args)}"
        watcher.args = None
    log.info("KEEL_REUSEPORT=1: one SO_REUSEPORT listening socket per worker on port %s", sock.port)
