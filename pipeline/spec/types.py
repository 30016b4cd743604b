"""Small value types shared by the spec schema: names, durations, cron strings.

They live apart from the schema so that other packages can parse a duration or
check a name without importing the whole spec model.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator

NAME_PATTERN = re.compile(r"^[a-z0-9]([-._a-z0-9]{0,61}[a-z0-9])?$")
"""BentoML's tag rule: lowercase, digits, '-', '.', '_'; at most 63 characters.

Every name that ends up in a path or a store tag matches it, so a spec can never
smuggle ``../`` into a file name.
"""

COLUMN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
"""Columns and features are identifiers: they appear in expressions and in paths."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """Parse '90s', '30m', '24h', '7d' or '2w' into a timedelta.

    Raises ValueError with the accepted forms, so spec errors explain themselves.
    """
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(
            f"cannot parse duration {text!r}: use a number and a unit, e.g. '90s', '30m', '24h', '7d', '2w'"
        )
    value, unit = match.groups()
    return timedelta(seconds=float(value) * _UNIT_SECONDS[unit])


def format_duration(delta: timedelta) -> str:
    """Inverse of parse_duration, choosing the largest exact unit ('3d', '36h')."""
    seconds = int(delta.total_seconds())
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _check_duration(text: str) -> str:
    parse_duration(text)
    return text


def check_cron(text: str) -> str:
    """Accept a five-field cron string (croniter's grammar); explain otherwise."""
    from croniter import croniter

    if len(str(text).split()) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"cannot parse cron {text!r}: expected five fields 'minute hour day month weekday', e.g. '0 2 * * 0'"
        )
    return text


def check_name(text: str) -> str:
    if not NAME_PATTERN.match(text):
        raise ValueError(
            f"invalid name {text!r}: use lowercase letters, digits, '-', '.', '_' (at most 63, "
            "starting and ending with a letter or digit)"
        )
    return text


def check_column(text: str) -> str:
    if not COLUMN_PATTERN.match(text):
        raise ValueError(f"invalid column name {text!r}: use letters, digits and '_' (an identifier)")
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
Cron = Annotated[str, AfterValidator(check_cron)]
Name = Annotated[str, AfterValidator(check_name)]
Column = Annotated[str, AfterValidator(check_column)]
