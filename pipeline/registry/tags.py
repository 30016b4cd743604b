"""Bundle names, versions and exact tags.

Names reuse the spec's NAME_PATTERN (BentoML's tag rule) so nothing a spec author
types can become ``../`` in a store path. Tags are always exact ``name:version``:
``latest`` is a moving target and is refused, so a load is reproducible.
"""

from __future__ import annotations

import secrets
from datetime import datetime

from pipeline.registry.errors import InvalidName
from pipeline.spec.types import NAME_PATTERN


def check_name(name: str, what: str = "bundle name") -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidName(
            f"invalid {what} {name!r}: use lowercase letters, digits, '-', '.', '_' "
            "(at most 63, starting and ending with a letter or digit)"
        )
    return name


def new_version(now: datetime) -> str:
    """Sortable by creation second, unique by 32 random bits: ``20261123t101500-ab12cd34``."""
    return f"{now:%Y%m%dt%H%M%S}-{secrets.token_hex(4)}"


def make_tag(name: str, version: str) -> str:
    return f"{check_name(name)}:{check_name(version, 'version')}"


def parse_tag(tag: str) -> tuple[str, str]:
    """Split an exact tag; refuse a bare name or ``:latest``."""
    if not isinstance(tag, str) or tag.count(":") != 1:
        raise InvalidName(f"invalid bundle tag {tag!r}: expected exactly 'name:version'")
    name, version = tag.split(":")
    if version == "latest":
        raise InvalidName(f"tag {tag!r}: ':latest' is not allowed, pin an exact version")
    return check_name(name), check_name(version, "version")
