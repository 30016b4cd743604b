"""`keel` behaves like its neighbours (issue 16.5, ADR 0030): real subcommands, --version, completion, -q/-v,
--json alone on stdout, and the argparse-era command lines still parse to the same namespace."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.cli.parser import build_cli, parse

REPO = Path(__file__).resolve().parents[2]
SPEC = "specs/streamflow_churn.yaml"
VERBS = [
    "backtest", "build", "check", "diff", "init", "init-spec", "models", "monitor", "rollout", "run",
    "schedule", "schema", "score", "serve", "server", "show", "simulate", "validate",
]  # fmt: skip


def keel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`keel ARGS` in a fresh process, in the repository (what a shell user gets)."""
    full = {**os.environ, "GX_ANALYTICS_ENABLED": "false", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, env=full, capture_output=True, text=True, timeout=120
    )


def run_here(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_help_lists_every_verb_with_a_one_line_summary() -> None:
    code, out, _ = run_here("--help")
    assert code == 0 and "-q, --quiet" in out and "--version" in out
    assert sorted(build_cli().commands) == sorted(VERBS)
    listed = out.split("Commands:")[1]
    for name in VERBS:
        assert f"\n  {name} " in listed, name
        assert build_cli().commands[name].get_short_help_str(200), name
    code, out, _ = run_here("models", "--help")  # models and rollout are groups of real subcommands
    assert code == 0 and "verify" in out and "--action" not in out


def test_every_subcommand_has_its_own_help() -> None:
    for argv in (["check", "--help"], ["rollout", "drill", "-h"], ["diff", "--help"], ["server", "--help"]):
        code, out, _ = run_here(*argv)
        assert code == 0 and out.startswith(f"Usage: keel {' '.join(argv[:-1])} "), argv
    assert "--max-switch-ms" in run_here("rollout", "drill", "--help")[1]
    assert "--max-switch-ms" not in run_here("rollout", "start", "--help")[1]


def test_version_is_the_installed_package_version() -> None:
    done = keel("--version")
    assert done.returncode == 0 and done.stdout.startswith(f"keel {version('keel')}"), done.stderr


def test_shell_completion_offers_verbs_and_spec_files() -> None:
    done = keel(env={"_KEEL_COMPLETE": "bash_complete", "COMP_WORDS": "keel sc", "COMP_CWORD": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["plain,schedule", "plain,schema", "plain,score"]
    done = keel(env={"_KEEL_COMPLETE": "bash_complete", "COMP_WORDS": "keel check ", "COMP_CWORD": "2"})
    offered = {line.split(",", 1)[1] for line in done.stdout.split()}
    assert {str(p.relative_to(REPO)) for p in (REPO / "specs").glob("*.yaml")} <= offered
    done = keel(env={"_KEEL_COMPLETE": "bash_complete", "COMP_WORDS": "keel rollout app", "COMP_CWORD": "2"})
    assert done.stdout.split() == ["plain,approve"]
    for shell in ("bash", "zsh", "fish"):  # the lines docs/cli.md gives
        done = keel(env={"_KEEL_COMPLETE": f"{shell}_source"})
        assert done.returncode == 0 and "_KEEL_COMPLETE" in done.stdout, shell


def test_quiet_prints_nothing_on_success_and_errors_still_on_stderr() -> None:
    for argv in (["-q", "check", SPEC], ["check", SPEC, "-q"]):
        done = keel(*argv)
        assert (done.returncode, done.stdout, done.stderr) == (0, "", ""), argv
    done = keel("-q", "check", SPEC, "data.rows=-5")
    assert done.returncode == 2 and done.stdout == ""
    assert "data.rows: Input should be greater than or equal to 0" in done.stderr
    done = keel("-q", "check", SPEC, "--json")  # the JSON a script asked for is not "noise"
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "ok"


def test_verbose_shows_debug_lines() -> None:
    done = keel("-v", "check", SPEC)
    assert done.returncode == 0 and f"{SPEC}: ok" in done.stdout
    assert "DEBUG keel.cli: keel check: exit 0 after" in done.stderr
    assert keel("check", SPEC).stderr == ""  # neither flag: no debug lines
    done = keel("-q", "-v", "check", SPEC, "--json")
    assert done.returncode == 2 and "contradict" in json.loads(done.stdout)["problems"][0]["reason"]


def test_json_is_alone_on_stdout_even_for_a_child_process() -> None:
    done = keel("check", SPEC, "--json")
    (line,) = done.stdout.splitlines()
    assert json.loads(line)["status"] == "ok" and f"{SPEC}: ok" in done.stderr
    snippet = (
        "import os, sys\n"
        "from pipeline.cli.output import output_mode, print_json\n"
        "with output_mode(False, False, True):\n"
        "    print('a stray print')\n"
        "    sys.stdout.flush()\n"
        "    os.system('echo a child process')\n"
        "    print_json({'status': 'ok'})\n"
        "print('after')\n"
    )
    done = subprocess.run([sys.executable, "-c", snippet], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.stdout == '{"status": "ok"}\nafter\n', done.stdout
    assert "a stray print" in done.stderr and "a child process" in done.stderr


def test_usage_errors_exit_2_and_still_end_with_a_json_line() -> None:
    for argv, reason in [
        (["check", "--json"], "Missing argument 'SPEC'"),
        (["monitor", SPEC, "--as-of", "yesterday", "--json"], "expected a date YYYY-MM-DD"),
        (["init", ".", "a=b", "--json"], "unexpected extra argument"),
        (["nope", "--json"], "No such command 'nope'"),
    ]:
        code, out, err = run_here(*argv)
        assert code == 2 and "Usage: keel" in err, argv
        assert reason in json.loads(out.strip().splitlines()[-1])["problems"][0]["reason"], (argv, out)


def test_overrides_pass_through_as_written() -> None:
    overrides = ["~triggers.drift", "+gates.f1={min: 0.3}", "gates.ndcg@10.min=0.1", "model.params.lambda_l1=-1"]
    args = parse(["check", SPEC, overrides[0], "--data", "x.csv", *overrides[1:], "--conf", "a", "--conf=b"])
    assert not isinstance(args, int)
    assert args.overrides == overrides and args.data == "x.csv" and args.conf == ["a", "b"]
    assert args.spec == Path(SPEC) and args.handler.__name__ == "cmd_check" and not args.json
    assert parse(["check", SPEC, "--data"]).data == ""  # type: ignore[union-attr]  # --data alone: data.source
    assert parse(["score", SPEC, "--data", "f.csv", "--reasons", "-1"]).reasons == -1  # type: ignore[union-attr]
    assert parse(["monitor", SPEC, "--as-of", "2026-02-03"]).as_of == "2026-02-03"  # type: ignore[union-attr]


def test_argparse_era_command_lines_parse_the_same() -> None:
    args = parse(["models", SPEC, "--action", "verify", "a=1"])
    assert not isinstance(args, int) and (args.verb, args.action, args.overrides) == ("models", "verify", ["a=1"])
    assert args.tag is None and args.reason is None  # every action's options exist, unset
    args = parse(["rollout", "drill", SPEC, "--cycles", "2"])
    assert not isinstance(args, int) and (args.action, args.cycles, args.rate, args.tag) == ("drill", 2, 100.0, None)
    assert parse(["rollout", SPEC]).action == "status"  # type: ignore[union-attr]
    args = parse(["diff", "old.yaml", "new.yaml", "x=1", "--change", "y=2"])
    assert not isinstance(args, int) and (args.spec, args.new) == (Path("old.yaml"), Path("new.yaml"))
    assert (args.overrides, args.change) == (["x=1"], ["y=2"])
    args = parse(["diff", "--changed-since", "HEAD~1", "model=logistic", "--format", "markdown"])
    assert not isinstance(args, int) and args.spec == Path("specs") and args.overrides == ["model=logistic"]
    args = parse(["server", "start", "--port", "4300"])
    assert not isinstance(args, int) and (args.action, args.port, args.overrides) == ("start", 4300, [])


@pytest.mark.parametrize(
    "argv", [["--help"], ["check", "--help"], ["check", SPEC], ["show", SPEC], ["diff", SPEC, SPEC, "--json"]]
)
def test_the_click_layer_imports_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys; from pipeline.cli import main; main(sys.argv[1:]); "
        "print(sorted(m for m in ('prefect', 'bentoml', 'torch', 'lightgbm') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr
