"""Keel's model registry: co-versioned bundles in the BentoML store, plus serving aliases.

A bundle is one directory (model files, contracts, profiles, metrics, resolved spec)
registered atomically under an exact ``name:version`` tag; aliases (champion,
challenger, standby) move between tags in one atomic, locked, audited write.

The ``aliases()`` reader is not re-exported here: it would shadow the
``pipeline.registry.aliases`` module; call ``pipeline.registry.aliases.aliases``.
"""

from pipeline.registry.aliases import history, promote, rollback, set_challenger
from pipeline.registry.bundle import BundleManifest, BundleRef, load_bundle, save_bundle
from pipeline.registry.errors import (
    BundleInUse,
    BundleNotFound,
    IntegrityError,
    InvalidName,
    PromotionRefused,
    RegistryError,
    RollbackUnavailable,
    VersionConflict,
)
from pipeline.registry.store import BundleStore

__all__ = [
    "BundleInUse",
    "BundleManifest",
    "BundleNotFound",
    "BundleRef",
    "BundleStore",
    "IntegrityError",
    "InvalidName",
    "PromotionRefused",
    "RegistryError",
    "RollbackUnavailable",
    "VersionConflict",
    "history",
    "load_bundle",
    "promote",
    "rollback",
    "save_bundle",
    "set_challenger",
]
