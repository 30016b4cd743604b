"""Who may see the serving host's file layout: callers with the admin token; everyone else gets it redacted.

Why: `/status` and 503 answers carry reasons such as "no champion for 'churn' in /srv/keel/bentoml"
or a damaged score-cache file's path. An HTTP caller is trusted for nothing beyond its request
(docs/adr/0021-threat-model.md), and the store home, the request-log folder and the spec path tell
an outsider where to look on the host. So every string in those answers has the absolute paths
replaced (known ones by name, `<store>`, others by `<path>`) unless the caller sends
`Authorization: Bearer <KEEL_ADMIN_TOKEN>`; an admin's `/status` also lists the paths themselves.

The token comes from the serving environment (KEEL_ADMIN_TOKEN), never from a spec (the resolver
cannot read the environment, ADR 0021). Without it configured nobody is admin over HTTP: the
operator reads the same details from the service log or the host.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Mapping
from typing import Any

ADMIN_TOKEN_ENV = "KEEL_ADMIN_TOKEN"
MIN_TOKEN_CHARS = 16
# an absolute path of two or more parts ("/srv/x", "~/x"), starting at a slash that is not inside a word,
# a number, a URL or another path; one part alone ("POST /recommend") is a route, not a place on the host
_PART = r"[^\s'\"`,;:()\[\]{}<>|/]+"
ABSOLUTE_PATH = re.compile(rf"(?<![\w.~:/\\>-])(?:~/{_PART}|/{_PART}/{_PART})(?:/{_PART})*/?")


def admin_token_from_env() -> str | None:
    """KEEL_ADMIN_TOKEN, or None when unset; a token shorter than 16 characters is refused (ValueError)."""
    token = os.environ.get(ADMIN_TOKEN_ENV, "").strip()
    if not token:
        return None
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{ADMIN_TOKEN_ENV} must be at least {MIN_TOKEN_CHARS} characters")
    return token


def is_admin(authorization: str | None, token: str | None) -> bool:
    """True only when a token is configured and the header is `Bearer <that token>` (constant-time compare)."""
    if not token or not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def redact(value: Any, known: Mapping[str, str] | None = None) -> Any:
    """`value` with every absolute path in its strings replaced; dicts and lists are walked (keys kept).

    `known`: label -> path (e.g. {"store": "/srv/bentoml"}); those become `<label>` (the rest of a
    path below them stays, e.g. `<store>/keel/churn/scores/v1.parquet`, which says what without where).
    Any other absolute path becomes `<path>`.
    """
    pairs = _known_pairs(known or {})
    return _walk(value, pairs)


def _known_pairs(known: Mapping[str, str]) -> list[tuple[str, str]]:
    pairs: dict[str, str] = {}
    for label, path in known.items():
        if not path:
            continue
        for form in {str(path), os.path.abspath(path), os.path.realpath(path)}:
            form = form.rstrip("/")
            if len(form) > 1:
                pairs.setdefault(form, f"<{label}>")
    return sorted(pairs.items(), key=lambda kv: -len(kv[0]))  # the longest first: a log dir inside the store


def _walk(value: Any, pairs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        return _redact_text(value, pairs)
    if isinstance(value, dict):
        return {key: _walk(item, pairs) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(item, pairs) for item in value]
    return value


def _redact_text(text: str, pairs: list[tuple[str, str]]) -> str:
    for path, label in pairs:
        text = text.replace(path, label)
    return ABSOLUTE_PATH.sub("<path>", text)
