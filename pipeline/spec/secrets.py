"""Secrets by reference: a spec names where a credential lives, never the credential itself.

`runtime.redis_url: env:KEEL_REDIS_URL` reads the URL from that environment variable when a
connection is made; `prefect-secret:NAME` reads a Prefect Secret block. The spec, the resolved
spec, run records and Prefect flow parameters then hold only the reference. A URL with a password
written into a spec or an override is refused at load (pipeline/spec/schema.py), and every record
Keel writes passes through `redact` as a second line of defence (docs/adr/0021-threat-model.md).
"""

from __future__ import annotations

import os
import re
from typing import Any

ENV_PREFIX = "env:"
PREFECT_PREFIX = "prefect-secret:"
_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
_REFERENCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class SecretError(Exception):
    """A referenced secret is missing or unreadable (the message names the reference, never a value)."""


def has_password(url: str) -> bool:
    """A URL with `user:password@` (or `:password@`) in it."""
    return bool(_CREDENTIALS.search(url))


def is_reference(value: str) -> bool:
    return value.startswith((ENV_PREFIX, PREFECT_PREFIX))


def check_reference(value: str) -> str:
    """A well-formed reference (env:NAME / prefect-secret:NAME) or a plain value; ValueError otherwise."""
    for prefix in (ENV_PREFIX, PREFECT_PREFIX):
        if value.startswith(prefix) and not _REFERENCE_NAME.match(value[len(prefix) :]):
            raise ValueError(f"{prefix}NAME needs a name of letters, digits, '_', '.', '-': got {value!r}")
    return value


def resolve(value: str | None) -> str | None:
    """The value a reference points at (read now, never stored); a plain value as it is."""
    if value is None or not is_reference(value):
        return value
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :]
        found = os.environ.get(name)
        if not found:
            raise SecretError(f"{value}: the environment variable {name} is not set")
        return found
    name = value[len(PREFECT_PREFIX) :]
    try:
        from prefect.blocks.system import Secret

        return str(Secret.load(name).get())
    except Exception as exc:
        raise SecretError(f"{value}: cannot read the Prefect Secret block {name!r} ({type(exc).__name__})") from None


def redact(obj: Any) -> Any:
    """`obj` with every URL password replaced by ***, recursively through dicts, lists and strings."""
    if isinstance(obj, str):
        return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", obj)
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(redact(v) for v in obj)
    return obj


def redis_url(spec: Any) -> str | None:
    """The Redis URL to connect to: KEEL_REDIS_URL (the serving host's choice), else the spec's, resolved."""
    return os.environ.get("KEEL_REDIS_URL") or resolve(spec.runtime.redis_url)
