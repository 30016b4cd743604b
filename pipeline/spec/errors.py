"""Spec errors that explain themselves: file, line, key path, reason, suggestion.

One `SpecError` carries every problem found in a spec, so a user fixes them all in
one round instead of one per run (Dagster's file:line + key path, scikit-learn's
one-sentence template).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.spec.secrets import redact


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec. `file` may be 'command line' for an override."""

    file: str
    line: int | None
    key: str
    reason: str

    def render(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = f" {self.key}:" if self.key else ""
        return redact(f"{where}:{key} {self.reason}")  # an error message never shows a URL's password

    def to_dict(self) -> dict:
        return redact({"file": self.file, "line": self.line, "key": self.key, "reason": self.reason})


class SpecError(Exception):
    """Raised with every problem of a spec; the CLI prints them and exits 2."""

    def __init__(self, problems: Iterable[Problem], spec_file: str = ""):
        self.problems = sorted(set(problems), key=lambda p: (p.file != spec_file, p.file, p.line or 0, p.key))
        self.spec_file = spec_file
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"spec {self.spec_file} has {count} error{'s' if count != 1 else ''}:" if self.spec_file else ""
        body = "\n".join(f"  {p.render()}" for p in self.problems)
        return f"{head}\n{body}" if head else body


def suggest(name: str, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest option, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, name: str, options: Iterable[str]) -> str:
    """The one sentence for every unknown name: what, which, the closest, the choices."""
    options = sorted({str(o) for o in options})
    hint = suggest(name, options)
    listing = ", ".join(options[:12]) + (", ..." if len(options) > 12 else "")
    return f"unknown {kind} '{name}'{hint}; known: {listing}" if options else f"unknown {kind} '{name}'"
