"""Verbs over the model store and what serves from it: models, rollout, serve, build."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from pipeline.extras import require, require_for_spec
from pipeline.prefect_target import prefect_api

if TYPE_CHECKING:
    pass

from pipeline.cli.common import EXIT_NO, EXIT_OK, UsageError, emit, fail, load

ROLLOUT_EXTRA_ACTIONS = ("approve", "evaluate", "drill", "outcomes")


ROLLOUT_ACTIONS = ("status", "start", "advance", "rollback", *ROLLOUT_EXTRA_ACTIONS)


LISTED_METRICS = {"binary_classification": ("auc", "pr_auc"), "recommendation": ("ndcg@10", "hit@10", "recall@500")}


def cmd_models(args: argparse.Namespace) -> int:
    from pipeline.registry import BundleStore, RegistryError, promote, rollback
    from pipeline.registry.aliases import aliases, history
    from pipeline.registry.home import store_home

    loaded = load(args)
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
            emit(
                args,
                text,
                {"status": "ok", "store": str(home), "store_source": source, "bundles": rows, "aliases": state},
            )
        elif args.action == "verify":
            return _verify_models(args, name, store)
        elif args.action == "show":
            ref = store.get(args.tag) if args.tag else store.get(aliases(name, store=store)["champion"] or "")
            ref.verify()
            emit(
                args,
                json.dumps(ref.manifest.to_dict(), indent=2, default=str),
                {"status": "ok", "manifest": ref.manifest.to_dict()},
            )
        elif args.action == "promote":
            if not args.tag:
                raise UsageError("keel models promote needs --tag NAME:VERSION")
            state = promote(name, args.tag, reason=args.reason or "manual promote", store=store)
            emit(args, f"champion is now {state.get('champion')}", {"status": "ok", "aliases": state})
        elif args.action == "rollback":
            state = rollback(name, reason=args.reason or "manual rollback", store=store)
            emit(args, f"rolled back: champion is now {state.get('champion')}", {"status": "ok", "aliases": state})
        elif args.action == "history":
            events = history(name, store=store)
            emit(args, "\n".join(json.dumps(e, default=str) for e in events), {"status": "ok", "history": events})
    except RegistryError as exc:
        return fail(args, f"keel models {args.action}: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
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
        return fail(args, "keel models verify:\n  " + "\n  ".join(problems), payload, EXIT_NO)
    emit(args, f"{checked} bundles verified (sha256), aliases {state}: ok", payload)
    return EXIT_OK


def cmd_rollout(args: argparse.Namespace) -> int:
    """`keel rollout status|start|advance|rollback SPEC`: the staged rollout record serving follows."""
    from pipeline.registry import RegistryError
    from pipeline.registry.home import spec_store
    from pipeline.rollout import RolloutError, advance, rollback, start, status

    loaded = load(args)
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
            return fail(args, human, payload, code)
        emit(args, human, payload)
        return EXIT_OK
    try:
        if args.action == "status":
            state = status(name, store=store)
            if state is None:
                emit(args, f"no rollout for {name}", {"status": "ok", "rollout": None})
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
        return fail(args, f"keel rollout {args.action}: {exc}", {"status": "failed", "reason": str(exc)}, EXIT_NO)
    emit(args, _rollout_text(state), {"status": "ok", "rollout": state.to_dict()})
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
    loaded = load(args)
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
    loaded = load(args)
    require("serve", "keel build: the Bento serves with uvloop and httptools")
    require_for_spec(loaded.spec, "build")
    from pipeline.packaging.bento import BuildError, build_bento

    try:
        built = build_bento(loaded, args.bundle, args.host, args.name)
    except BuildError as exc:
        return fail(args, f"keel build: {exc}", {"status": "failed", "reason": str(exc)}, exc.code)
    emit(args, built.text(), built.payload())
    return EXIT_OK
