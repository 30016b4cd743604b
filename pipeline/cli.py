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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.extras import MissingExtra, from_import_error, require, require_for_spec
from pipeline.permissions import apply_umask
from pipeline.prefect_target import PrefectUnreachable, prefect_api
from pipeline.spec.errors import Problem, SpecError
from pipeline.spec.review import default_specs_folder
from pipeline.spec.secrets import SecretError

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


def _emit(args: argparse.Namespace, human: str, payload: dict[str, Any]) -> None:
    if human:
        print(human)
    if args.json:
        print(json.dumps(payload, default=str, sort_keys=False))


def _load(args: argparse.Namespace):
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


def _load_sweep(args: argparse.Namespace) -> tuple[list[SweepJob], list[LoadedSpec]]:
    """Every combination of a `-m` sweep, each composed and checked (exit 2 lists every bad one)."""
    from pipeline.spec.sweep import check_sweep, expand_sweep

    jobs = expand_sweep(args.overrides, spec_file=str(args.spec))
    return jobs, check_sweep(args.spec, jobs, [Path(d) for d in args.conf])


def cmd_check(args: argparse.Namespace) -> int:
    if args.multirun:
        jobs, specs = _load_sweep(args)
        text = "\n".join(
            f"job {j.index} [{j.label}]: ok (sha256 {s.sha256[:12]})" for j, s in zip(jobs, specs, strict=True)
        )
        payload = [
            {"job": j.index, "overrides": list(j.swept), "spec_sha256": s.sha256}
            for j, s in zip(jobs, specs, strict=True)
        ]
        _emit(args, text, {"status": "ok", "spec": str(args.spec), "jobs": payload})
        return EXIT_OK
    loaded = _load(args)
    from pipeline.data.split import split_line

    split = split_line(loaded.spec)
    sources = loaded.data_sources()  # where the data really is: `../../elsewhere/d.csv` shown as the file it is
    text = f"{args.spec}: ok (sha256 {loaded.sha256[:12]})\n  {split['text']}"
    text += "".join(f"\n  {key}: {where}" for key, where in sources.items())
    extra: dict[str, Any] = {"data_sources": sources}
    if args.data is not None:  # a first look at the data (pipeline/data/checks.py); problems exit 2
        from pipeline.data.checks import check_data, data_text

        problems, extra["data"] = check_data(loaded, Path(args.data) if args.data else None)
        if problems:
            raise SpecError(problems, spec_file=str(loaded.path))
        text += "\n" + data_text(extra["data"])
    _emit(args, text, {"status": "ok", "spec": str(args.spec), "spec_sha256": loaded.sha256, "split": split, **extra})
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    loaded = _load(args)
    text = loaded.to_yaml()
    header = f"# {args.spec} resolved; sha256 {loaded.sha256}\n"
    _emit(
        args,
        "" if args.json else header + text.rstrip(),
        {"status": "ok", "spec": str(args.spec), "spec_sha256": loaded.sha256, "resolved": loaded.resolved},
    )
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from pipeline.spec.diff import diff_specs, render
    from pipeline.spec.load import load_spec
    from pipeline.spec.review import render_markdown, verdict
    from pipeline.spec.revisions import spec_at_revision

    conf = [Path(d) for d in args.conf]
    both, only_new = list(args.overrides), list(args.change)
    if args.changed_since:  # every spec under the folder a change alters (pipeline/spec/review.py)
        return _diff_changed_since(args, conf)
    if args.against:
        if args.new is not None:
            raise UsageError("give either OLD NEW or SPEC --against REV, not both")
        with spec_at_revision(Path(args.spec), args.against) as (old_path, old_conf):
            old = load_spec(old_path, both, [old_conf, *conf] if old_conf else conf)
            old_resolved = old.resolved
        new = load_spec(args.spec, [*both, *only_new], conf)
        labels = (f"{args.spec}@{args.against}", str(args.spec))
    else:
        if args.new is None:
            raise UsageError("keel diff needs OLD.yaml NEW.yaml, or SPEC --against <git-rev>")
        old = load_spec(args.spec, both, conf)
        old_resolved = old.resolved
        new = load_spec(args.new, [*both, *only_new], conf)
        labels = (str(args.spec), str(args.new))
    # the overrides in effect are part of each side's name: a reviewer sees what was compared
    labels = (_with_overrides(labels[0], both), _with_overrides(labels[1], [*both, *only_new]))
    changes = diff_specs(old_resolved, new.resolved)
    head = f"--- {labels[0]}\n+++ {labels[1]}\n"
    text, extra = head + render(changes), {}
    if both and not changes:
        text += (
            f"\n(the overrides {' '.join(both)} apply to both sides; to see what an override itself changes, "
            "give it with --change KEY=VALUE: it then applies to the new side only)"
        )
    if args.backtest is not None:  # both specs replayed over one history (pipeline/backtest)
        from pipeline.backtest.commands import diff_backtest
        from pipeline.backtest.history import HistoryError

        try:
            timelines, extra["backtest"] = diff_backtest(old.spec, new.spec, args.backtest, labels)
        except HistoryError as exc:
            raise UsageError(str(exc)) from None
        text += "\n" + timelines
    if args.format == "markdown":
        text = render_markdown(changes, labels[0], labels[1]).rstrip()
        if "backtest" in extra:
            text += "\n\n#### Backtest\n\n```\n" + timelines + "\n```"
    extra["verdict"] = verdict(changes)
    _emit(
        args,
        text,
        {"status": "ok", "old": labels[0], "new": labels[1], "changes": [c.to_dict() for c in changes], **extra},
    )
    return EXIT_NO if args.exit_code and changes else EXIT_OK


