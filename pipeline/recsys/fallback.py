"""The /recommend fallback chain: which degradation level answers when a stage fails; test faults.

Kept apart from pipeline/recsys/online.py (torch, FAISS, LightGBM) so that the HTTP layer can
name the error without importing the models: a churn service never loads them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.spec.schema import FALLBACK_ORDER

# the level a failed stage asks for: features -> embedded values, ranking -> retrieval order,
# retrieval -> the popularity list
DEGRADES = {"features": "STALE_FEATURES", "ranking": "SIMPLE_RANKING", "retrieval": "POPULARITY"}
# stages a test can break through KEEL_TEST_FAULTS; a retrieval source by its name: `retrieval.<name>`
# (the defaults of pipeline.recsys.system.SOURCES, or a declared retrieval.sources name)
FAULT_STAGES = (
    "retrieval.two_tower",
    "retrieval.cooccurrence",
    "retrieval.popularity",
    "features",
    "ranking",
    "rerank",
)
_SOURCE_STAGE = re.compile(r"^retrieval\.[a-z0-9][-._a-z0-9]*$")


class NoFallbackLeft(RuntimeError):
    """A stage failed and the declared chain has no level to answer with (a 503, never a 500)."""


def degrade(levels: Sequence[str], level: str, stage: str) -> str:
    """The worse of `level` and the stage's level, moved down to the next level `levels` declares."""
    wanted = max(FALLBACK_ORDER.index(level), FALLBACK_ORDER.index(DEGRADES[stage]))
    for name in levels:
        if FALLBACK_ORDER.index(name) >= wanted:
            return name
    raise NoFallbackLeft(f"{stage} failed and serving.fallback {list(levels)} declares no level after it")


def parse_faults(text: str | None) -> dict[str, tuple[str, float]]:
    """`ranking=raise,features=sleep:200` -> {"ranking": ("raise", 0), "features": ("sleep", 200)}."""
    faults: dict[str, tuple[str, float]] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        stage, _, action = part.strip().partition("=")
        if stage not in FAULT_STAGES and not _SOURCE_STAGE.match(stage):
            known = ", ".join((*FAULT_STAGES, "retrieval.<source name>"))
            raise ValueError(f"KEEL_TEST_FAULTS: unknown stage {stage!r}; known: {known}")
        if action == "raise":
            faults[stage] = ("raise", 0.0)
        elif action.startswith("sleep:"):
            faults[stage] = ("sleep", float(action.removeprefix("sleep:")))
        else:
            raise ValueError(f"KEEL_TEST_FAULTS: {stage}={action!r}; expected raise or sleep:<ms>")
    return faults
