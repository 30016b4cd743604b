"""The click pieces every verb shares: SPEC and its overrides, --json, --config-dir, -q/-v, spec completion.

A verb's click callback does not run the verb: it returns an `argparse.Namespace` with the same attributes
the argparse tree gave (ADR 0030), and `main` runs the handler, so the handlers in *_verbs.py are unchanged
and parsing stays separate from the exception-to-exit-code mapping. Handlers are named "module:function"
and imported only when their verb runs: `keel --help` imports no verb module.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

Handler = Callable[[argparse.Namespace], int]


def handler(ref: str) -> Handler:
    """ "spec_verbs:cmd_check" -> the function, looked up when the verb runs (a test may patch the module)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(f"pipeline.cli.{module}"), name)


def complete_spec(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """SPEC completion: spec files (*.yaml/*.yml), with `specs/*.yaml` offered when nothing is typed yet."""
    if not incomplete:
        found = [*Path().glob("*.y*ml"), *Path("specs").glob("*.yaml"), *Path("specs").glob("*.yml")]
        return [CompletionItem(str(p)) for p in sorted(found) if p.is_file()]
    base = Path(incomplete)
    folder, stem = (base, "") if incomplete.endswith("/") else (base.parent, base.name)
    items: list[CompletionItem] = []
    for path in sorted(folder.glob(f"{stem}*")) if folder.is_dir() else []:
        shown = str(path) if str(folder) != "." or incomplete.startswith("./") else path.name
        if path.is_dir():
            items.append(CompletionItem(f"{shown}/"))
            items += [CompletionItem(f"{shown}/{p.name}") for p in sorted(path.glob("*.y*ml")) if p.is_file()]
        elif path.suffix in (".yaml", ".yml"):
            items.append(CompletionItem(shown))
    return items


def opt(*decls: str, **kwargs: Any) -> click.Option:
    """An option whose default is None unless given (click's own "unset" would leak into the namespace)."""
    if not kwargs.get("multiple"):
        kwargs.setdefault("default", None)
    return click.Option(list(decls), **kwargs)


def flag(*decls: str, help: str) -> click.Option:
    return click.Option(list(decls), is_flag=True, default=False, help=help)


def path_opt(*decls: str, **kwargs: Any) -> click.Option:
    return click.Option(list(decls), type=click.Path(path_type=Path), default=kwargs.pop("default", None), **kwargs)


def data_opt(**kwargs: Any) -> click.Option:
    """--data as typed: a file, a directory, a glob or an fsspec URI (a Path would turn s3://b into s3:/b)."""
    return click.Option(["--data"], type=click.Path(path_type=str), default=None, **kwargs)


def json_opt() -> click.Option:
    return flag("--json", help="print one JSON object on stdout, alone (human text goes to stderr)")


def verbosity_opts() -> list[click.Option]:
    """-q/-v, accepted before the verb (`keel -q check`) and after it (`keel check SPEC -q`)."""
    return [
        flag("-q", "--quiet", help="errors only: no human text on stdout, no progress bars, no logs below ERROR"),
        flag("-v", "--verbose", help="debug lines on stderr (Keel's and Prefect's logs)"),
    ]


def spec_params(spec_required: bool = True, overrides_metavar: str = "[OVERRIDES]...") -> list[click.Parameter]:
    return [
        click.Argument(["spec"], required=spec_required, shell_complete=complete_spec, metavar="SPEC"),
        click.Argument(["overrides"], nargs=-1, metavar=overrides_metavar),
        json_opt(),
        opt(
            "--config-dir",
            "--conf",
            "conf",
            multiple=True,
            metavar="DIR",
            type=click.Path(file_okay=False, path_type=str),
            help="a config-group directory of yours (repeatable): searched in the order given, then "
            "KEEL_CONF_PATH, then the conf/ beside the spec's folder, then Keel's own groups (always last)",
        ),
    ]


def namespace(ctx: click.Context, verb: str, ref: str, values: dict[str, Any], **fixed: Any) -> argparse.Namespace:
    """What the argparse tree produced: tuples as lists, SPEC as a Path, -q/-v merged from before the verb."""
    root = ctx.find_root().params
    quiet = bool(values.pop("quiet", False) or root.get("quiet"))
    verbose = bool(values.pop("verbose", False) or root.get("verbose"))
    if quiet and verbose:
        raise click.UsageError("-q and -v contradict each other: give one", ctx)
    out = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
    if out.get("spec") is not None:
        out["spec"] = Path(out["spec"])
    out.setdefault("overrides", [])
    out.setdefault("json", False)
    out.setdefault("conf", [])
    return argparse.Namespace(verb=verb, handler=handler(ref), quiet=quiet, verbose=verbose, **fixed, **out)


def verb(
    name: str,
    ref: str,
    summary: str,
    params: Sequence[click.Parameter],
    description: str | None = None,
    finish: Callable[[click.Context, argparse.Namespace], None] | None = None,
    command_name: str | None = None,
    **fixed: Any,
) -> click.Command:
    """One `keel NAME` command; `finish` adjusts the namespace (e.g. diff's second spec) or raises a usage error."""

    @click.pass_context
    def callback(ctx: click.Context, **values: Any) -> argparse.Namespace:
        args = namespace(ctx, name, ref, values, **fixed)
        if finish is not None:
            finish(ctx, args)
        return args

    return click.Command(
        command_name or name,
        params=[*params, *verbosity_opts()],
        callback=callback,
        help=description or summary,
        short_help=summary,
        context_settings=CONTEXT,
    )


class ActionGroup(click.Group):
    """`keel models list SPEC`: real subcommands. The older `keel models SPEC [--action A]` still parses."""

    def __init__(self, *args: Any, default_action: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_action = default_action

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in CONTEXT["help_option_names"]:
            rest, action = list(args), self.default_action
            for i, token in enumerate(rest):
                if token == "--action" and i + 1 < len(rest):
                    action = rest[i + 1]
                    del rest[i : i + 2]
                    break
                if token.startswith("--action="):
                    action = token.split("=", 1)[1]
                    del rest[i]
                    break
            args = [action, *rest]
        return super().parse_args(ctx, args)


def action_group(
    name: str,
    ref: str,
    summary: str,
    actions: dict[str, tuple[str, list[click.Parameter]]],
    default_action: str,
) -> click.Group:
    """A verb whose first word is an action; every action's namespace has every option (defaults for the rest)."""
    defaults = {p.name: p.default for _, params in actions.values() for p in params if p.name}
    group = ActionGroup(name, help=summary, short_help=summary, default_action=default_action, context_settings=CONTEXT)
    for action, (text, params) in actions.items():
        group.add_command(
            verb(
                name,
                ref,
                text,
                [*spec_params(), *params],
                command_name=action,
                action=action,
                **_missing(defaults, params),
            )
        )
    return group


def _missing(defaults: dict[str, Any], params: list[click.Parameter]) -> dict[str, Any]:
    given = {p.name for p in params}
    return {k: v for k, v in defaults.items() if k not in given}
