"""Rollout errors: a refusal (nothing changed, exit 1) is distinct from a damaged record (operator must look)."""

from __future__ import annotations


class RolloutError(Exception):
    """Base class for rollout failures."""


class RolloutRefused(RolloutError):
    """The operation was refused and nothing changed; the message says why and what to do."""


class RolloutStateError(RolloutError):
    """rollout.json is unreadable or malformed: serving keeps the champion only, writers refuse to guess."""
