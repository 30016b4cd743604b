"""The `keel` command: `keel [-q|-v] <verb> SPEC [overrides...] [--json]` (click, ADR 0030).

Exit codes (docs/cli.md): 0 ok; 1 a gate or contract said no; 2 bad spec, bad input or usage; 3 the
machine could not store the result (disk full, read-only). With --json stdout holds one JSON object and
nothing else. Heavy imports (Prefect, GE, numpy) happen inside the verbs that need them, so `keel --help`,
`keel show` and `keel diff` answer fast.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import time

from pipeline.cli.common import EXIT_BAD, EXIT_NO, EXIT_OK, EXIT_STORAGE, QUIET_ENV, STORAGE_ERRNOS, UsageError, fail
from pipeline.cli.output import output_mode
from pipeline.cli.parser import build_cli, parse
from pipeline.permissions import apply_umask

__all__ = ["EXIT_BAD", "EXIT_NO", "EXIT_OK", "EXIT_STORAGE", "QUIET_ENV", "UsageError", "build_cli", "main"]

log = logging.getLogger("keel.cli")


def main(argv: list[str] | None = None) -> int:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    apply_umask()  # owner-only files unless KEEL_UMASK says otherwise (pipeline/permissions.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if isinstance(args, int):  # --help, --version or a usage error (already printed)
        return args
    with output_mode(args.quiet, args.verbose, args.json):
        started = time.perf_counter()
        log.debug("keel %s: %s", args.verb, {k: v for k, v in vars(args).items() if k != "handler"})
        code = _run(args)
        log.debug("keel %s: exit %d after %.2f s", args.verb, code, time.perf_counter() - started)
        return code


def _run(args: argparse.Namespace) -> int:
    """The verb, with every expected failure mapped to its exit code and message (no traceback)."""
    from pipeline.data.errors import DataSourceError, TrainingDataError
    from pipeline.extras import MissingExtra, from_import_error
    from pipeline.prefect_target import PrefectUnreachable
    from pipeline.spec.errors import SpecError
    from pipeline.spec.secrets import SecretError

    try:
        return args.handler(args)
    except SpecError as exc:
        return fail(args, exc.render(), {"status": "error", "problems": [p.to_dict() for p in exc.problems]})
    except TrainingDataError as exc:
        return fail(args, f"keel: {exc}", {"status": "failed", "reasons": [str(exc)]}, EXIT_NO)
    except (UsageError, DataSourceError, PrefectUnreachable, SecretError, MissingExtra) as exc:
        return fail(args, f"keel: {exc}", {"status": "error", "problems": [{"reason": str(exc)}]})
    except ImportError as exc:  # an optional dependency (pipeline/extras.py): name the extra, exit 2
        missing = from_import_error(exc)
        if missing is None:
            raise
        return fail(args, f"keel: {missing}", {"status": "error", "problems": [{"reason": str(missing)}]})
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        message = (
            f"keel: could not write{where}: {exc.strerror or exc}; nothing half-written is visible and the "
            "previous champion still serves (free space or fix permissions, then run again)"
        )
        payload = {"status": "error", "problems": [{"reason": message, "errno": errno.errorcode.get(exc.errno)}]}
        return fail(args, message, payload, EXIT_STORAGE)
    except KeyboardInterrupt:
        return 130
