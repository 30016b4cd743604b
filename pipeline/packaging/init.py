"""`keel init DIR`: a project of your own that uses an installed Keel.

    DIR/specs/churn.yaml                    a spec on Keel's synthetic StreamFlow data: `keel check` passes as is
    DIR/conf/gates/project.yaml             your config groups; they come before Keel's (docs/cli.md)
    DIR/.github/workflows/keel-review.yml   pull requests: every spec a change alters, diffed, as the job summary
    DIR/.pre-commit-config.yaml             `keel check` of every spec before a commit (Keel's .pre-commit-hooks.yaml)

Files that exist are never overwritten (listed as kept); the written spec is checked with load_spec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KEEL_REPO_URL = "https://github.com/ml-platform/keel"  # where pre-commit fetches .pre-commit-hooks.yaml from

SPEC = """\
# A churn model on Keel's synthetic StreamFlow data; point data.source at your own Parquet/CSV
# (relative to this file) and write its contract under conf/contract/ (keel init-spec FILE does both).
#   keel check specs/churn.yaml      compose and check: exit 2 names file, line, key
#   keel run   specs/churn.yaml      train, gate, register, batch-score
# Config groups: this project's conf/ first, then --config-dir / KEEL_CONF_PATH, then Keel's own
# (contract/streamflow, model/lightgbm, runtime/local come from the installed package).
defaults:
  - contract: streamflow
  - model: lightgbm
  - gates: project          # conf/gates/project.yaml, this project's
  - runtime: local
  - _self_

name: churn
description: Subscribers likely to cancel, with top reasons.
task: binary_classification

data:
  source: synthetic:streamflow
  rows: 5000
  seed: 7
  entity_id: subscriber_id
  timestamp: snapshot_date
  label: churned
  positive: 1
  split: {method: time, valid_fraction: 0.1, test_fraction: 0.2}

model:
  features:
    - sessions_last_30d
    - avg_session_minutes
    - days_since_last_activity
    - monthly_charges
    - support_tickets_last_90d
    - plan_type
    - tenure_months
"""

GATES = """\
# This project's gates (a config group of its own: `gates: project` in a spec's defaults).
# A file here named like one of Keel's (conf/gates/churn.yaml) would replace Keel's for this project.
auc: {min: 0.70}
pr_auc: {min: 0.25}
auc_vs_champion: {metric: auc, vs: champion, max_drop: 0.01}
"""

WORKFLOW = """\
# Review in pull requests: every spec under specs/ whose resolved configuration the change alters
# (a change under conf/ or specs/), explained in words, as the job summary; the job fails on a spec
# that no longer composes (exit 2). keel diff exits 0 when nothing changed.
name: keel-review
on:
  pull_request:
    paths: ["specs/**", "conf/**"]
jobs:
  review:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with: {fetch-depth: 0}          # keel diff --changed-since composes the base revision too
      - uses: actions/setup-python@v5
        with: {python-version: "3.11"}
      - run: pip install "keel @ git+{repo}@v{version}"   # or your wheel: pip install keel-{version}-py3-none-any.whl
      - name: keel diff
        run: |
          keel diff --changed-since "origin/${{ github.base_ref }}" --format markdown > keel-review.md
          cat keel-review.md >> "$GITHUB_STEP_SUMMARY"
"""

PRE_COMMIT = """\
# `pre-commit install` once; then every commit that touches specs/ or conf/ runs keel check on every spec.
repos:
  - repo: {repo}
    rev: v{version}
    hooks:
      - id: keel-check
"""


@dataclass
class Scaffold:
    root: Path
    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"wrote {p.relative_to(self.root)}" for p in self.written]
        lines += [f"kept {p.relative_to(self.root)} (exists; not overwritten)" for p in self.kept]
        lines.append(f"next: cd {self.root} && keel check specs/churn.yaml && keel run specs/churn.yaml")
        return "\n".join(lines)

    def payload(self) -> dict[str, object]:
        return {
            "status": "ok",
            "root": str(self.root),
            "written": [str(p.relative_to(self.root)) for p in self.written],
            "kept": [str(p.relative_to(self.root)) for p in self.kept],
        }


def files(version: str, repo: str = KEEL_REPO_URL) -> dict[str, str]:
    return {
        "specs/churn.yaml": SPEC,
        "conf/gates/project.yaml": GATES,
        ".github/workflows/keel-review.yml": _fill(WORKFLOW, repo, version),
        ".pre-commit-config.yaml": _fill(PRE_COMMIT, repo, version),
    }


def _fill(template: str, repo: str, version: str) -> str:
    return template.replace("{repo}", repo).replace("{version}", version)  # not str.format: ${{ }} in workflows


def init_project(root: Path, version: str, repo: str = KEEL_REPO_URL) -> Scaffold:
    """Write the scaffold under `root` (created if missing); existing files are kept as they are."""
    root = root.resolve()
    done = Scaffold(root)
    for relative, text in files(version, repo).items():
        path = root / relative
        if path.exists():
            done.kept.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        done.written.append(path)
    return done


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keel")
    except PackageNotFoundError:
        return "0.1.0"
