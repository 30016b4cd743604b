"""Registry errors: one type per decision a caller makes differently.

Serving falls back to standby on IntegrityError, an operator fixes a name on
InvalidName, a release pipeline stops on PromotionRefused; so they are distinct.
"""

from __future__ import annotations


class RegistryError(Exception):
    """Base class for every registry failure."""


class InvalidName(RegistryError, ValueError):
    """A bundle name, version or tag that could escape the store or is not exact."""


class BundleNotFound(RegistryError, LookupError):
    """No committed bundle with that tag (half-written versions count as absent)."""


class IntegrityError(RegistryError):
    """Bundle content differs from its manifest: never load it.

    ``file``/``expected``/``actual`` name the first problem; ``problems`` lists all.
    """

    def __init__(self, tag: str, file: str, expected: str, actual: str, problems: list[str] | None = None) -> None:
        self.tag = tag
        self.file = file
        self.expected = expected
        self.actual = actual
        self.problems = problems or [f"{file}: expected {expected}, actual {actual}"]
        more = f" (+{len(self.problems) - 1} more: {'; '.join(self.problems[1:])})" if len(self.problems) > 1 else ""
        super().__init__(f"bundle {tag}: file {file!r} expected sha256 {expected}, actual {actual}{more}")


class VersionConflict(RegistryError):
    """Two registrations picked the same version: the later one is refused, never merged."""


class PromotionRefused(RegistryError):
    """A bundle may not become champion (gate failed, wrong name, not verifiable)."""


class RollbackUnavailable(RegistryError):
    """A rollback was asked for but there is no standby to fall back to."""


class BundleInUse(RegistryError):
    """Deleting a bundle that an alias still points to would break serving."""
