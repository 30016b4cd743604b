"""Keel travels (issue 16, part 1): its groups from the package, your groups first, extras named, keel init."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.extras import MissingExtra, from_import_error
from pipeline.packaging.init import files, init_project
from pipeline.spec.load import PACKAGE_CONF, conf_dirs_for, load_spec
from pipeline.spec.package_conf import keel_conf_dir

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # --version exits from argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


def _project(root: Path) -> Path:
    """A user's repository outside the checkout: specs/my.yaml, conf/gates/churn.yaml (replaces Keel's)."""
    (root / "specs").mkdir(parents=True)
    (root / "conf" / "gates").mkdir(parents=True)
    (root / "conf" / "gates" / "churn.yaml").write_text("auc: {min: 0.61}\n")
    spec = (REPO / "specs" / "streamflow_churn.yaml").read_text().replace("name: streamflow-churn", "name: my-churn")
    (root / "specs" / "my.yaml").write_text(spec)
    return root / "specs" / "my.yaml"


def test_a_checkout_reads_keel_groups_from_the_repository_conf() -> None:
    assert keel_conf_dir() == REPO / "conf" == PACKAGE_CONF
    assert not (REPO / "pipeline" / "conf").exists()  # the wheel's copy is made at build time (setup.py)


def test_user_groups_come_first_and_keel_groups_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _project(tmp_path / "user")
    extra = tmp_path / "team"
    (extra / "gates").mkdir(parents=True)
    (extra / "gates" / "churn.yaml").write_text("auc: {min: 0.62}\n")
    path_dir = tmp_path / "site"
    (path_dir / "gates").mkdir(parents=True)
    (path_dir / "gates" / "churn.yaml").write_text("auc: {min: 0.63}\n")
    monkeypatch.setenv("KEEL_CONF_PATH", str(path_dir))
    dirs = conf_dirs_for(spec, [extra])
    assert dirs == [extra.resolve(), path_dir.resolve(), (tmp_path / "user" / "conf").resolve(), PACKAGE_CONF]
    assert load_spec(spec, [], [extra]).spec.gates["auc"].min == 0.62  # --config-dir wins
    assert load_spec(spec).spec.gates["auc"].min == 0.63  # then KEEL_CONF_PATH
    monkeypatch.delenv("KEEL_CONF_PATH")
    assert load_spec(spec).spec.gates["auc"].min == 0.61  # then the project's conf/, then Keel's (model, runtime)


def test_config_dir_is_an_alias_of_conf(tmp_path: Path) -> None:
    spec = _project(tmp_path / "user")
    team = tmp_path / "team"
    (team / "gates").mkdir(parents=True)
    (team / "gates" / "churn.yaml").write_text("auc: {min: 0.64}\n")
    for flag in ("--config-dir", "--conf"):
        code, out, _ = _run("show", str(spec), flag, str(team), "--json")
        assert code == 0 and json.loads(out.splitlines()[-1])["resolved"]["gates"]["auc"]["min"] == 0.64


def test_version() -> None:
    code, out, _ = _run("--version")
    assert code == 0 and out.startswith("keel 0.1.0")


def test_an_optional_import_names_its_extra() -> None:
    missing = from_import_error(ModuleNotFoundError("No module named 'faiss'", name="faiss"))
    assert isinstance(missing, MissingExtra) and "pip install 'keel[recsys]'" in str(missing)
    assert from_import_error(ModuleNotFoundError("No module named 'nonsense'", name="nonsense")) is None


BLOCKED = """
import sys
from importlib.abc import MetaPathFinder
class Gone(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Gone())
from pipeline.cli import main
sys.exit(main({argv!r}))
"""


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        (["torch", "faiss"], ["run", "specs/streamrec.yaml"], "recsys"),
        (["uvloop", "httptools"], ["serve", "specs/streamflow_churn.yaml"], "serve"),
        (["torch"], ["serve", "specs/streamrec.yaml"], "recsys"),
        (["torch"], ["run", "-m", "specs/streamrec.yaml", "model.params.epochs=1,2"], "recsys"),  # a sweep
        (["uvloop"], ["build", "specs/streamflow_churn.yaml"], "serve"),
    ],
)
def test_a_missing_extra_exits_2_with_the_install_line(blocked: list[str], argv: list[str], extra: str) -> None:
    code = BLOCKED.format(blocked=set(blocked), argv=argv)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"pip install 'keel[{extra}]'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_missing_extra_met_deep_inside_a_verb_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.cli.spec_verbs as spec_verbs  # the click tree looks the handler up here when the verb runs

    def boom(args: object) -> int:
        raise ModuleNotFoundError("No module named 'distributed'", name="distributed")

    monkeypatch.setattr(spec_verbs, "cmd_check", boom)
    code, out, err = _run("check", str(REPO / "specs" / "streamflow_churn.yaml"), "--json")
    assert code == 2 and "pip install 'keel[dask]'" in err
    assert "keel[dask]" in json.loads(out.splitlines()[-1])["problems"][0]["reason"]


def test_keel_init_writes_a_project_that_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "proj"
    code, out, _ = _run("init", str(root), "--json")
    assert code == 0
    written = json.loads(out.splitlines()[-1])["written"]
    assert sorted(written) == sorted(files("0.1.0"))
    for name in written:
        if name.endswith((".yml", ".yaml")):
            assert yaml.safe_load((root / name).read_text())
    workflow = yaml.safe_load((root / ".github/workflows/keel-review.yml").read_text())
    steps = " ".join(s.get("run", "") for s in workflow["jobs"]["review"]["steps"])
    assert "keel diff --changed-since" in steps and "--format markdown" in steps and "${{ github.base_ref }}" in steps
    hooks = yaml.safe_load((root / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    shipped = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert {h["id"] for h in hooks} <= {h["id"] for h in shipped}
    monkeypatch.chdir(root)
    assert _run("check", "specs/churn.yaml")[0] == 0
    assert load_spec(root / "specs" / "churn.yaml").spec.gates["auc"].min == 0.70  # the project's gates/project
    (root / "specs" / "churn.yaml").write_text("edited: true\n")
    again = init_project(root, "0.1.0")
    assert not again.written and (root / "specs" / "churn.yaml").read_text() == "edited: true\n"


def test_the_pre_commit_hook_checks_every_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.packaging.check_specs import main as hook

    init_project(tmp_path, "0.1.0")
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        assert hook([]) == 0
    (tmp_path / "conf" / "gates" / "project.yaml").write_text("auc: {min: 7}\n")  # a group change breaks the spec
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert hook([]) == 2
