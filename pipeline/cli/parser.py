"""The click tree's root: `keel [--version] [-q|-v] VERB` (docs/cli.md is the user's view, ADR 0030 the why).

`parse(argv)` returns the `argparse.Namespace` a handler takes, or an exit code when click answered by
itself (--help, --version, a usage error: exit 2, with `--json` still one JSON line on stdout).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import click

from pipeline.cli.commands import run_verbs, spec_verbs
from pipeline.cli.options import CONTEXT, verbosity_opts
from pipeline.cli.store_commands import server_verbs, store_verbs

DESCRIPTION = (
    "Run ML systems described by YAML specs. Exit codes: 0 ok, 1 a gate/contract said no, "
    "2 bad spec, input or usage, 3 the result could not be stored (disk full, read-only)."
)


def parse(argv: list[str]) -> argparse.Namespace | int:
    """Click's answer for `keel ARGV`: the verb's namespace, or the exit code of --help/--version/a usage error."""
    try:
        result = build_cli().main(args=argv, prog_name="keel", standalone_mode=False)
    except click.exceptions.Abort:
        return 130
    except click.ClickException as exc:
        exc.show()
        if "--json" in argv:
            print(json.dumps({"status": "error", "problems": [{"reason": f"usage: {_reason(exc)}"}]}))
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    return result if isinstance(result, argparse.Namespace) else int(result or 0)


def _reason(exc: click.ClickException) -> str:
    if isinstance(exc, click.NoSuchOption):  # the argparse wording scripts already match on
        return f"unrecognized arguments: {exc.option_name}"
    return exc.format_message()


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    """`keel --version`: the installed package's version (plus the commit in a checkout); git runs only when asked."""
    if not value or ctx.resilient_parsing:
        return
    from pipeline.runs import code_version

    click.echo(f"keel {code_version()}")
    ctx.exit()


_CLI: list[click.Group] = []


def build_cli() -> click.Group:
    """The `keel` group (built once per process: tests call main() many times)."""
    if _CLI:
        return _CLI[0]

    @click.pass_context
    def root(ctx: click.Context, **_: Any) -> None:
        """Run ML systems described by YAML specs."""

    group = click.Group(
        "keel",
        help=DESCRIPTION,
        callback=root,
        context_settings=CONTEXT,
        params=[
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_show_version,
                help="print keel's version and exit",
            ),
            *verbosity_opts(),
        ],
    )
    for command in [*spec_verbs(), *run_verbs(), *store_verbs(), *server_verbs()]:
        group.add_command(command)
    _CLI.append(group)
    return group
