"""The verbs that read specs or run flows over data: check, show, diff, backtest, init-spec, init, schema,
validate, score, run, monitor, simulate (their options and help; the handlers are in *_verbs.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import click

from pipeline.cli.options import data_opt, flag, json_opt, opt, path_opt, spec_params, verb


def _iso_date(ctx: click.Context, param: click.Parameter, text: str | None) -> str | None:
    from datetime import date

    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise click.BadParameter(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _looks_like_override(token: str) -> bool:
    return "=" in token or token.startswith("~")


def _diff_sides(ctx: click.Context, args: argparse.Namespace) -> None:
    """`keel diff OLD NEW [overrides]`: NEW is the first positional after OLD when it is a .yaml file;
    `keel diff --changed-since REV` without a folder reviews specs/."""
    spec = None if args.spec is None else str(args.spec)
    if spec is None or (args.changed_since and _looks_like_override(spec)):
        if not args.changed_since:
            raise click.UsageError("Missing argument 'SPEC'.", ctx)
        args.overrides = [spec, *args.overrides] if spec else args.overrides
        args.spec = Path("specs")
    first = args.overrides[0] if args.overrides else ""
    if args.new is None and first.endswith((".yaml", ".yml")) and "=" not in first:
        args.new = Path(args.overrides.pop(0))


def spec_verbs() -> list[click.Command]:
    check = verb(
        "check",
        "spec_verbs:cmd_check",
        "compose and check a spec; print nothing else",
        [
            *spec_params(),
            flag("-m", "--multirun", help="check every combination of a sweep"),
            opt(
                "--data",
                is_flag=False,
                flag_value="",
                metavar="FILE",
                help="also look at FILE (default: data.source)",
                type=click.Path(path_type=str),
            ),
        ],
    )
    show = verb(
        "show",
        "spec_verbs:cmd_show",
        "print the fully resolved spec (defaults filled in, stable key order)",
        spec_params(),
    )
    diff = verb(
        "diff",
        "spec_verbs:cmd_diff",
        "explain in words what changes between two specs",
        [
            *spec_params(spec_required=False, overrides_metavar="[NEW.yaml] [OVERRIDES]..."),
            path_opt("--new", hidden=True),
            opt("--against", metavar="REV", help="compare SPEC with itself at a git revision"),
            opt(
                "--change",
                multiple=True,
                metavar="KEY=VALUE",
                help="an override applied to the new side only: what it changes "
                "(positional overrides apply to both sides)",
            ),
            path_opt("--backtest", metavar="FILE", help="also replay a history under both specs"),
            opt(
                "--changed-since",
                metavar="REV",
                help="every spec under SPEC (a folder, default specs/) whose resolved configuration changed since REV",
            ),
            opt(
                "--format",
                type=click.Choice(["text", "markdown"]),
                default="text",
                help="markdown: for a PR comment",
            ),
            flag("--exit-code", help="exit 1 when the resolved specs differ (like git diff)"),
        ],
        finish=_diff_sides,
    )
    backtest = verb(
        "backtest",
        "spec_verbs:cmd_backtest",
        "replay a recorded daily history through the spec's triggers and gates",
        [
            *spec_params(),
            path_opt("--history", required=True, help="Parquet: one row per day (docs/cli.md)"),
            flag("--all", help="also list evaluations below threshold"),
        ],
    )
    init_spec = verb(
        "init-spec",
        "spec_verbs:cmd_init_spec",
        "write a contract and a spec from a Parquet/CSV file (a sample of a large one)",
        [
            click.Argument(["file"], type=click.Path(path_type=Path), metavar="FILE"),
            opt("--label", help="the target column (required for binary_classification)"),
            opt("--positive", metavar="V", help="the label value that counts as positive"),
            opt(
                "--task",
                type=click.Choice(["binary_classification", "recommendation"]),
                default="binary_classification",
            ),
            path_opt("--out", help="the spec to write (default specs/NAME.yaml)"),
            opt("--name", help="the spec's name (default: from FILE)"),
            opt("--sample-rows", type=int, default=100_000, metavar="N", help="rows to read at most"),
            flag("--force", help="overwrite files that exist and differ"),
            opt("--user", metavar="COL", help="recommendation: the user id column"),
            opt("--item", metavar="COL", help="recommendation: the item id column"),
            opt("--timestamp", metavar="COL", help="the time column (default: detected)"),
            path_opt("--items", metavar="FILE", help="recommendation: the item table"),
            json_opt(),
        ],
        description="Profile FILE (a sample of a large one) into conf/contract/NAME.yaml and a spec that pass keel "
        "check as they are, with comments to edit. Files that exist are not overwritten: the diff is printed and "
        "the command exits 1 unless --force.",
    )
    init = verb(
        "init",
        "spec_verbs:cmd_init",
        "start a project of your own: specs/, conf/ groups, a review workflow and a pre-commit hook",
        [
            click.Argument(
                ["dir"], type=click.Path(file_okay=False, path_type=Path), required=False, default=Path(".")
            ),
            json_opt(),
        ],
        description="Write DIR/specs/churn.yaml, DIR/conf/gates/project.yaml, DIR/.github/workflows/keel-review.yml "
        "(keel diff --changed-since ... --format markdown on pull requests) and DIR/.pre-commit-config.yaml "
        "(keel check). Files that exist are kept. DIR defaults to here.",
    )
    schema = verb(
        "schema",
        "spec_verbs:cmd_schema",
        "write the JSON Schema of a spec file (editors: yaml-language-server completes and checks keys)",
        [path_opt("--out", metavar="FILE", help="write it here (e.g. keel-spec.json)"), json_opt()],
        description="The JSON Schema of a spec file, from Keel's pydantic schema: no key required (groups fill "
        "them in), interpolations allowed, unknown keys refused. Without --out it is printed.",
    )
    return [check, show, diff, backtest, init_spec, init, schema]


def run_verbs() -> list[click.Command]:
    validate = verb(
        "validate",
        "run_verbs:cmd_validate",
        "validate the spec's dataset against its contract",
        [
            *spec_params(),
            data_opt(help="validate this Parquet/CSV file (or directory, glob, URI) instead of the spec's data.source"),
        ],
    )
    score = verb(
        "score",
        "run_verbs:cmd_score",
        "score a Parquet/CSV file with a registered bundle (a Prefect flow)",
        [
            *spec_params(),
            data_opt(required=True, help="the rows to score (the label column may be absent)"),
            opt("--bundle", default="champion", help="champion (default), challenger or NAME:VERSION"),
            path_opt("--out", help=".parquet or .csv (default: run dir/scores.parquet)"),
            opt("--reasons", type=int, default=0, metavar="N", help="the top N reasons per row (default 0)"),
        ],
    )
    run = verb(
        "run",
        "run_verbs:cmd_run",
        "train, evaluate, gate, register and batch-score the spec's model (a Prefect flow)",
        [
            *spec_params(),
            flag(
                "-m",
                "--multirun",
                help="sweep: one run per combination of the overrides' values (a=1,2 b=range(1,4)), "
                "each registered and gated, none promoted",
            ),
            flag(
                "--promote-best",
                help="with -m: promote the gate-passed job with the best test selection metric when the sweep ends",
            ),
            flag(
                "--abort-rollout",
                help="roll back the spec's live rollout first (without it, a run that would promote during one "
                "is refused)",
            ),
            flag(
                "--rollout",
                help="do what a triggered retrain does: register without promoting and start the spec's staged "
                "rollout of a passed bundle (the first model, with no champion yet, is promoted)",
            ),
        ],
    )
    monitor = verb(
        "monitor",
        "run_verbs:cmd_monitor",
        "PSI per feature vs the reference, segments, metrics; triggers decide",
        [
            *spec_params(),
            path_opt("--data", help="Parquet/CSV to monitor (default: monitoring.current)"),
            opt("--as-of", callback=_iso_date, metavar="DATE", help="monitored day YYYY-MM-DD (default: today)"),
            flag("--retrain", help="start the retrain the triggers prescribe"),
        ],
    )
    simulate = verb(
        "simulate",
        "run_verbs:cmd_simulate",
        "walk a rollout through the real service on a virtual clock",
        [
            *spec_params(),
            opt("--days", type=int, default=14, help="virtual days to simulate"),
            opt(
                "--inject",
                type=click.Choice(["challenger_errors", "latency_spike", "worse_model", "event_format_change"]),
                help="a fault from the first routed stage on; it must end in the rollback the spec prescribes",
            ),
            opt("--seed", type=int, default=0),
            opt("--requests-per-day", type=int, default=2000),
            opt("--conns", type=int, help="concurrent connections (8 /score, 2 /recommend)"),
            opt("--url", help="a running service with KEEL_SIMULATION=1 (default: start one)"),
            opt("--challenger", help="bundle tag (default: newest gate-passed non-champion)"),
        ],
    )
    return [validate, score, run, monitor, simulate]
