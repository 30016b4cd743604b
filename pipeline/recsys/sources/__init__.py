"""Retrieval sources, one module per type behind one protocol (pipeline.recsys.sources.base)."""

from pipeline.recsys.sources import als, classical  # noqa: F401  (registers the types)
from pipeline.recsys.sources.base import SOURCE_TYPES, CandidateSource, ScorerSource, make_source, register

__all__ = ["SOURCE_TYPES", "CandidateSource", "ScorerSource", "make_source", "register"]
