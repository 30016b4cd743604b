"""Verbs that read specs and write no model: check, show, diff (and review), backtest, init-spec, init, schema."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.spec.errors import SpecError

if TYPE_CHECKING:
    pass

from pipeline.cli.common import EXIT_NO, EXIT_OK, UsageError, emit, load, load_sweep


def cmd_check(args: argparse.Namespace) -> int:
    if args.multirun:
        jobs, specs = load_sweep(args)
        text = "\n".join(
            f"job {j.index} [{j.label}]: ok (sha256 {s.sha256[:12]})" for j, s in zip(jobs, specs, strict=True)
        )
        payload = [
            {"job": j.index, "overrides": list(j.swept), "spec_sha256": s.sha256}
            for j, s in zip(jobs, specs, strict=True)
        ]
        emit(args, text, {"status": "ok", "spec": str(args.spec), "jobs": payload})
        return EXIT_OK
    loaded = load(args)
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
    emit(args, text, {"status": "ok", "spec": str(args.spec), "spec_sha256": loaded.sha256, "split": split, **extra})
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    loaded = load(args)
    text = loaded.to_yaml()
    header = f"# {args.spec} resolved; sha256 {loaded.sha256}\n"
    emit(
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
    emit(
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
    emit(args, (review.markdown() if args.format == "markdown" else review.text()).rstrip(), review.payload())
    return EXIT_NO if args.exit_code and review.changed else EXIT_OK


def _with_overrides(label: str, overrides: list[str]) -> str:
    return f"{label} [{' '.join(overrides)}]" if overrides else label


def cmd_backtest(args: argparse.Namespace) -> int:
    """`keel backtest SPEC --history FILE.parquet [--all]`: the spec's triggers and gates over recorded days."""
    loaded = load(args)
    from pipeline.backtest.commands import backtest_command
    from pipeline.backtest.history import HistoryError

    try:
        text, payload = backtest_command(loaded.spec, args.history, args.all)
    except HistoryError as exc:
        raise UsageError(str(exc)) from None
    emit(args, "" if args.json else text, payload)
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
    emit(args, written.text, written.payload)
    return written.code


def cmd_init(args: argparse.Namespace) -> int:
    """`keel init DIR`: a project that uses an installed Keel (pipeline/packaging/init.py)."""
    from pipeline.packaging.init import init_project, package_version

    done = init_project(args.dir, package_version())
    emit(args, done.text(), done.payload())
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """`keel schema [--out FILE]`: the JSON Schema of a spec file (pipeline/spec/json_schema.py)."""
    from pipeline.spec.json_schema import schema_text

    text = schema_text()
    if args.out is None:
        emit(args, "" if args.json else text.rstrip(), {"status": "ok", "schema": json.loads(text)})
        return EXIT_OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    hint = f"# yaml-language-server: $schema={args.out}"
    emit(args, f"wrote {args.out}; first line of a spec: {hint}", {"status": "ok", "out": str(args.out)})
    return EXIT_OK
