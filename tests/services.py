"""The local services some tests need (Redis, PostgreSQL): reachable, or a skip that says what to do.

scripts/services.sh starts both when they are installed but down (scripts/test.sh and .ci/run run it).
"""

from __future__ import annotations

import functools
import socket

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
POSTGRES_HOST, POSTGRES_PORT = "127.0.0.1", 5432
NEEDS_REDIS = (
    f"needs Redis on {REDIS_HOST}:{REDIS_PORT}: install redis-server (apt-get install redis-server), "
    "then scripts/services.sh starts it"
)


@functools.cache
def redis_up(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    """True when a Redis answers PING on host:port (a raw socket: no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False
