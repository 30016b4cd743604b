"""The argparse tree: one subcommand per verb, each with its options (docs/cli.md is the user's view)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from pipeline.cli.run_verbs import cmd_monitor, cmd_run, cmd_score, cmd_simulate, cmd_validate
from pipeline.cli.server_verbs import cmd_schedule, cmd_server
from pipeline.cli.spec_verbs import cmd_backtest, cmd_check, cmd_diff, cmd_init, cmd_init_spec, cmd_schema, cmd_show
from pipeline.cli.store_verbs import ROLLOUT_ACTIONS, cmd_build, cmd_models, cmd_rollout, cmd_serve


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


def split_models_args(argv: list[str]) -> list[str]:
    """`keel models list SPEC` reads better than `keel models SPEC --action list` (same for `keel rollout`)."""
    actions = {"models": {"list", "show", "verify", "promote", "rollback", "history"}, "rollout": set(ROLLOUT_ACTIONS)}
    if len(argv) >= 2 and argv[0] in actions and argv[1] in actions[argv[0]]:
        return [argv[0], *argv[2:], "--action", argv[1]]
    return argv


def split_diff_args(argv: list[str]) -> list[str]:
    """`keel diff OLD NEW [overrides]`: the second positional is the new spec, not an override."""
    if len(argv) >= 3 and argv[0] == "diff" and argv[2].endswith((".yaml", ".yml")) and "=" not in argv[2]:
        return ["diff", argv[1], *argv[3:], "--new", argv[2]]
    return argv
