"""The verbs over the model store and Prefect servers: serve, build, models, rollout, server, schedule."""

from __future__ import annotations

import click

from pipeline.cli.options import action_group, flag, json_opt, opt, path_opt, spec_params, verb


def store_verbs() -> list[click.Command]:
    serve = verb(
        "serve",
        "store_verbs:cmd_serve",
        "serve the spec's champion bundle over HTTP (BentoML): /score, /cached_score",
        [
            *spec_params(),
            opt("--host", default="127.0.0.1"),
            opt("--port", type=int, default=3000),
            opt("--workers", type=int, help="worker processes (default 1; one per core scales)"),
        ],
    )
    build = verb(
        "build",
        "store_verbs:cmd_build",
        "build a Bento of one bundle (BentoML): ship it, import it, serve or containerize",
        [
            *spec_params(),
            opt("--bundle", default="champion", help="champion (default), challenger or NAME:VERSION"),
            opt("--host", default="0.0.0.0", help="the address the Bento binds (default 0.0.0.0: a container)"),
            opt("--name", help="the Bento's name (default: the spec's name)"),
        ],
    )
    return [serve, build, _models(), _rollout()]


def _models() -> click.Group:
    tag = lambda text: opt("--tag", metavar="NAME:VERSION", help=text)  # noqa: E731
    reason = lambda: opt("--reason", help="recorded in the alias history")  # noqa: E731
    return action_group(
        "models",
        "store_verbs:cmd_models",
        "list, show, verify, promote or roll back the spec's registered bundles",
        {
            "list": ("the spec's bundles, their metrics and aliases (a dangling alias is marked)", []),
            "show": ("one bundle's manifest (default: the champion's)", [tag("the bundle to show")]),
            "verify": ("every bundle's files against their sha256 and every alias against the store", []),
            "promote": ("make a bundle the champion", [tag("the bundle to promote"), reason()]),
            "rollback": ("the standby becomes champion again", [reason()]),
            "history": ("the alias history, one JSON object a line", []),
        },
        default_action="list",
    )


def _rollout() -> click.Group:
    reason = lambda: opt("--reason", help="recorded in the rollout history")  # noqa: E731
    approved_by = lambda text: opt("--approved-by", metavar="WHO", help=text)  # noqa: E731
    return action_group(
        "rollout",
        "store_verbs:cmd_rollout",
        "start, advance, roll back or show the staged rollout of a challenger",
        {
            "status": ("the spec's rollout: stage, traffic, challenger", []),
            "start": (
                "start the staged rollout of a challenger",
                [opt("--tag", metavar="NAME:VERSION", help="the challenger's bundle tag"), reason()],
            ),
            "advance": (
                "move the rollout to its next stage",
                [approved_by("advance into an approval stage: who approves"), reason()],
            ),
            "rollback": ("take the challenger out of traffic (or undo a completed promotion)", [reason()]),
            "evaluate": (
                "judge the current stage against its criteria (a Prefect flow)",
                [
                    opt("--now", metavar="ISO-TIME", help="ISO time to evaluate at (virtual time)"),
                    opt("--approval-timeout", type=int, default=3600, help="seconds a pause waits"),
                    reason(),
                ],
            ),
            "approve": (
                "answer an approval stage",
                [
                    approved_by("who approves"),
                    opt("--comment", help="recorded with the answer in the rollout history"),
                    flag("--reject", help="reject instead (the rollout rolls back)"),
                    reason(),
                ],
            ),
            "drill": (
                "switch a running service to the standby and back under load; time each switch",
                [
                    opt("--url", default="http://127.0.0.1:3000", help="the running service"),
                    opt("--cycles", type=int, default=3, help="switches to the standby and back"),
                    opt("--rate", type=float, default=100.0, help="requests per second"),
                    opt("--gap", type=float, default=1.0, help="seconds between switches"),
                    opt("--max-switch-ms", type=float, help="fail when a switch takes longer (default: report only)"),
                ],
            ),
            "outcomes": (
                "record business outcomes of routed requests",
                [path_opt("--file", help="CSV with request_id, outcome, value")],
            ),
        },
        default_action="status",
    )


def server_verbs() -> list[click.Command]:
    server = verb(
        "server",
        "server_verbs:cmd_server",
        "start, stop or show this project's Prefect server (every verb uses it when it is up)",
        [
            click.Argument(["action"], type=click.Choice(["start", "stop", "status"])),
            opt("--port", type=int, default=4200, help="start: the port (a free one if taken)"),
            opt(
                "--database",
                metavar="URL",
                help="start: SQLAlchemy URL of the server's database (default: the local PostgreSQL's "
                "keel_prefect, else SQLite under .keel/prefect/)",
            ),
            json_opt(),
        ],
        description="A Prefect server in the background on the local PostgreSQL (else SQLite under .keel/prefect/); "
        "every keel verb run in this directory reports to it, and its UI shows runs, schedules and reports.",
    )
    schedule = verb(
        "schedule",
        "server_verbs:cmd_schedule",
        "register the spec's retrain/monitor Prefect deployments and serve them",
        [*spec_params(), flag("--register-only", help="register the deployments, do not serve them")],
    )
    return [server, schedule]
