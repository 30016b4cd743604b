"""`keel models list` shows an alias whose bundle is gone; `keel models verify` exits 1 on it or on a bad file."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

from pipeline.cli import main
from pipeline.registry import BundleStore, promote, save_bundle

REPO = Path(__file__).resolve().parents[2]
SPEC = str(REPO / "specs" / "streamflow_churn.yaml")


def keel(*args: str) -> tuple[int, dict, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--json"])
    return code, json.loads(out.getvalue().strip().splitlines()[-1]), out.getvalue() + err.getvalue()


def _bundle(store: BundleStore, tmp_path: Path, seed: str) -> str:
    src = tmp_path / f"src-{seed}"
    src.mkdir()
    (src / "model.txt").write_text(seed * 100)
    ref = save_bundle("streamflow-churn", src, spec_sha256=seed * 64, data_fingerprint="fp", code_version="t",
                      gate_passed=True, store=store)  # fmt: skip
    promote("streamflow-churn", ref.tag, "test", store=store)
    return ref.tag


def test_dangling_alias_is_shown_and_verify_fails(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    home = [f"runtime.bentoml_home={store.home}"]
    first, second = _bundle(store, tmp_path, "1"), _bundle(store, tmp_path, "2")
    code, ok, _ = keel("models", "verify", SPEC, *home)
    assert code == 0 and ok["bundles"] == 2 and ok["problems"] == []

    shutil.rmtree(store.get(second).path)  # someone deleted the champion's directory by hand
    code, listed, text = keel("models", "list", SPEC, *home)
    assert code == 0 and [b["tag"] for b in listed["bundles"]] == [first]
    assert f"DANGLING champion -> {second}" in text and "warning: alias champion" in text
    code, failed, text = keel("models", "verify", SPEC, *home)
    assert code == 1 and failed["problems"] == [f"alias champion -> {second}: bundle missing (dangling)"]


def test_verify_names_a_tampered_bundle(tmp_path: Path) -> None:
    store = BundleStore(tmp_path / "store")
    tag = _bundle(store, tmp_path, "3")
    (store.get(tag).path / "model.txt").write_text("tampered")
    code, failed, _ = keel("models", "verify", SPEC, f"runtime.bentoml_home={store.home}")
    assert code == 1 and failed["problems"][0].startswith(tag)
