"""The `keel` command: `keel <verb> SPEC [overrides...] [--json]`.

Exit codes (docs/cli.md): 0 ok; 1 a gate or contract said no; 2 bad spec, bad
input or usage; 3 the machine could not store the result (disk full, read-only).
With --json the last line of stdout is one JSON object for scripts and CI. Heavy
imports (Prefect, GE) happen inside the verbs that need them, so `keel show` and
`keel diff` answer in about a second.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

from pipeline.cli.common import EXIT_BAD, EXIT_NO, EXIT_OK, EXIT_STORAGE, QUIET_ENV, STORAGE_ERRNOS, UsageError, fail
from pipeline.cli.parser import KeelParser, build_parser, split_diff_args, split_models_args
from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.extras import MissingExtra, from_import_error
from pipeline.permissions import apply_umask
from pipeline.prefect_target import PrefectUnreachable
from pipeline.spec.errors import SpecError
from pipeline.spec.review import default_specs_folder
from pipeline.spec.secrets import SecretError

__all__ = ["EXIT_BAD", "EXIT_NO", "EXIT_OK", "EXIT_STORAGE", "QUIET_ENV", "UsageError", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    apply_umask()  # owner-only files unless KEEL_UMASK says otherwise (pipeline/permissions.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = split_models_args(split_diff_args(default_specs_folder(argv)))
    parser = build_parser()
    try:
        args = _parse(parser, argv)
    except SystemExit as exc:  # argparse's usage errors (exit 2) and --help (exit 0)
        if exc.code and "--json" in argv:
            reason = KeelParser.last_error or "usage error"
            print(json.dumps({"status": "error", "problems": [{"reason": f"usage: {reason}"}]}))
        return int(exc.code or 0)
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


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args, extras = parser.parse_known_args(argv)
    # overrides may come after options (`--data x.csv a=b`); anything else unknown is a usage error
    stray = [e for e in extras if e.startswith("-") or ("=" not in e and not e.startswith("~"))]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = [*getattr(args, "overrides", []), *extras]
    if args.verb in ("server", "init-spec", "init", "schema") and args.overrides:
        parser.error(f"keel {args.verb} takes no overrides: {' '.join(args.overrides)}")
    return args
