"""Online serving for tabular bundles: a framework-free Scorer, score caches, and the BentoML service.

The Scorer holds all request semantics (validation, derived features, prediction, reasons)
so that the BentoML service, a bare ASGI app in the bench and batch code agree on them.
"""

from pipeline.serving.errors import RequestError
from pipeline.serving.scorer import Scorer

__all__ = ["RequestError", "Scorer"]
