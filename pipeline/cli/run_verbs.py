"""Verbs that run flows over data: validate, score, run (and sweeps), monitor, simulate."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.extras import require_for_spec
from pipeline.prefect_target import prefect_api

if TYPE_CHECKING:
    from pipeline.spec.load import LoadedSpec

from pipeline.cli.common import EXIT_BAD, EXIT_NO, EXIT_OK, UsageError, emit, fail, load, load_sweep


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = load(args)
    data = None if args.data is None else data_argument(args.data)
    if data is not None and not _data_exists(data):
        raise UsageError(f"cannot read {args.data}: the file does not exist")  # before Prefect starts
    from flows.validate import run_validation

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_validation(loaded, data_path=data)
    emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
    return EXIT_OK if summary["status"] == "ok" else EXIT_NO


def data_argument(raw: str) -> str:
    """--data as the flows take it: a URI unchanged; a path made absolute against the working directory, where
    the user typed it (data.source in a spec is relative to the spec's folder; --data is not), on both executors."""
    from pipeline.data.partitioned import is_uri

    return raw if is_uri(raw) else str(Path(raw).expanduser().absolute())


def _data_exists(data: str) -> bool:
    """--data: one file, or a directory / glob / URI of Parquet files (pipeline/data/partitioned.py)."""
    from pipeline.data.partitioned import is_partitioned

    return Path(data).is_file() or is_partitioned(data)


def cmd_score(args: argparse.Namespace) -> int:
    """`keel score SPEC --data FILE`: score a file's accepted rows with a bundle (pipeline/scoring/command.py)."""
    loaded = load(args)
    from pipeline.scoring.command import ScoreError, check_out_path, resolve_bundle

    if loaded.spec.task != "binary_classification":
        raise UsageError(f"keel score scores classification specs; {args.spec} is a {loaded.spec.task} spec")
    data = data_argument(args.data)
    if not _data_exists(data):
        raise UsageError(f"cannot read {args.data}: the file does not exist")  # before Prefect starts
    if args.reasons < 0:
        raise UsageError(f"--reasons must be 0 or more, got {args.reasons}")
    from pipeline.registry.home import spec_store

    try:  # the one store every verb uses (runtime.bentoml_home, BENTOML_HOME, else .keel/bentoml)
        check_out_path(args.out)
        tag = resolve_bundle(loaded.spec, spec_store(loaded.spec), args.bundle)
    except ScoreError as exc:
        raise UsageError(str(exc)) from None
    from flows.score import run_score

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_score(loaded, data, tag, args.out, args.reasons)
    emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
    return EXIT_OK if summary["status"] == "ok" else EXIT_NO


def cmd_run(args: argparse.Namespace) -> int:
    if args.multirun and args.rollout:
        raise UsageError("--rollout does not apply to a sweep (no sweep job is promoted or rolled out)")
    if args.multirun:
        return _run_sweep(args)
    if args.promote_best:
        raise UsageError("--promote-best only applies to a sweep: keel run -m SPEC key=a,b ... --promote-best")
    loaded = load(args)
    require_for_spec(loaded.spec, "run")  # torch/faiss for recommendations, dask for runtime.executor dask
    if args.rollout:
        return _run_into_rollout(args, loaded)
    refused = _refuse_during_live_rollout(args, loaded)
    if refused is not None:
        return refused
    from flows.lifecycle import run_lifecycle

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_lifecycle(loaded)
    emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
    return EXIT_OK if summary["status"] == "ok" else EXIT_NO


def _refuse_during_live_rollout(args: argparse.Namespace, loaded: LoadedSpec) -> int | None:
    """A run that promotes must not replace the champion a live rollout judges its challenger against."""
    from pipeline.registry.home import spec_store
    from pipeline.rollout import rollback, status
    from pipeline.rollout.backends import configure_backend

    spec, store = loaded.spec, spec_store(loaded.spec)
    configure_backend(spec, store)
    state = status(spec.name, store=store)
    if state is None or not state.live:
        return None
    if getattr(args, "abort_rollout", False):
        rollback(spec.name, "aborted by keel run --abort-rollout", store=store, rollout_id=state.rollout_id)
        print(f"rollout {state.rollout_id} rolled back (--abort-rollout): {state.challenger} no longer takes traffic")
        return None
    message = (
        f"keel run: rollout {state.rollout_id} of {spec.name} is live (challenger {state.challenger} at stage "
        f"{state.stage}, {state.traffic:.0%} of traffic, against champion {state.champion}); a run now would "
        "promote a new champion and the rollout would judge its challenger against a model that no longer "
        "serves. Let it finish, roll it back (keel rollout rollback SPEC), or pass --abort-rollout."
    )
    payload = {"status": "refused", "reason": "live rollout", "rollout": state.to_dict()}
    return fail(args, message, payload, EXIT_NO)


def _run_into_rollout(args: argparse.Namespace, loaded: LoadedSpec) -> int:
    """`keel run --rollout`: what a triggered retrain does (register, then start the staged rollout)."""
    if loaded.spec.rollout is None:
        raise UsageError(f"{args.spec} has no rollout section for --rollout: add `rollout: standard` to its defaults")
    from flows.schedule import retrain_and_roll_out

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        result = retrain_and_roll_out(loaded, "manual", False, "keel run --rollout")
    emit(args, result["text"], {k: v for k, v in result.items() if k != "text"})
    refused = (result["rollout"] or {}).get("status") == "refused"
    return EXIT_OK if result["status"] == "ok" and not refused else EXIT_NO


def _run_sweep(args: argparse.Namespace) -> int:
    """`keel run -m`: check every combination, then one keel-run per job in one Prefect session."""
    jobs, specs = load_sweep(args)
    require_for_spec(specs[0].spec, "run")  # before any job starts: torch/faiss, dask (pipeline/extras.py)
    if args.promote_best and (refused := _refuse_during_live_rollout(args, specs[0])) is not None:
        return refused
    from flows.sweep import render_text, sweep_flow

    with prefect_api(specs[0].spec.runtime.prefect_api_url):
        summary = sweep_flow(
            str(args.spec),
            [{"index": j.index, "overrides": list(j.overrides), "swept": list(j.swept)} for j in jobs],
            [str(d) for d in specs[0].conf_dirs],
            specs[0].spec.selection.metric,  # None: the task's default (flows/sweep.py DEFAULT_METRIC)
            args.promote_best,
        )
    emit(args, render_text(summary), summary)
    return {"ok": EXIT_OK, "failed": EXIT_NO}.get(summary["status"], EXIT_BAD)


def cmd_monitor(args: argparse.Namespace) -> int:
    """`keel monitor SPEC [--data FILE] [--as-of DATE]`: exit 1 when the spec's triggers prescribe a retrain."""
    loaded = load(args)
    if args.data is not None and not args.data.is_file():
        raise UsageError(f"cannot read {args.data}: the file does not exist")
    from flows.monitor import run_monitor
    from pipeline.monitoring.decision import exit_status

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_monitor(loaded, data_path=args.data, as_of=args.as_of, start_retrain=args.retrain)
    emit(args, summary["text"], {"status": "ok", **{k: v for k, v in summary.items() if k != "text"}})
    return exit_status(summary["decision"])


def cmd_simulate(args: argparse.Namespace) -> int:
    """`keel simulate SPEC --days N [--inject FAULT]`: exit 0 when the rollout ended as the spec prescribes."""
    if not 1 <= args.days <= 365 or args.requests_per_day < 1:
        raise UsageError("--days must be 1..365 and --requests-per-day at least 1")
    from pipeline.rollout.commands import simulate_command

    code, human, payload = simulate_command(args, load(args))
    if code:
        print(human)
        return fail(args, "keel simulate: the rollout did not end as the spec prescribes", payload, code)
    emit(args, human, payload)
    return EXIT_OK
