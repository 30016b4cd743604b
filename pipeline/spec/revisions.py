"""A spec as it was at a git revision, with the conf/ groups of that same revision.

`keel diff SPEC --against main` must compare like with like: an old spec composed
with today's conf/ would hide a change made in a config group.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.spec.errors import Problem, SpecError


def _git(cwd: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True)
    except FileNotFoundError:
        raise SpecError([Problem(str(cwd), None, "", "git is not installed")]) from None
    except subprocess.CalledProcessError as exc:
        message = exc.stderr.decode(errors="replace").strip().splitlines()
        raise SpecError([Problem(str(cwd), None, "", f"git {args[0]}: {message[-1] if message else exc}")]) from None
    return done.stdout


@contextmanager
def spec_at_revision(spec: Path, revision: str) -> Iterator[tuple[Path, Path | None]]:
    """Yield (spec path, conf dir or None) extracted from `revision` into a temp dir."""
    if revision.startswith("-"):
        raise SpecError([Problem("command line", None, "--against", f"invalid git revision {revision!r}")])
    folder = spec.resolve().parent
    top = Path(_git(folder, "rev-parse", "--show-toplevel").decode().strip())
    relative = spec.resolve().relative_to(top)
    paths = [str(relative)]
    conf = relative.parent.parent / "conf"
    listed = _git(top, "ls-tree", "--name-only", revision, "--", str(conf)).decode().strip()
    if listed:
        paths.append(str(conf))
    tar_bytes = _git(top, "archive", "--format=tar", revision, "--", *paths)
    with tempfile.TemporaryDirectory(prefix="keel-rev-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as archive:
            archive.extractall(tmp, filter="data")
        root = Path(tmp)
        yield root / relative, (root / conf) if listed else None
