"""Spec review for pull requests: `keel diff --format markdown`, `--exit-code`, `--changed-since REV`.

`--changed-since REV` answers "what does this change do to our ML systems?": every spec under specs/ is
composed twice, as it is now and as it was at REV with that revision's specs/ and conf/ (a group change
reaches every spec that uses it), and each one whose resolved configuration differs is diffed in words
(pipeline/spec/diff.py). Keel's own groups come from the installed Keel on both sides; a project's
`--config-dir` directories outside the repository are the same on both sides too.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.spec.diff import Change
from pipeline.spec.errors import Problem, SpecError
from pipeline.spec.revisions import _git

TITLES = {
    "contract": "Contract",
    "features": "Features",
    "model": "Model",
    "gates": "Gates",
    "rollout": "Rollout",
    "triggers": "Triggers",
    "evaluation": "Evaluation",
    "scoring": "Scoring",
    "data": "Data",
    "monitoring": "Monitoring",
    "runtime": "Runtime",
    "spec": "Spec",
}


def verdict(changes: list[Change]) -> str:
    """One line a reviewer reads first: "2 gates stricter, 1 contract range narrowed, 0 removed"."""
    if not changes:
        return "no changes"
    counts = {
        "gate stricter": sum(c.concern == "gates" and c.text.endswith("(stricter)") for c in changes),
        "gate looser": sum(c.concern == "gates" and c.text.endswith("(looser)") for c in changes),
        "gate added": sum(c.concern == "gates" and ": added" in c.text for c in changes),
        "contract range narrowed": sum(c.text.endswith("(range narrowed)") for c in changes),
        "contract range widened": sum(c.text.endswith("(range widened)") for c in changes),
    }
    removed = sum(" removed" in c.text or c.text.endswith("removed") for c in changes)
    other = len(changes) - sum(counts.values()) - removed
    parts = [_plural(n, what) for what, n in counts.items() if n]
    if other:
        parts.append(_plural(other, "other change"))
    parts.append(f"{removed} removed")  # always said: a removal is what a reviewer must not miss
    return ", ".join(parts)


def _plural(n: int, what: str) -> str:
    head, _, tail = what.partition(" ")
    return f"{n} {head if n == 1 else head + 's'}{' ' + tail if tail else ''}"


def render_markdown(changes: list[Change], old_label: str, new_label: str, heading: str = "###") -> str:
    """Headings per concern, the verdict first; `old_label`/`new_label` name the two sides."""
    lines = [f"{heading} `{new_label}`", "", f"**{verdict(changes)}** (vs `{old_label}`)"]
    if not changes:
        lines += ["", "The two specs resolve to the same configuration."]
    current = None
    for change in changes:
        if change.concern != current:
            current = change.concern
            lines += ["", f"{heading}# {TITLES.get(current, current.title())}", ""]
        lines.append(f"- {_md(change.text)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    """A change's words as Markdown text: no HTML, no table cells."""
    return text.replace("<", "&lt;").replace("|", "\\|")


@dataclass
class SpecReview:
    spec: str  # relative to the repository root
    status: str  # changed | added | removed | unchanged | broken_before
    changes: list[Change] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "status": self.status,
            "verdict": self.verdict,
            "note": self.note,
            "changes": [c.to_dict() for c in self.changes],
        }

    @property
    def verdict(self) -> str:
        if self.status == "added":
            return "new spec"
        if self.status == "removed":
            return "spec removed"
        if self.status == "broken_before":
            return f"did not compose before ({self.note})"
        return verdict(self.changes)


