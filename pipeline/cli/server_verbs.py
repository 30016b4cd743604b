"""Verbs that talk to a Prefect server: keel server (this project's) and keel schedule (deployments)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.warm.control import RunnerInfo

from pipeline.cli.common import EXIT_NO, EXIT_OK, UsageError, emit, fail, load


def cmd_schedule(args: argparse.Namespace) -> int:
    """`keel schedule SPEC [--register-only]`: Prefect deployments with the spec's cron schedules, served here."""
    from pipeline.prefect_server import running

    loaded = load(args)
    local = running()
    api = os.environ.get("PREFECT_API_URL") or loaded.spec.runtime.prefect_api_url or (local.url if local else None)
    if not api:
        raise UsageError(
            "keel schedule needs a Prefect server: `keel server start` (this project's), "
            "or set PREFECT_API_URL / runtime.prefect_api_url"
        )
    os.environ["PREFECT_API_URL"] = api
    from flows.schedule import register, serve

    registered = register(loaded)
    lines = [f"deployment {d['name']}: cron {', '.join(c for c in d['cron'] if c) or 'none'}" for d in registered]
    emit(args, "\n".join([*lines, f"registered on {api}"]), {"status": "ok", "api": api, "deployments": registered})
    if not args.register_only:
        print("serving the deployments here (scheduled and UI-started runs execute in this process; Ctrl-C stops)")
        sys.stdout.flush()
        serve(loaded)
    return EXIT_OK


def cmd_server(args: argparse.Namespace) -> int:
    """`keel server start|stop|status`: this project's Prefect server, in the background, used by every verb."""
    from pipeline.prefect_server import ServerError, running, start, stop
    from pipeline.warm.control import runner_running

    if args.action == "start":
        try:
            info, started = start(port=args.port, database=args.database)
        except ServerError as exc:
            return fail(args, f"keel server start: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
        ui = info.url.removesuffix("/api")
        runner = runner_running()
        human = (
            f"{'started' if started else 'already running'}: Prefect server at {info.url} (pid {info.pid}, "
            f"database {info.database})\nUI: {ui}   log: {info.log}\nevery keel verb in this directory now uses it"
            + (
                f"\nwarm runner: pid {runner.pid} (flow verbs start with their imports done; log {runner.log})"
                if runner
                else ""
            )
        )
        emit(args, human, {"status": "ok", "started": started, **info.__dict__, "runner": _runner_json(runner)})
        return EXIT_OK
    if args.action == "stop":
        info = stop()
        human = f"stopped the Prefect server at {info.url} (pid {info.pid})" if info else "no server recorded here"
        emit(args, human, {"status": "ok", "stopped": info is not None})
        return EXIT_OK
    info = running()
    if info is None:
        emit(args, "no Prefect server running for this project (keel server start)", {"status": "down"})
        return EXIT_NO
    runner = runner_running()
    warm = f"; warm runner pid {runner.pid}" if runner else "; no warm runner (KEEL_WARM=0, or it stopped)"
    human = f"up: {info.url} (pid {info.pid}, database {info.database}){warm}"
    emit(args, human, {"status": "up", **info.__dict__, "runner": _runner_json(runner)})
    return EXIT_OK


def _runner_json(runner: RunnerInfo | None) -> dict[str, object] | None:
    return None if runner is None else {"pid": runner.pid, "socket": runner.socket, "log": runner.log}
