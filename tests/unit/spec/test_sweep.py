"""`keel run -m`: Hydra's sweep grammar expanded as Hydra does, every combination checked before anything runs."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flows.evaluate import reference_metrics
from pipeline.cli import main
from pipeline.registry import BundleStore, promote, save_bundle
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec
from pipeline.spec.sweep import MAX_JOBS, check_sweep, expand_sweep

REPO = Path(__file__).resolve().parents[3]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")


def keel(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), err.getvalue()


def test_cartesian_product_in_hydra_order_with_fixed_overrides_as_typed() -> None:
    overrides = ["data.rows=4000", "model.params.num_leaves=15,31", "model=lightgbm,logistic", "~triggers.drift"]
    jobs = expand_sweep(overrides)
    assert [j.swept for j in jobs] == [
        ("model.params.num_leaves=15", "model=lightgbm"),
        ("model.params.num_leaves=15", "model=logistic"),
        ("model.params.num_leaves=31", "model=lightgbm"),
        ("model.params.num_leaves=31", "model=logistic"),
    ]
    assert jobs[1].overrides == ("data.rows=4000", "model.params.num_leaves=15", "model=logistic", "~triggers.drift")
    assert [j.index for j in jobs] == [1, 2, 3, 4]


def test_range_choice_and_no_sweep() -> None:
    jobs = expand_sweep(["data.rows=range(1000,3001,1000)", "selection.cv_folds=choice(3,5)"])
    assert [j.swept for j in jobs] == [
        (f"data.rows={rows}", f"selection.cv_folds={folds}") for rows in (1000, 2000, 3000) for folds in (3, 5)
    ]
    # a plain override (an interpolation too) is passed on verbatim: Hydra's sweeper would escape it
    [job] = expand_sweep(["candidates=[{family: logistic, features: ${model.features}}]"])
    assert job.overrides == ("candidates=[{family: logistic, features: ${model.features}}]",) and job.swept == ()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.params.learning_rate=interval(0.01,0.1)", ["model.params.learning_rate", "interval(...)"]),
        ("model=glob(*)", ["model", "glob(...) is not supported"]),
        ("data.rows=range(0,100000)", [f"at most {MAX_JOBS}"]),
        ("description=${oc.env:HOME},x", ["description", "resolver 'oc.env' is not allowed"]),
        ("model.params.num_leaves=[1,2", ["model.params.num_leaves", "cannot parse"]),
    ],
)
def test_what_cannot_be_swept_is_a_spec_error(override: str, expected: list[str]) -> None:
    with pytest.raises(SpecError) as info:
        expand_sweep([override], spec_file="spec.yaml")
    text = info.value.render()
    assert all(part in text for part in expected), text


def test_every_bad_combination_is_reported() -> None:
    jobs = expand_sweep(["model.params.num_leaves=15,abc", "selection.cv_folds=3,1"])
    with pytest.raises(SpecError) as info:
        check_sweep(SPEC, jobs)
    bad = sorted({p.to_dict()["job"] for p in info.value.problems})
    assert bad == [2, 3, 4]  # (15,1), (abc,3), (abc,1); only (15,3) is valid
    text = info.value.render()
    assert "3 of 4 combinations are invalid; nothing was run" in text
    assert "job 3 [model.params.num_leaves=abc selection.cv_folds=3]" in text
    assert "model.params.num_leaves: Input should be a valid integer" in text
    assert "selection.cv_folds:" in text


def test_invalid_sweep_value_exits_2_before_prefect_starts(tmp_path: Path) -> None:
    """Subprocess: the spec check of a sweep must not even import Prefect (docs/adr/0005)."""
    probe = (
        "import sys; from pipeline.cli import main; "
        f"code = main(['run', '-m', {SPEC!r}, 'data.rows=4000', 'model.params.num_leaves=15,abc', '--json']); "
        "print('prefect imported' if 'prefect' in sys.modules else 'no prefect'); sys.exit(code)"
    )
    env = {"PYTHONPATH": str(REPO), "BENTOML_HOME": str(tmp_path / "bentoml"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr
    *_, payload, probe_line = done.stdout.strip().splitlines()
    assert probe_line == "no prefect"
    [problem] = json.loads(payload)["problems"]
    assert problem["key"] == "model.params.num_leaves" and problem["job"] == 2
    assert problem["overrides"] == ["model.params.num_leaves=abc"]
    assert "job 2 [model.params.num_leaves=abc]" in done.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "bentoml").exists()


def test_sweep_values_without_multirun_point_to_it() -> None:
    code, payload, err = keel("run", SPEC, "model.params.num_leaves=15,31")
    assert code == 2
    [problem] = payload["problems"]
    assert problem["key"] == "model.params.num_leaves" and "keel run -m" in problem["reason"]
    code, payload, err = keel("run", SPEC, "--promote-best")
    assert code == 2 and "only applies to a sweep" in err


def test_check_multirun_lists_every_combination() -> None:
    code, payload, _ = keel("check", "-m", SPEC, "model.params.num_leaves=15,31")
    assert code == 0
    assert [j["overrides"] for j in payload["jobs"]] == [["model.params.num_leaves=15"], ["model.params.num_leaves=31"]]
    assert len({j["spec_sha256"] for j in payload["jobs"]}) == 2


def test_unpromoted_sweep_trials_are_not_the_baseline(tmp_path: Path) -> None:
    """A sweep must not gate its jobs against its own siblings, nor later runs against its trials."""
    store = BundleStore(tmp_path / "bentoml")
    spec = load_spec(SPEC).spec

    def save(auc: float, sweep: str | None = None) -> str:
        src = tmp_path / f"src-{auc}"
        src.mkdir()
        (src / "model.txt").write_text(str(auc))
        ref = save_bundle(
            spec.name,
            src,
            spec_sha256="0" * 64,
            data_fingerprint="fp",
            code_version="t",
            metrics={"auc": auc},
            gate_passed=True,
            extra={"sweep": sweep} if sweep else {},
            store=store,
        )
        return ref.tag

    champion = save(0.80)
    promote(spec.name, champion, reason="test", store=store)
    trial = save(0.90, sweep="s1")
    save(0.95, sweep="s1")
    metrics, baseline, tag = reference_metrics(spec, store)
    assert tag == champion and metrics == {"auc": 0.80}
    assert baseline == {"auc": 0.80}  # with the trials it would be the median 0.90
    promote(spec.name, trial, reason="best of sweep", store=store)
    _, baseline, _ = reference_metrics(spec, store)
    assert baseline == {"auc": pytest.approx(0.85)}  # a promoted trial is history