@dataclass
class Review:
    revision: str
    specs: list[SpecReview]

    @property
    def changed(self) -> list[SpecReview]:
        return [s for s in self.specs if s.status != "unchanged"]

    def text(self) -> str:
        if not self.changed:
            return f"no spec's resolved configuration changed since {self.revision} ({len(self.specs)} specs checked)"
        from pipeline.spec.diff import render

        blocks = [f"{len(self.changed)} of {len(self.specs)} specs change since {self.revision}:"]
        for s in self.changed:
            body = render(s.changes) if s.status == "changed" else s.verdict
            blocks.append(f"--- {s.spec}@{self.revision}\n+++ {s.spec}\n{s.verdict}\n{body}")
        return "\n\n".join(blocks)

    def markdown(self) -> str:
        head = [f"## Keel review: {len(self.changed)} of {len(self.specs)} specs change (vs `{self.revision}`)", ""]
        if not self.changed:
            return "\n".join([*head, "No spec's resolved configuration changes."]) + "\n"
        parts = ["\n".join(head)]
        for s in self.changed:
            if s.status == "changed":
                parts.append(render_markdown(s.changes, f"{s.spec}@{self.revision}", s.spec))
            else:
                parts.append(f"### `{s.spec}`\n\n**{_md(s.verdict)}**\n")
        unchanged = [s.spec for s in self.specs if s.status == "unchanged"]
        if unchanged:
            parts.append("Unchanged: " + ", ".join(f"`{u}`" for u in unchanged) + "\n")
        return "\n".join(parts)

    def payload(self) -> dict[str, Any]:
        return {
            "status": "ok",
            "changed_since": self.revision,
            "changed": [s.spec for s in self.changed],
            "specs": [s.to_dict() for s in self.specs],
        }


def changed_since(specs_dir: Path, revision: str, overrides: list[str], conf_dirs: list[Path]) -> Review:
    """Every spec under `specs_dir` (now and at `revision`), composed on both sides and compared."""
    from pipeline.spec.diff import diff_specs
    from pipeline.spec.load import load_spec

    if revision.startswith("-"):
        raise SpecError([Problem("command line", None, "--changed-since", f"invalid git revision {revision!r}")])
    if not specs_dir.is_dir():
        raise SpecError([Problem(str(specs_dir), None, "", "--changed-since needs a folder of specs (default specs/)")])
    top = Path(_git(specs_dir.resolve(), "rev-parse", "--show-toplevel").decode().strip())
    relative = specs_dir.resolve().relative_to(top)
    conf = relative.parent / "conf"
    now = {p.name: p for p in _spec_files(specs_dir)}
    reviews: list[SpecReview] = []
    with tempfile.TemporaryDirectory(prefix="keel-review-") as tmp:
        root = Path(tmp)
        _extract(top, revision, [relative, conf], root)
        then_dir = root / relative
        then = {p.name: p for p in _spec_files(then_dir)} if then_dir.is_dir() else {}
        then_conf = [root / conf] if (root / conf).is_dir() else []
        for name in sorted({*now, *then}):
            shown = str(relative / name)
            if name not in then:
                load_spec(now[name], overrides, conf_dirs)  # a new spec must compose too (exit 2 if not)
                reviews.append(SpecReview(shown, "added"))
                continue
            if name not in now:
                reviews.append(SpecReview(shown, "removed"))
                continue
            new = load_spec(now[name], overrides, conf_dirs).resolved
            try:
                old = load_spec(then[name], overrides, [*then_conf, *conf_dirs]).resolved
            except SpecError as exc:
                reviews.append(SpecReview(shown, "broken_before", note=exc.problems[0].reason if exc.problems else ""))
                continue
            changes = diff_specs(old, new)
            reviews.append(SpecReview(shown, "changed" if changes else "unchanged", changes))
    return Review(revision, reviews)


def _spec_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def _extract(top: Path, revision: str, paths: list[Path], into: Path) -> None:
    """`paths` (those that exist at `revision`) of the repository at `revision`, under `into`."""
    _git(top, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    present = [str(p) for p in paths if _git(top, "ls-tree", "--name-only", revision, "--", str(p)).strip()]
    if not present:
        return
    data = _git(top, "archive", "--format=tar", revision, "--", *present)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(into, filter="data")


# `keel diff` options that take a value (so the value is not read as SPEC)
_VALUED = {"--against", "--change", "--backtest", "--conf", "--config-dir", "--new", "--format", "--changed-since"}


def default_specs_folder(argv: list[str]) -> list[str]:
    """`keel diff --changed-since REV` without a folder reviews `specs/` (SPEC is then the folder)."""
    if not argv or argv[0] != "diff" or not any(a.split("=")[0] == "--changed-since" for a in argv):
        return argv
    skip = False
    for token in argv[1:]:
        if skip:
            skip = False
        elif token.startswith("-"):
            skip = token in _VALUED
        elif "=" not in token and not token.startswith("~"):
            return argv  # a folder (or file) was given
    return ["diff", "specs", *argv[1:]]
