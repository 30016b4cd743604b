"""How much `keel` says and where: -q/-v log levels, `--json` alone on stdout, progress bars only when asked for.

While a verb runs with `--json` (or `-q`), stdout is pointed at stderr (or /dev/null) at the file-descriptor
level when it has one, so a stray print, a library's banner or a child process cannot land between a
script and its JSON line; `print_json` writes to the real stdout kept aside. Everything here is undone
when the verb returns, so `main()` can be called many times in one process (the tests do).
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TextIO

from pipeline.scoring.progress import PROGRESS_ENV  # "0" hides the long steps' bars whatever the terminal

log = logging.getLogger("keel.cli")

_sinks: list[TextIO] = []  # _devnull()
_json_out: list[TextIO] = []  # the real stdout while a verb runs with --json or -q (a stack: main may nest)


def print_json(payload: dict[str, Any]) -> None:
    """The one JSON line of `--json`, on the real stdout even while stdout is pointed elsewhere."""
    stream = _json_out[-1] if _json_out else sys.stdout
    print(json.dumps(payload, default=str), file=stream, flush=True)


def is_quiet(args: Any) -> bool:
    return bool(getattr(args, "quiet", False))


@contextmanager
def output_mode(quiet: bool, verbose: bool, as_json: bool) -> Iterator[None]:
    """Log levels for -q/-v and, for --json or -q, stdout kept for the JSON line alone."""
    with ExitStack() as stack:
        stack.enter_context(_log_levels(quiet, verbose))
        if quiet:
            stack.enter_context(_env(PROGRESS_ENV, "0"))
            stack.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")  # -q: errors only
        if quiet or as_json:
            sink = _devnull() if quiet else sys.stderr
            _json_out.append(stack.enter_context(_stdout_to(sink)))
            stack.callback(_json_out.pop)
        yield


def _devnull() -> TextIO:
    """One /dev/null for the process, never closed: a library that grabbed sys.stdout during a -q verb
    (a logging handler made at import) must not meet a closed file after it."""
    if not _sinks:
        _sinks.append(open(os.devnull, "w"))  # noqa: SIM115
    return _sinks[0]


@contextmanager
def _stdout_to(sink: TextIO) -> Iterator[TextIO]:
    """Point stdout at `sink`; yield a stream on the real stdout (for the JSON line)."""
    real = sys.stdout
    fd = _fileno(real)
    sink_fd = _fileno(sink)
    if fd is None or sink_fd is None:  # a captured stdout (pytest's capsys, redirect_stdout): Python level only
        sys.stdout = sink
        try:
            yield real
        finally:
            sys.stdout = real
        return
    real.flush()
    kept = os.dup(fd)
    os.dup2(sink_fd, fd)
    stream = open(kept, "w", encoding=getattr(real, "encoding", None) or "utf-8", closefd=True)  # noqa: SIM115
    try:
        yield stream
    finally:
        try:
            real.flush()
        finally:
            stream.flush()
            os.dup2(kept, fd)
            stream.close()


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation, ValueError):
        return None


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@contextmanager
def _log_levels(quiet: bool, verbose: bool) -> Iterator[None]:
    """-q: errors only; -v: keel's and Prefect's debug lines on stderr; neither: logging as it was."""
    if not (quiet or verbose):
        yield
        return
    level = logging.ERROR if quiet else logging.DEBUG
    root, keel, prefect = logging.getLogger(), logging.getLogger("keel"), logging.getLogger("prefect")
    saved = [(lg, lg.level) for lg in (root, keel, prefect)]
    handler: logging.Handler | None = None
    with ExitStack() as stack:
        # Prefect reads this when it configures its loggers (on first import, i.e. in a fresh `keel` process)
        stack.enter_context(_env("PREFECT_LOGGING_LEVEL", logging.getLevelName(level)))
        if verbose:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
            root.addHandler(handler)
            root.setLevel(logging.INFO)  # other libraries' debug chatter stays out; keel's and Prefect's do not
        else:
            root.setLevel(level)
            # loggers with their own level and handler (Great Expectations', Prefect's extra loggers) too
            logging.disable(logging.WARNING)
        keel.setLevel(level)
        prefect.setLevel(level)
        try:
            yield
        finally:
            if handler is not None:
                root.removeHandler(handler)
            if quiet:
                logging.disable(logging.NOTSET)
            for logger, was in saved:
                logger.setLevel(was)
