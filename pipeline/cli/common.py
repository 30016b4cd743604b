"""What every verb shares: exit codes, the quiet environment, loading the spec, printing human text and --json."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.cli.output import is_quiet, print_json
from pipeline.spec.errors import Problem, SpecError

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec
    from pipeline.spec.sweep import SweepJob


EXIT_OK, EXIT_NO, EXIT_BAD, EXIT_STORAGE = 0, 1, 2, 3
# a full disk, a quota or a read-only/forbidden store: the machine's problem, not the spec's or the model's


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


QUIET_ENV = {
    "GX_ANALYTICS_ENABLED": "false",  # great-expectations would send usage data
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry rows (they also contend for SQLite)
    "DO_NOT_TRACK": "1",
    "TQDM_DISABLE": "1",  # GE's per-metric progress bars
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",  # 2 busy cores: the default 20 s is tight
}


class UsageError(Exception):
    """Bad input that is not a spec problem (a data file, a git revision); exit 2."""


def emit(args: argparse.Namespace, human: str, payload: dict[str, Any]) -> None:
    """Human text (stdout; stderr with --json; nothing with -q), then --json's one line on the real stdout."""
    if human and not is_quiet(args):
        print(human)  # with --json, stdout points at stderr while the verb runs (pipeline/cli/output.py)
    if args.json:
        print_json(payload)


def load(args: argparse.Namespace):
    from pipeline.spec.load import load_spec
    from pipeline.spec.sweep import sweep_overrides

    sweeps = sweep_overrides(args.overrides)
    if sweeps:  # clearer than Hydra's "Ambiguous value ... add --multirun"
        reason = "several values make a sweep: `keel run -m` runs one job per value; a list is written [a,b]"
        problems = [
            Problem(f"command line override '{o}'", None, o.split("=", 1)[0].lstrip("+~"), reason) for o in sweeps
        ]
        raise SpecError(problems, spec_file=str(args.spec))
    return load_spec(args.spec, args.overrides, [Path(d) for d in args.conf])


def load_sweep(args: argparse.Namespace) -> tuple[list[SweepJob], list[LoadedSpec]]:
    """Every combination of a `-m` sweep, each composed and checked (exit 2 lists every bad one)."""
    from pipeline.spec.sweep import check_sweep, expand_sweep

    jobs = expand_sweep(args.overrides, spec_file=str(args.spec))
    return jobs, check_sweep(args.spec, jobs, [Path(d) for d in args.conf])


def fail(args: argparse.Namespace, message: str, payload: dict[str, Any], code: int = EXIT_BAD) -> int:
    print(message, file=sys.stderr)
    if getattr(args, "json", False):
        print_json(payload)
    return code
