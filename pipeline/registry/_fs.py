"""Durable file primitives: hashing, fsync, atomic replace, advisory locks, crash points.

Every registry write goes through these so that a SIGKILL or power loss at any line
leaves either the old state or the new one on disk, never a mix.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
CRASH_ENV = "KEEL_REGISTRY_CRASH_AT"
TMP_MARK = ".tmp-"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(src: Path, dst: Path) -> str:
    """Copy and hash the bytes actually written, so a source changing mid-copy cannot desync the manifest."""
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(CHUNK):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
    return digest.hexdigest()


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a directory fsync makes renames and new entries durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fsync_path(Path(dirpath) / name)
        fsync_path(Path(dirpath))


def atomic_write(path: Path, data: bytes) -> None:
    """Write temp + fsync + os.replace + fsync dir: readers see the old or the new file, never a torn one."""
    tmp = path.with_name(f".{path.name}{TMP_MARK}{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        crash_point(f"{path.name}:before_replace")  # the fault matrix kills here (tests/unit/test_fault_matrix.py)
        os.replace(tmp, path)
        crash_point(f"{path.name}:after_replace")
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_path(path.parent)


def append_jsonl(path: Path, lines: list[dict[str, Any]]) -> None:
    """Append JSON lines and fsync; a torn last line from an earlier crash is fenced off by a newline first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"  # a crash mid-append: don't glue onto it
        text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)
        crash_point(f"{path.name}:before_append")
        os.write(fd, (("\n" if torn else "") + text).encode())
        os.fsync(fd)
        crash_point(f"{path.name}:after_append")
    finally:
        os.close(fd)


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Blocking flock on a lock file; the kernel drops it when the holder dies, so no stale locks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_lock_dir(path: Path) -> int | None:
    """Non-blocking exclusive flock on a directory; returns the fd (caller closes) or None if held."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def crash_point(step: str) -> None:
    """Test hook: SIGKILL this process at ``step`` when KEEL_REGISTRY_CRASH_AT names it.

    SIGKILL (not an exception) is the point: no finally/atexit runs, as in an OOM kill.
    """
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
