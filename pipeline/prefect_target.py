"""Which Prefect API a command's flows report to: the spec's `runtime.prefect_api_url`, or an ephemeral one.

Why a context manager instead of exporting PREFECT_API_URL once: `keel` runs in-process in tests
(and in sweeps several specs share one process), so the spec's server must apply to one command and
leave no trace. PREFECT_API_URL in the environment always wins: an operator's shell setting is
deliberate. A server that does not answer is a clear error before any flow starts, not a Prefect
traceback from deep inside the first task.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "PREFECT_API_URL"


class PrefectUnreachable(Exception):
    """The spec names a Prefect server that does not answer its health check."""


def check_reachable(url: str, timeout_s: float = 3.0) -> None:
    """GET <url>/health; Prefect's API answers `true` when it is up."""
    health = url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(health, timeout=timeout_s) as answer:
            if answer.status != 200:
                raise PrefectUnreachable(f"{health} answered HTTP {answer.status}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise PrefectUnreachable(
            f"runtime.prefect_api_url: no Prefect server answers at {url} ({reason}); start one with "
            "`prefect server start`, or remove the key to use an ephemeral API"
        ) from None


@contextmanager
def prefect_api(url: str | None) -> Iterator[str | None]:
    """Point Prefect at `url` for the duration of one command; yields the API URL in effect (None: ephemeral).

    Order: PREFECT_API_URL in the environment; the spec's runtime.prefect_api_url (health-checked);
    the project's own server when `keel server start` left one running; else an ephemeral API.
    """
    if os.environ.get(ENV):
        yield os.environ.get(ENV)
        return
    from pipeline.spec.secrets import resolve

    url = resolve(url)  # runtime.prefect_api_url may be an env:/prefect-secret: reference
    if not url:
        from pipeline.prefect_server import running

        local = running()
        if local is None:
            yield None
            return
        url = local.url
    if not url.startswith(("http://", "https://")):
        raise PrefectUnreachable(f"runtime.prefect_api_url: {url!r} is not an http(s) URL")
    check_reachable(url)
    if "prefect" in sys.modules:  # already imported (tests, sweeps): its settings object is live
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
        return
    os.environ[ENV] = url  # read when Prefect is imported by the flow
    try:
        yield url
    finally:
        os.environ.pop(ENV, None)