def _diff_changed_since(args: argparse.Namespace, conf: list[Path]) -> int:
    """`keel diff [DIR] --changed-since REV`: each spec under DIR (default specs/) whose resolved config changed."""
    if args.against or args.new is not None or args.backtest is not None or args.change:
        raise UsageError(
            "--changed-since reviews a folder of specs; it does not take OLD NEW, --against, --change or --backtest"
        )
    from pipeline.spec.review import changed_since

    review = changed_since(Path(args.spec), args.changed_since, list(args.overrides), conf)
    _emit(args, (review.markdown() if args.format == "markdown" else review.text()).rstrip(), review.payload())
    return EXIT_NO if args.exit_code and review.changed else EXIT_OK


def _with_overrides(label: str, overrides: list[str]) -> str:
    return f"{label} [{' '.join(overrides)}]" if overrides else label


def cmd_backtest(args: argparse.Namespace) -> int:
    """`keel backtest SPEC --history FILE.parquet [--all]`: the spec's triggers and gates over recorded days."""
    loaded = _load(args)
    from pipeline.backtest.commands import backtest_command
    from pipeline.backtest.history import HistoryError

    try:
        text, payload = backtest_command(loaded.spec, args.history, args.all)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    _emit(args, "" if args.json else text, payload)
    return EXIT_OK


def cmd_schedule(args: argparse.Namespace) -> int:
    """`keel schedule SPEC [--register-only]`: Prefect deployments with the spec's cron schedules, served here."""
    from pipeline.prefect_server import running

    loaded = _load(args)
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
    _emit(args, "\n".join([*lines, f"registered on {api}"]), {"status": "ok", "api": api, "deployments": registered})
    if not args.register_only:
        print("serving the deployments here (scheduled and UI-started runs execute in this process; Ctrl-C stops)")
        sys.stdout.flush()
        serve(loaded)
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if args.data is not None and not _data_exists(args.data):
        raise UsageError(f"cannot read {args.data}: the file does not exist")  # before Prefect starts
    from flows.validate import run_validation

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_validation(loaded, data_path=args.data)
    _emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
    return EXIT_OK if summary["status"] == "ok" else EXIT_NO


def _data_exists(path: Path) -> bool:
    """--data: one file, or a directory / glob of Parquet files (pipeline/data/partitioned.py)."""
    from pipeline.data.partitioned import is_partitioned

    return path.is_file() or is_partitioned(str(path))


def cmd_score(args: argparse.Namespace) -> int:
    """`keel score SPEC --data FILE`: score a file's accepted rows with a bundle (pipeline/scoring/command.py)."""
    loaded = _load(args)
    from pipeline.scoring.command import ScoreError, check_out_path, resolve_bundle

    if loaded.spec.task != "binary_classification":
        raise UsageError(f"keel score scores classification specs; {args.spec} is a {loaded.spec.task} spec")
    if not _data_exists(args.data):
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
        summary = run_score(loaded, args.data, tag, args.out, args.reasons)
    _emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
    return EXIT_OK if summary["status"] == "ok" else EXIT_NO


def cmd_run(args: argparse.Namespace) -> int:
    if args.multirun and args.rollout:
        raise UsageError("--rollout does not apply to a sweep (no sweep job is promoted or rolled out)")
    if args.multirun:
        return _run_sweep(args)
    if args.promote_best:
        raise UsageError("--promote-best only applies to a sweep: keel run -m SPEC key=a,b ... --promote-best")
    loaded = _load(args)
    require_for_spec(loaded.spec, "run")  # torch/faiss for recommendations, dask for runtime.executor dask
    if args.rollout:
        return _run_into_rollout(args, loaded)
    refused = _refuse_during_live_rollout(args, loaded)
    if refused is not None:
        return refused
    from flows.lifecycle import run_lifecycle

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_lifecycle(loaded)
    _emit(args, summary["text"], {k: v for k, v in summary.items() if k != "text"})
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
    return _fail(args, message, payload, EXIT_NO)


