"""Staged rollout of a challenger bundle: one rollout record per system, read by every serving worker.

The record (``$BENTOML_HOME/keel/<name>/rollout.json``) says which challenger gets which share
of traffic; serving routes by it (pipeline/serving/router.py) and rolls back by rewriting it.
See docs/adr/0010-rollout-state-and-routing.md.
"""

from pipeline.rollout.errors import RolloutError, RolloutRefused, RolloutStateError
from pipeline.rollout.state import RolloutState, advance, read_rollout, rollback, start, status

__all__ = [
    "RolloutError",
    "RolloutRefused",
    "RolloutState",
    "RolloutStateError",
    "advance",
    "read_rollout",
    "rollback",
    "start",
    "status",
]
