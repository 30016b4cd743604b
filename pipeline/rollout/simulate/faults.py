"""Simulation-only fault injection in the serving path, honoured only when KEEL_SIMULATION=1.

Why a per-request header and not a flag in the rollout record: the simulator decides which
requests carry a fault (all of them for an error burst or a latency spike; only one platform's
for an event-format change), and an injected fault must never outlive the simulation or reach
a production service. The header `X-Keel-Sim-Fault` is read by an ASGI middleware that the
service installs only when KEEL_SIMULATION=1; without it the context variable is never set and
the hook in the challenger's path is one ContextVar lookup.

Values: `error` (the challenger raises: an error burst), `format:<platform>` (the challenger
cannot parse that platform's new event format and raises), `latency=<ms>` (the challenger takes
`ms` longer, capped at 1 s). Only the challenger is affected, inside its timed section, so the
request log and the immediate triggers see exactly what a real fault would produce; the caller
still gets the champion's answer for a failed challenger (pipeline/serving/dispatch.py).
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from typing import Any

import anyio

ENV = "KEEL_SIMULATION"
HEADER = "x-keel-sim-fault"
MAX_LATENCY_MS = 1000.0
_FAULT: ContextVar[str | None] = ContextVar("keel_sim_fault", default=None)


class SimulatedFault(RuntimeError):
    """A fault the simulator asked for; counted against the challenger like any server-side failure."""


def enabled() -> bool:
    return os.environ.get(ENV) == "1"


class SimFaultMiddleware:
    """Pure ASGI: copy the fault header into a context variable for the duration of the request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._header = HEADER.encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") == "http":
            for key, value in scope.get("headers") or ():
                if key.lower() == self._header:
                    token = _FAULT.set(value.decode("latin-1")[:64])
                    try:
                        await self.app(scope, receive, send)
                    finally:
                        _FAULT.reset(token)
                    return
        await self.app(scope, receive, send)


async def challenger_fault() -> None:
    """Called where the challenger answers a routed request; does nothing unless a simulation asked for a fault."""
    fault = _FAULT.get()
    if fault is None:
        return
    if fault == "error":
        raise SimulatedFault("simulated challenger error burst")
    if fault.startswith("format:"):
        raise SimulatedFault(f"simulated event-format change on platform {fault[7:]!r}: field not parseable")
    if fault.startswith("latency="):
        try:
            ms = min(float(fault[8:]), MAX_LATENCY_MS)
        except ValueError:
            return
        await anyio.sleep(max(ms, 0.0) / 1e3)