def _run_into_rollout(args: argparse.Namespace, loaded: LoadedSpec) -> int:
    """`keel run --rollout`: what a triggered retrain does (register, then start the staged rollout)."""
    if loaded.spec.rollout is None:
        raise UsageError(f"{args.spec} has no rollout section for --rollout: add `rollout: standard` to its defaults")
    from flows.schedule import retrain_and_roll_out

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        result = retrain_and_roll_out(loaded, "manual", False, "keel run --rollout")
    _emit(args, result["text"], {k: v for k, v in result.items() if k != "text"})
    refused = (result["rollout"] or {}).get("status") == "refused"
    return EXIT_OK if result["status"] == "ok" and not refused else EXIT_NO


def _run_sweep(args: argparse.Namespace) -> int:
    """`keel run -m`: check every combination, then one keel-run per job in one Prefect session."""
    jobs, specs = _load_sweep(args)
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
    _emit(args, render_text(summary), summary)
    return {"ok": EXIT_OK, "failed": EXIT_NO}.get(summary["status"], EXIT_BAD)


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.registry import BundleStore, RegistryError, promote, rollback
    from pipeline.registry.aliases import aliases, history
    from pipeline.registry.home import store_home

    loaded = _load(args)
    name = loaded.spec.name
    home, source = store_home(loaded.spec.runtime)
    store = BundleStore(home)
    try:
        if args.action == "list":
            state = aliases(name, store=store)
            roles = {tag: role for role, tag in state.items() if tag}
            shown = LISTED_METRICS[loaded.spec.task]  # each task's own headline metrics
            rows = [
                {
                    "tag": b.tag,
                    "created_at": b.manifest.created_at,
                    "gate_passed": b.manifest.gate_passed,
                    "alias": roles.get(b.tag),
                    "metrics": {m: b.manifest.metrics.get(m) for m in shown},
                }
                for b in store.list(name)
            ]
            text = (
                "\n".join(
                    f"{r['tag']}  {r['created_at']}  gates {'passed' if r['gate_passed'] else 'FAILED'}  "
                    + "  ".join(f"{m} {'n/a' if v is None else f'{v:.4f}'}" for m, v in r["metrics"].items())
                    + f"  {r['alias'] or ''}"
                    for r in rows
                )
                or f"no bundles for {name}"
            )
            dangling = _dangling_aliases(state, {r["tag"] for r in rows})
            for role, tag in dangling.items():
                print(
                    f"warning: alias {role} -> {tag}: the bundle is missing from the store (dangling)", file=sys.stderr
                )
            text = f"store {home} ({source})\n{text}" + "".join(
                f"\nDANGLING {role} -> {tag} (bundle missing; keel models verify exits 1)"
                for role, tag in dangling.items()
            )
            _emit(
                args,
                text,
                {"status": "ok", "store": str(home), "store_source": source, "bundles": rows, "aliases": state},
            )
        elif args.action == "verify":
            return _verify_models(args, name, store)
        elif args.action == "show":
            ref = store.get(args.tag) if args.tag else store.get(aliases(name, store=store)["champion"] or "")
            ref.verify()
            _emit(
                args,
                json.dumps(ref.manifest.to_dict(), indent=2, default=str),
                {"status": "ok", "manifest": ref.manifest.to_dict()},
            )
        elif args.action == "promote":
            if not args.tag:
                raise UsageError("keel models promote needs --tag NAME:VERSION")
            state = promote(name, args.tag, reason=args.reason or "manual promote", store=store)
            _emit(args, f"champion is now {state.get('champion')}", {"status": "ok", "aliases": state})
        elif args.action == "rollback":
            state = rollback(name, reason=args.reason or "manual rollback", store=store)
            _emit(args, f"rolled back: champion is now {state.get('champion')}", {"status": "ok", "aliases": state})
        elif args.action == "history":
            events = history(name, store=store)
            _emit(args, "\n".join(json.dumps(e, default=str) for e in events), {"status": "ok", "history": events})
    except RegistryError as exc:
        return _fail(args, f"keel models {args.action}: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
    return EXIT_OK


def _dangling_aliases(state: dict[str, Any], present: set[str]) -> dict[str, str]:
    """Aliases whose bundle is not (or no longer) in the store."""
    return {role: tag for role, tag in state.items() if tag and tag not in present}


def _verify_models(args: argparse.Namespace, name: str, store: Any) -> int:
    """`keel models verify`: every bundle's files against their sha256, and every alias against the store."""
    from pipeline.registry.aliases import aliases

    problems, checked = [], 0
    for ref in store.list(name):
        checked += 1
        try:
            ref.verify()
        except Exception as exc:  # IntegrityError, a missing file: say which bundle and why
            problems.append(f"{ref.tag}: {exc}")
    present = {ref.tag for ref in store.list(name)}
    state = aliases(name, store=store)
    problems += [
        f"alias {role} -> {tag}: bundle missing (dangling)" for role, tag in _dangling_aliases(state, present).items()
    ]
    payload = {"status": "ok" if not problems else "failed", "bundles": checked, "problems": problems}
    if problems:
        return _fail(args, "keel models verify:\n  " + "\n  ".join(problems), payload, EXIT_NO)
    _emit(args, f"{checked} bundles verified (sha256), aliases {state}: ok", payload)
    return EXIT_OK


LISTED_METRICS = {"binary_classification": ("auc", "pr_auc"), "recommendation": ("ndcg@10", "hit@10", "recall@500")}


def cmd_rollout(args: argparse.Namespace) -> int:
    """`keel rollout status|start|advance|rollback SPEC`: the staged rollout record serving follows."""
    from pipeline.registry import RegistryError
    from pipeline.registry.home import spec_store
    from pipeline.rollout import RolloutError, advance, rollback, start, status

    loaded = _load(args)
    name = loaded.spec.name
    store = spec_store(loaded.spec)
    from pipeline.rollout.backends import configure_backend

    configure_backend(loaded.spec, store)  # runtime.rollout_state: the file beside the store, or Redis
    reason = args.reason or f"keel rollout {args.action}"
    if args.action in ROLLOUT_EXTRA_ACTIONS:  # bodies in pipeline/rollout/commands.py
        from pipeline.rollout.commands import rollout_action

        with prefect_api(loaded.spec.runtime.prefect_api_url):  # evaluate runs a flow; the others need none
            code, human, payload = rollout_action(args, loaded, store)
        if code:
            return _fail(args, human, payload, code)
        _emit(args, human, payload)
        return EXIT_OK
    try:
        if args.action == "status":
            state = status(name, store=store)
            if state is None:
                _emit(args, f"no rollout for {name}", {"status": "ok", "rollout": None})
                return EXIT_OK
        elif args.action == "start":
            if not args.tag:
                raise UsageError("keel rollout start needs --tag NAME:VERSION (the challenger)")
            if loaded.spec.rollout is None:
                raise UsageError(f"{args.spec} has no rollout section: add `rollout: standard` to its defaults")
            state = start(name, args.tag, loaded.spec.rollout, reason, store=store)
        elif args.action == "advance":
            state = advance(name, reason, approved_by=args.approved_by, store=store)
        else:
            state = rollback(name, reason, store=store)
    except (RolloutError, RegistryError) as exc:
        return _fail(args, f"keel rollout {args.action}: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
    _emit(args, _rollout_text(state), {"status": "ok", "rollout": state.to_dict()})
    if args.action == "advance" and state.status == "awaiting_approval":
        print(
            f"stage {state.stages[state.stage_index + 1]['name']} needs an approval: --approved-by NAME",
            file=sys.stderr,
        )
        return EXIT_NO
    return EXIT_OK


def _rollout_text(state: Any) -> str:
    stages = " -> ".join(
        f"[{s['name']} {s['traffic']:.0%}]" if i == state.stage_index else f"{s['name']} {s['traffic']:.0%}"
        for i, s in enumerate(state.stages)
    )
    return (
        f"rollout {state.rollout_id}: {state.status}, challenger {state.challenger} "
        f"(champion at start {state.champion})\nstage {state.stage} at {state.traffic:.0%} "
        f"since {state.stage_started_at}\n{stages}"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be between 1 and 64, got {args.workers}")
    loaded = _load(args)
    require("serve", "keel serve: uvicorn's uvloop and httptools")
    require_for_spec(loaded.spec, "serve")
    from pipeline.registry.home import store_home
    from pipeline.serving.run import serve

    home, source = store_home(loaded.spec.runtime)
    print(f"serving {loaded.spec.name}'s champion on http://{args.host}:{args.port} (Ctrl-C stops)", flush=True)
    print(f"store {home} ({source})", flush=True)
    code = serve(
        loaded.path,
        host=args.host,
        port=args.port,
        home=home,
        workers=args.workers,
        overrides=loaded.overrides,
        conf_dirs=[str(d) for d in loaded.conf_dirs],
    )
    return EXIT_OK if code in (0, 130) else EXIT_NO


def cmd_build(args: argparse.Namespace) -> int:
    """`keel build SPEC [--bundle champion|NAME:VERSION] [--host H]`: a Bento to ship (pipeline/packaging/bento.py)."""
    loaded = _load(args)
    require("serve", "keel build: the Bento serves with uvloop and httptools")
    require_for_spec(loaded.spec, "build")
    from pipeline.packaging.bento import BuildError, build_bento

    try:
        built = build_bento(loaded, args.bundle, args.host, args.name)
    except BuildError as exc:
        return _fail(args, f"keel build: {exc}", {"status": "failed", "reason": str(exc)}, exc.code)
    _emit(args, built.text(), built.payload())
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    """`keel monitor SPEC [--data FILE] [--as-of DATE]`: exit 1 when the spec's triggers prescribe a retrain."""
    loaded = _load(args)
    if args.data is not None and not args.data.is_file():
        raise UsageError(f"cannot read {args.data}: the file does not exist")
    from flows.monitor import run_monitor
    from pipeline.monitoring.decision import exit_status

    with prefect_api(loaded.spec.runtime.prefect_api_url):
        summary = run_monitor(loaded, data_path=args.data, as_of=args.as_of, start_retrain=args.retrain)
    _emit(args, summary["text"], {"status": "ok", **{k: v for k, v in summary.items() if k != "text"}})
    return exit_status(summary["decision"])


def cmd_simulate(args: argparse.Namespace) -> int:
    """`keel simulate SPEC --days N [--inject FAULT]`: exit 0 when the rollout ended as the spec prescribes."""
    if not 1 <= args.days <= 365 or args.requests_per_day < 1:
        raise UsageError("--days must be 1..365 and --requests-per-day at least 1")
    from pipeline.rollout.commands import simulate_command

    code, human, payload = simulate_command(args, _load(args))
    if code:
        print(human)
        return _fail(args, "keel simulate: the rollout did not end as the spec prescribes", payload, code)
    _emit(args, human, payload)
    return EXIT_OK


def cmd_init_spec(args: argparse.Namespace) -> int:
    """`keel init-spec FILE --label COL`: a contract and a spec from a file (pipeline/spec/init_writer.py)."""
    from pipeline.spec.infer import InferError
    from pipeline.spec.init_writer import init_spec
    from pipeline.spec.sample import SampleError

    try:
        written = init_spec(
            args.file,
            args.label,
            positive=args.positive,
            task=args.task,
            out=args.out,
            name=args.name,
            sample_rows=args.sample_rows,
            force=args.force,
            user=args.user,
            item=args.item,
            timestamp=args.timestamp,
            items_file=args.items,
        )
    except (SampleError, InferError) as exc:
        raise UsageError(str(exc)) from None
    _emit(args, written.text, written.payload)
    return written.code


def cmd_init(args: argparse.Namespace) -> int:
    """`keel init DIR`: a project that uses an installed Keel (pipeline/packaging/init.py)."""
    from pipeline.packaging.init import init_project, package_version

    done = init_project(args.dir, package_version())
    _emit(args, done.text(), done.payload())
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """`keel schema [--out FILE]`: the JSON Schema of a spec file (pipeline/spec/json_schema.py)."""
    from pipeline.spec.json_schema import schema_text

    text = schema_text()
    if args.out is None:
        _emit(args, "" if args.json else text.rstrip(), {"status": "ok", "schema": json.loads(text)})
        return EXIT_OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    hint = f"# yaml-language-server: $schema={args.out}"
    _emit(args, f"wrote {args.out}; first line of a spec: {hint}", {"status": "ok", "out": str(args.out)})
    return EXIT_OK


def cmd_server(args: argparse.Namespace) -> int:
    """`keel server start|stop|status`: this project's Prefect server, in the background, used by every verb."""
    from pipeline.prefect_server import ServerError, running, start, stop

    if args.action == "start":
        try:
            info, started = start(port=args.port, database=args.database)
        except ServerError as exc:
            return _fail(args, f"keel server start: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
        ui = info.url.removesuffix("/api")
        human = (
            f"{'started' if started else 'already running'}: Prefect server at {info.url} (pid {info.pid}, "
            f"database {info.database})\nUI: {ui}   log: {info.log}\nevery keel verb in this directory now uses it"
        )
        _emit(args, human, {"status": "ok", "started": started, **info.__dict__})
        return EXIT_OK
    if args.action == "stop":
        info = stop()
        human = f"stopped the Prefect server at {info.url} (pid {info.pid})" if info else "no server recorded here"
        _emit(args, human, {"status": "ok", "stopped": info is not None})
        return EXIT_OK
    info = running()
    if info is None:
        _emit(args, "no Prefect server running for this project (keel server start)", {"status": "down"})
        return EXIT_NO
    _emit(args, f"up: {info.url} (pid {info.pid}, database {info.database})", {"status": "up", **info.__dict__})
    return EXIT_OK


class KeelParser(argparse.ArgumentParser):
    """argparse that remembers its usage error, so `--json` still ends with a JSON line (exit 2)."""

    last_error: str | None = None

    def error(self, message: str):  # type: ignore[override]
        KeelParser.last_error = message
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = KeelParser(
        prog="keel",
        description="Run ML systems described by YAML specs. Exit codes: 0 ok, 1 a gate/contract said no, "
        "2 bad spec, input or usage, 3 the result could not be stored (disk full, read-only).",
    )
    parser.add_argument("--version", action=_ShowVersion, nargs=0, help="print keel's version and exit")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("spec", type=Path, help="the spec file, e.g. specs/streamflow_churn.yaml")
        sub.add_argument("overrides", nargs="*", help="Hydra overrides: key=value, +new.key=value, ~key")
        sub.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
        sub.add_argument(
            "--config-dir",
            "--conf",
            dest="conf",
            action="append",
            default=[],
            metavar="DIR",
            help="a config-group directory of yours (repeatable): searched in the order given, then "
            "KEEL_CONF_PATH, then the conf/ beside the spec's folder, then Keel's own groups (always last)",
        )
        sub.set_defaults(handler=handler)
        return sub

    server = verbs.add_parser(
        "server",
        help="start, stop or show this project's Prefect server (every verb uses it when it is up)",
        description="A Prefect server in the background on the local PostgreSQL (else SQLite under .keel/prefect/); "
        "every keel verb run in this directory reports to it, and its UI shows runs, schedules and reports.",
    )
    server.add_argument("action", choices=["start", "stop", "status"])
    server.add_argument("--port", type=int, default=4200, help="start: the port (a free one if taken)")
    server.add_argument(
        "--database",
        default=None,
        metavar="URL",
        help="start: SQLAlchemy URL of the server's database (default: the local PostgreSQL's keel_prefect, "
        "else SQLite under .keel/prefect/)",
    )
    server.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    server.set_defaults(handler=cmd_server, overrides=[])
    init = verbs.add_parser(
        "init-spec",
        help="write a contract and a spec from a Parquet/CSV file (a sample of a large one)",
        description="Profile FILE (a sample of a large one) into conf/contract/NAME.yaml and a spec that pass keel "
        "check as they are, with comments to edit. Files that exist are not overwritten: the diff is printed and "
        "the command exits 1 unless --force.",
    )
    init.add_argument("file", type=Path, metavar="FILE", help="the .parquet/.csv table")
    init.add_argument("--label", default=None, help="the target column (required for binary_classification)")
    init.add_argument("--positive", default=None, metavar="V", help="the label value that counts as positive")
    init.add_argument("--task", choices=["binary_classification", "recommendation"], default="binary_classification")
    init.add_argument("--out", type=Path, default=None, help="the spec to write (default specs/NAME.yaml)")
    init.add_argument("--name", default=None, help="the spec's name (default: from FILE)")
    init.add_argument("--sample-rows", type=int, default=100_000, metavar="N", help="rows to read at most")
    init.add_argument("--force", action="store_true", help="overwrite files that exist and differ")
    init.add_argument("--user", default=None, metavar="COL", help="recommendation: the user id column")
    init.add_argument("--item", default=None, metavar="COL", help="recommendation: the item id column")
    init.add_argument("--timestamp", default=None, metavar="COL", help="the time column (default: detected)")
    init.add_argument("--items", type=Path, default=None, metavar="FILE", help="recommendation: the item table")
    init.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    init.set_defaults(handler=cmd_init_spec, overrides=[])
    project = verbs.add_parser(
        "init",
        help="start a project of your own: specs/, conf/ groups, a review workflow and a pre-commit hook",
        description="Write DIR/specs/churn.yaml, DIR/conf/gates/project.yaml, DIR/.github/workflows/keel-review.yml "
        "(keel diff --changed-since ... --format markdown on pull requests) and DIR/.pre-commit-config.yaml "
        "(keel check). Files that exist are kept.",
    )
    project.add_argument("dir", type=Path, metavar="DIR", nargs="?", default=Path("."), help="default: here")
    project.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    project.set_defaults(handler=cmd_init, overrides=[])
    schema = verbs.add_parser(
        "schema",
        help="write the JSON Schema of a spec file (editors: yaml-language-server completes and checks keys)",
        description="The JSON Schema of a spec file, from Keel's pydantic schema: no key required (groups fill "
        "them in), interpolations allowed, unknown keys refused. Without --out it is printed.",
    )
    schema.add_argument("--out", type=Path, default=None, metavar="FILE", help="write it here (e.g. keel-spec.json)")
    schema.add_argument("--json", action="store_true", help="print one JSON object as the last line of stdout")
    schema.set_defaults(handler=cmd_schema, overrides=[])
    check = verb("check", cmd_check, "compose and check a spec; print nothing else")
    check.add_argument("-m", "--multirun", action="store_true", help="check every combination of a sweep")
    check.add_argument(
        "--data", nargs="?", const="", default=None, metavar="FILE", help="also look at FILE (default: data.source)"
    )
    verb("show", cmd_show, "print the fully resolved spec (defaults filled in, stable key order)")
    diff = verb("diff", cmd_diff, "explain in words what changes between two specs")
    diff.add_argument("--new", type=Path, default=None, help=argparse.SUPPRESS)
    diff.add_argument("--against", metavar="REV", help="compare SPEC with itself at a git revision")
    diff.add_argument(
        "--change",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an override applied to the new side only: what it changes (positional overrides apply to both sides)",
    )
    diff.add_argument(
        "--backtest", type=Path, default=None, metavar="FILE", help="also replay a history under both specs"
    )
    diff.add_argument(
        "--changed-since",
        metavar="REV",
        default=None,
        help="every spec under SPEC (a folder, default specs/) whose resolved configuration changed since REV",
    )
    diff.add_argument("--format", choices=["text", "markdown"], default="text", help="markdown: for a PR comment")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when the resolved specs differ (like git diff)")
    backtest = verb("backtest", cmd_backtest, "replay a recorded daily history through the spec's triggers and gates")
    backtest.add_argument("--history", type=Path, required=True, help="Parquet: one row per day (docs/cli.md)")
    backtest.add_argument("--all", action="store_true", help="also list evaluations below threshold")
    schedule = verb("schedule", cmd_schedule, "register the spec's retrain/monitor Prefect deployments and serve them")
    schedule.add_argument("--register-only", action="store_true", help="register the deployments, do not serve them")
    validate = verb("validate", cmd_validate, "validate the spec's dataset against its contract")
    validate.add_argument(
        "--data", type=Path, default=None, help="validate this Parquet/CSV file instead of the spec's data.source"
    )
    score = verb("score", cmd_score, "score a Parquet/CSV file with a registered bundle (a Prefect flow)")
    score.add_argument("--data", type=Path, required=True, help="the rows to score (the label column may be absent)")
    score.add_argument("--bundle", default="champion", help="champion (default), challenger or NAME:VERSION")
    score.add_argument("--out", type=Path, default=None, help=".parquet or .csv (default: run dir/scores.parquet)")
    score.add_argument("--reasons", type=int, default=0, metavar="N", help="the top N reasons per row (default 0)")
    run = verb("run", cmd_run, "train, evaluate, gate, register and batch-score the spec's model (a Prefect flow)")
    run.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="sweep: one run per combination of the overrides' values (a=1,2 b=range(1,4)), "
        "each registered and gated, none promoted",
    )
    run.add_argument(
        "--promote-best",
        action="store_true",
        help="with -m: promote the gate-passed job with the best test selection metric when the sweep ends",
    )
    run.add_argument(
        "--abort-rollout",
        action="store_true",
        help="roll back the spec's live rollout first (without it, a run that would promote during one is refused)",
    )
    run.add_argument(
        "--rollout",
        action="store_true",
        help="do what a triggered retrain does: register without promoting and start the spec's staged rollout "
        "of a passed bundle (the first model, with no champion yet, is promoted)",
    )
    serve = verb("serve", cmd_serve, "serve the spec's champion bundle over HTTP (BentoML): /score, /cached_score")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.add_argument("--workers", type=int, default=None, help="worker processes (default 1; one per core scales)")
    build = verb("build", cmd_build, "build a Bento of one bundle (BentoML): ship it, import it, serve or containerize")
    build.add_argument("--bundle", default="champion", help="champion (default), challenger or NAME:VERSION")
    build.add_argument("--host", default="0.0.0.0", help="the address the Bento binds (default 0.0.0.0: a container)")
    build.add_argument("--name", default=None, help="the Bento's name (default: the spec's name)")
    monitor = verb("monitor", cmd_monitor, "PSI per feature vs the reference, segments, metrics; triggers decide")
    monitor.add_argument("--data", type=Path, default=None, help="Parquet/CSV to monitor (default: monitoring.current)")
    monitor.add_argument("--as-of", type=_iso_date, default=None, help="monitored day YYYY-MM-DD (default: today)")
    monitor.add_argument("--retrain", action="store_true", help="start the retrain the triggers prescribe")
    models = verb("models", cmd_models, "list, show, promote or roll back the spec's registered bundles")
    models.add_argument(
        "--action", choices=["list", "show", "verify", "promote", "rollback", "history"], default="list"
    )
    models.add_argument("--tag", default=None, help="bundle tag NAME:VERSION (show, promote)")
    models.add_argument("--reason", default=None, help="recorded in the alias history")
    rollout = verb("rollout", cmd_rollout, "start, advance, roll back or show the staged rollout of a challenger")
    rollout.add_argument("--action", choices=ROLLOUT_ACTIONS, default="status")
    rollout.add_argument("--tag", default=None, help="the challenger's bundle tag NAME:VERSION (start)")
    rollout.add_argument("--reason", default=None, help="recorded in the rollout history")
    rollout.add_argument("--approved-by", default=None, help="advance into an approval stage; approve: who")
    rollout.add_argument("--comment", default=None, help="approve: recorded with the answer in the rollout history")
    rollout.add_argument("--reject", action="store_true", help="approve: reject instead (the rollout rolls back)")
    rollout.add_argument("--now", default=None, help="evaluate: ISO time to evaluate at (virtual time)")
    rollout.add_argument("--approval-timeout", type=int, default=3600, help="evaluate: seconds a pause waits")
    rollout.add_argument("--url", default="http://127.0.0.1:3000", help="drill: the running service")
    rollout.add_argument("--cycles", type=int, default=3, help="drill: switches to the standby and back")
    rollout.add_argument("--rate", type=float, default=100.0, help="drill: requests per second")
    rollout.add_argument("--gap", type=float, default=1.0, help="drill: seconds between switches")
    rollout.add_argument(
        "--max-switch-ms",
        type=float,
        default=None,
        help="drill: fail when a switch takes longer (default: report only)",
    )
    rollout.add_argument("--file", type=Path, default=None, help="outcomes: CSV with request_id, outcome, value")
    simulate = verb("simulate", cmd_simulate, "walk a rollout through the real service on a virtual clock")
    simulate.add_argument("--days", type=int, default=14, help="virtual days to simulate")
    simulate.add_argument(
        "--inject",
        choices=["challenger_errors", "latency_spike", "worse_model", "event_format_change"],
        default=None,
        help="a fault from the first routed stage on; it must end in the rollback the spec prescribes",
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--requests-per-day", type=int, default=2000)
    simulate.add_argument("--conns", type=int, default=None, help="concurrent connections (8 /score, 2 /recommend)")
    simulate.add_argument("--url", default=None, help="a running service with KEEL_SIMULATION=1 (default: start one)")
    simulate.add_argument("--challenger", default=None, help="bundle tag (default: newest gate-passed non-champion)")
    return parser


ROLLOUT_EXTRA_ACTIONS = ("approve", "evaluate", "drill", "outcomes")
ROLLOUT_ACTIONS = ("status", "start", "advance", "rollback", *ROLLOUT_EXTRA_ACTIONS)


class _ShowVersion(argparse.Action):
    """`keel --version`: the installed package's version (plus the commit in a checkout); git runs only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from pipeline.runs import code_version

        print(f"keel {code_version()}")
        parser.exit()


def _iso_date(text: str) -> str:
    from datetime import date

    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _split_models_args(argv: list[str]) -> list[str]:
    """`keel models list SPEC` reads better than `keel models SPEC --action list` (same for `keel rollout`)."""
    actions = {"models": {"list", "show", "verify", "promote", "rollback", "history"}, "rollout": set(ROLLOUT_ACTIONS)}
    if len(argv) >= 2 and argv[0] in actions and argv[1] in actions[argv[0]]:
        return [argv[0], *argv[2:], "--action", argv[1]]
    return argv


def _split_diff_args(argv: list[str]) -> list[str]:
    """`keel diff OLD NEW [overrides]`: the second positional is the new spec, not an override."""
    if len(argv) >= 3 and argv[0] == "diff" and argv[2].endswith((".yaml", ".yml")) and "=" not in argv[2]:
        return ["diff", argv[1], *argv[3:], "--new", argv[2]]
    return argv


def main(argv: list[str] | None = None) -> int:
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    apply_umask()  # owner-only files unless KEEL_UMASK says otherwise (pipeline/permissions.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = _split_models_args(_split_diff_args(default_specs_folder(argv)))
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
        return _fail(args, exc.render(), {"status": "error", "problems": [p.to_dict() for p in exc.problems]})
    except TrainingDataError as exc:
        return _fail(args, f"keel: {exc}", {"status": "failed", "reasons": [str(exc)]}, EXIT_NO)
    except (UsageError, DataSourceError, PrefectUnreachable, SecretError, MissingExtra) as exc:
        return _fail(args, f"keel: {exc}", {"status": "error", "problems": [{"reason": str(exc)}]})
    except ImportError as exc:  # an optional dependency (pipeline/extras.py): name the extra, exit 2
        missing = from_import_error(exc)
        if missing is None:
            raise
        return _fail(args, f"keel: {missing}", {"status": "error", "problems": [{"reason": str(missing)}]})
    except OSError as exc:
        if exc.errno not in STORAGE_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        message = (
            f"keel: could not write{where}: {exc.strerror or exc}; nothing half-written is visible and the "
            "previous champion still serves (free space or fix permissions, then run again)"
        )
        payload = {"status": "error", "problems": [{"reason": message, "errno": errno.errorcode.get(exc.errno)}]}
        return _fail(args, message, payload, EXIT_STORAGE)
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


def _fail(args: argparse.Namespace, message: str, payload: dict[str, Any], code: int = EXIT_BAD) -> int:
    print(message, file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps(payload, default=str))
    return code


if __name__ == "__main__":
    sys.exit(main())
