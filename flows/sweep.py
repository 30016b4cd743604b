"""`keel run -m`: one keel-run subflow per sweep combination, in one Prefect session.

Jobs run one after another under a `keel-sweep` parent flow (one temporary Prefect
server for the whole sweep, one flow run per job in the UI); on a Dask cluster they run
in parallel as Prefect tasks (flows/sweep_dask.py, `runtime.dask.sweep: jobs`). Every job registers its
bundle and is gated against the registry as it stood before the sweep; none promotes.
With `promote_best`, the best gate-passed job is promoted at the end: ranked by the
metric cross-validated on its training split (every tabular job is cross-validated, a lone
model too), never by the small test split, whose noise would pick the luckiest slice; a
recommendation job, which has no cross-validation, is ranked by its validation-period metric
as before. It and writes the high-risk list (churn) or its batch top-K
(recommendation). Why: docs/adr/0009-sweeps.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from flows.lifecycle import batch_score, bundle_store, run_flow
from flows.on_dask import current_api_url
from flows.sweep_dask import jobs_on_dask, run_jobs_as_tasks
from flows.train import prepare_data
from pipeline.data.errors import DataSourceError, TrainingDataError
from pipeline.distributed.cluster import Cluster, run_cluster
from pipeline.registry import promote
from pipeline.runs import RunDir, atomic_write_text
from pipeline.scoring.progress import bar
from pipeline.spec.catalog import metric_info
from pipeline.spec.errors import SpecError
from pipeline.spec.load import load_spec


@flow(name="keel-sweep", log_prints=True)
def sweep_flow(
    spec_path: str,
    jobs: list[dict[str, Any]],
    conf_dirs: list[str] | None = None,
    metric: str | None = None,
    promote_best: bool = False,
) -> dict[str, Any]:
    """Run every job (dicts with `index`, `overrides`, `swept`), then rank, maybe promote, report.

    `metric` defaults to the spec's task default: auc (churn), ndcg@10 (recommendation).
    """
    conf = [Path(d) for d in conf_dirs or []]
    first = load_spec(spec_path, jobs[0]["overrides"], conf).spec
    metric = metric or DEFAULT_METRIC.get(first.task, "auc")
    sweep_dir = _sweep_dir(Path(first.runtime.runs_dir) / first.name, spec_path, jobs)
    sweep_id = sweep_dir.name
    plan = {"sweep": sweep_id, "spec": spec_path, "metric": metric, "promote_best": promote_best, "jobs": jobs}
    atomic_write_text(sweep_dir / "sweep.json", json.dumps(plan, indent=2) + "\n")
    with run_cluster(first.runtime, None) as cluster:  # runtime.executor dask: one cluster for every job (ADR 0024)
        api_url = current_api_url() if cluster is not None and first.runtime.dask.sweep == "jobs" else None
        why = jobs_on_dask(cluster, first.runtime.dask.sweep, first.task, api_url)
        mode = "local" if cluster is None else "steps" if why else "jobs"
        if mode == "jobs":
            assert cluster is not None and api_url is not None  # jobs_on_dask said yes
            rows, batches = _rows_from_tasks(cluster, api_url, spec_path, jobs, conf_dirs, metric, first.task, sweep_id)
        else:
            if cluster is not None:
                print(f"sweep {sweep_id}: jobs one after another, each over the whole cluster: {why}")
            rows, batches = _run_jobs(spec_path, jobs, conf_dirs, metric, promote_best, first.task, sweep_id)
        best = _rank_and_promote(rows, batches, spec_path, jobs, conf_dirs, metric, promote_best, first.task, sweep_id)
    status = _status(rows)
    summary = {
        "status": status,
        "sweep": sweep_id,
        "sweep_dir": str(sweep_dir),
        "spec": spec_path,
        "metric": metric,
        "promote_best": promote_best,
        "mode": mode,  # jobs: parallel Prefect tasks on the cluster; steps: one job at a time over it; local
        "jobs": rows,
        "best": {name: row["bundle"] for name, row in best.items()},
        "promoted": [row["bundle"] for row in rows if row["promoted"]],
    }
    markdown = render_markdown(summary)
    atomic_write_text(sweep_dir / "sweep.json", json.dumps({**plan, **summary}, indent=2, default=str) + "\n")
    atomic_write_text(sweep_dir / "sweep_report.md", markdown)
    create_markdown_artifact(markdown=markdown, key=f"{first.name}-sweep", description="Keel sweep summary")
    return summary


DEFAULT_METRIC = {"binary_classification": "auc", "recommendation": "ndcg@10"}


def _rows_from_tasks(
    cluster: Cluster,
    api_url: str,
    spec_path: str,
    jobs: list[dict[str, Any]],
    conf_dirs: list[str] | None,
    metric: str,
    task: str,
    sweep_id: str,
) -> tuple[list[dict[str, Any]], dict[int, Callable[[], dict[str, Any]]]]:
    """Every job as a Prefect task on the cluster, in parallel (flows/sweep_dask.py): (rows, no batches)."""
    outcomes = run_jobs_as_tasks(cluster, api_url, spec_path, jobs, conf_dirs, task, sweep_id)
    rows = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        ran = {"worker": outcome["worker"], "started": _iso(outcome["started"]), "finished": _iso(outcome["finished"])}
        rows.append(job_row(job, outcome["outcome"], outcome.get("report"), outcome.get("reason", ""), metric) | ran)
    return rows, {}


def sweep_record(sweep_id: str, job: dict[str, Any], jobs: int) -> dict[str, Any]:
    """What a job's run records about its sweep (run.json, the bundle's manifest)."""
    return {"id": sweep_id, "job": job["index"], "jobs": jobs, "overrides": job["swept"]}


def attempt_job(
    task: str, spec_path: str, overrides: list[str], conf_dirs: list[str] | None, sweep: dict[str, Any]
) -> tuple[str, dict[str, Any] | None, str]:
    """(outcome, report, reason) of one job: `done`; `failed` (the data said no, as a gate would: exit 1);
    `error` (bad input only this job met, e.g. a swept data.source: exit 2)."""
    try:
        return "done", run_job(task, spec_path, overrides, conf_dirs, sweep), ""
    except TrainingDataError as exc:
        return "failed", None, " ".join(str(exc).split())
    except (DataSourceError, SpecError) as exc:
        return "error", None, " ".join(str(exc).split())


def job_row(
    job: dict[str, Any], outcome: str, report: dict[str, Any] | None, reason: str, metric: str
) -> dict[str, Any]:
    """The summary line of an attempted job, wherever it ran."""
    if report is None:
        return _row(job, outcome, reason=reason)
    return _row(job, report["status"], report=report, metric=metric)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _run_jobs(
    spec_path: str,
    jobs: list[dict[str, Any]],
    conf_dirs: list[str] | None,
    metric: str,
    promote_best: bool,
    task: str,
    sweep_id: str,
) -> tuple[list[dict[str, Any]], dict[int, Callable[[], dict[str, Any]]]]:
    """Every job in order: (rows, the leading recommendation jobs' batch top-K, for --promote-best)."""
    rows: list[dict[str, Any]] = []
    batches: dict[int, Callable[[], dict[str, Any]]] = {}  # recommendation: the leading jobs' batch top-K
    progress = bar(len(jobs), f"sweep {sweep_id}", "job")  # on stderr when it is a terminal (not with -q)
    for job in jobs:
        progress.set_postfix_str(" ".join(job["swept"]), refresh=False)
        print(f"sweep {sweep_id}: job {job['index']}/{len(jobs)} {' '.join(job['swept'])}")
        started = time.time()
        sweep = sweep_record(sweep_id, job, len(jobs))
        outcome, report, reason = attempt_job(task, spec_path, job["overrides"], conf_dirs, sweep)
        rows.append(
            job_row(job, outcome, report, reason, metric) | {"started": _iso(started), "finished": _iso(time.time())}
        )
        if promote_best and report is not None and "batch_after_promotion" in report:
            batches[job["index"]] = report["batch_after_promotion"]
        leaders = {row["job"] for row in rank(rows, metric, task).values()}
        batches = {index: run for index, run in batches.items() if index in leaders}  # free the others' models
        progress.update(1)
    progress.close()
    return rows, batches


def _rank_and_promote(
    rows: list[dict[str, Any]],
    batches: dict[int, Callable[[], dict[str, Any]]],
    spec_path: str,
    jobs: list[dict[str, Any]],
    conf_dirs: list[str] | None,
    metric: str,
    promote_best: bool,
    task: str,
    sweep_id: str,
) -> dict[str, dict[str, Any]]:
    """The best gate-passed job per spec name, marked in `rows`, and promoted with promote_best."""
    best = rank(rows, metric, task)
    for name, row in best.items():
        row["best"] = True
        if promote_best:
            job = next(j for j in jobs if j["index"] == row["job"])
            reason = f"best {row['ranked_by']} {metric} of sweep {sweep_id} (job {row['job']} of {len(jobs)})"
            if task == "recommendation":
                row["scoring"] = promote_recsys_job(
                    spec_path, job["overrides"], conf_dirs, row["bundle"], row["run_dir"], reason, batches[row["job"]]
                )
            else:
                row["scoring"] = promote_job(
                    spec_path, job["overrides"], conf_dirs, row["bundle"], row["run_dir"], reason
                )
            row["promoted"] = True
            print(f"sweep {sweep_id}: promoted {row['bundle']} to champion of {name}")
    return best


def run_job(
    task: str, spec_path: str, overrides: list[str], conf_dirs: list[str] | None, sweep: dict[str, Any]
) -> dict[str, Any]:
    """One sweep job as its task's keel-run flow; bad input and untrainable data raise, as in a lone run."""
    if task != "recommendation":
        return run_flow(spec_path, overrides, conf_dirs, sweep=sweep)
    from flows.recsys import recsys_flow

    report = recsys_flow(spec_path, overrides, conf_dirs, sweep=sweep)
    if "error" in report:
        raise report["error"]
    return report


def promote_recsys_job(
    spec_path: str,
    overrides: list[str],
    conf_dirs: list[str] | None,
    tag: str,
    run_dir: str,
    reason: str,
    batch: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Promote a recommendation sweep job's bundle, then write its batch top-K as a promoting run does.

    `batch` holds the job's fitted recommender: unlike the churn model, it is not rebuilt from
    the bundle, so the sweep keeps the current best job's in memory (one at a time). Its
    batch_task runs as a task of the sweep flow.
    """
    loaded = load_spec(spec_path, overrides, [Path(d) for d in conf_dirs or []])
    promote(loaded.spec.name, tag, reason=reason, store=bundle_store(loaded))
    scoring = batch()
    _record_promotion(
        RunDir(Path(run_dir)),
        reason,
        scoring,
        f"- batch: top-{scoring['top_k']} for {scoring['users']:,} users ({scoring['rows']:,} rows): "
        f"`{scoring['parquet']}`",
    )
    return scoring


def _record_promotion(run: RunDir, reason: str, scoring: dict[str, Any], listing: str) -> None:
    report = json.loads((run / "run_report.json").read_text())
    report.update(promoted=True, promotion=f"promoted to champion after the sweep: {reason}", scoring=scoring)
    run.write_json("run_report.json", report)
    promoted = f"\n## Promotion\n\n- promoted to champion after the sweep: {reason}\n{listing}\n"
    run.write_text("gate_report.md", (run / "gate_report.md").read_text() + promoted)


@flow(name="keel-sweep-promote", log_prints=True)
def promote_job(
    spec_path: str, overrides: list[str], conf_dirs: list[str] | None, tag: str, run_dir: str, reason: str
) -> dict[str, Any]:
    """Promote a sweep job's bundle, then do what a promoting `keel run` does next: the high-risk list.

    The job's data is prepared again (deterministic: same spec, same source) rather than kept
    in memory for every job of the sweep.
    """
    loaded = load_spec(spec_path, overrides, [Path(d) for d in conf_dirs or []])
    store = bundle_store(loaded)
    promote(loaded.spec.name, tag, reason=reason, store=store)
    run = RunDir(Path(run_dir))
    scoring = batch_score(loaded, tag, prepare_data(loaded.spec, loaded.base_dir), run, store)
    listing = f"- high-risk list: {scoring['listed']:,} of {scoring['scored']:,} entities: `{scoring['high_risk_csv']}`"
    _record_promotion(run, reason, scoring, listing)
    return scoring


def rank(rows: list[dict[str, Any]], metric: str, task: str = "binary_classification") -> dict[str, dict[str, Any]]:
    """Per spec name, the gate-passed job with the best `metric` (`value`: cross-validated for a tabular job);
    ties go to the earlier job."""
    info = metric_info(metric, task)
    higher = info.higher_is_better if info else True
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        value = row.get("value")
        if row["status"] != "ok" or value is None or math.isnan(value):
            continue
        current = best.get(row["spec_name"])
        if current is None or (value > current["value"] if higher else value < current["value"]):
            best[row["spec_name"]] = row
    return best


def _row(
    job: dict[str, Any], status: str, report: dict[str, Any] | None = None, metric: str = "", reason: str = ""
) -> dict[str, Any]:
    """One line of the summary: what the job changed, how it ended, where to look (same keys for every job)."""
    row: dict[str, Any] = {
        "job": job["index"],
        "overrides": job["swept"],
        "all_overrides": job["overrides"],
        "status": status,
        "reason": reason,
        "spec_name": None,
        "value": None,
        "ranked_by": None,
        "test_value": None,
        "gate_passed": None,
        "failed_gates": [],
        "model_family": None,
        "bundle": None,
        "run_dir": None,
        "metrics": {},
        "best": False,
        "promoted": False,
        "worker": None,  # runtime.dask.sweep jobs: the worker process that ran the job
        "started": None,
        "finished": None,
    }
    if report is None:
        return row
    return {
        **row,
        "spec_name": report["spec_name"],
        **_ranked_value(report, metric),
        "test_value": report["metrics"].get(metric),
        "gate_passed": report["gates"]["passed"],
        # a non-blocking "insufficient data" gate (docs/adr/0015) neither passed nor failed: not listed
        "failed_gates": [
            g["name"]
            for g in report["gates"]["gates"]
            if not g["passed"] and not (g.get("insufficient") and not g["blocking"])
        ],
        "model_family": report["model_family"],
        "bundle": report["bundle"],
        "run_dir": report["run_dir"],
        "metrics": report["metrics"],
    }


def _ranked_value(report: dict[str, Any], metric: str) -> dict[str, Any]:
    """What --promote-best ranks on: the chosen model's cross-validated `metric` (mean over folds of the
    training split); a job without cross-validation (recommendation) is ranked on its test metric."""
    chosen = next((r for r in report.get("selection") or [] if r.get("selected")), None)
    if chosen is not None and metric in (chosen.get("metrics") or {}):
        return {"value": chosen["metrics"][metric], "ranked_by": "cross-validated"}
    return {"value": report["metrics"].get(metric), "ranked_by": "test"}


def _status(rows: list[dict[str, Any]]) -> str:
    statuses = {row["status"] for row in rows}
    return "error" if "error" in statuses else "failed" if "failed" in statuses else "ok"


def _sweep_dir(root: Path, spec_path: str, jobs: list[dict[str, Any]]) -> Path:
    """`runs/<name>/<UTC time>-sweep-<hash of spec path and jobs>/`, beside the jobs' run dirs."""
    digest = hashlib.sha256(json.dumps([spec_path, jobs], sort_keys=True).encode()).hexdigest()[:8]
    path = root / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-sweep-{digest}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def verdict(row: dict[str, Any]) -> str:
    """The gate column: passed, or which gates failed, or why the job did not get that far."""
    if row["bundle"] is None:
        reason = row["reason"]
        return reason if len(reason) <= 80 else reason[:77] + "..."
    return "passed" if row["gate_passed"] else "FAILED: " + ", ".join(row["failed_gates"])


def table(summary: dict[str, Any]) -> list[list[str]]:
    """Header plus one row per job, shared by the terminal table and the Markdown report."""
    rows = [["job", "overrides", "status", f"ranked {summary['metric']}", f"test {summary['metric']}", "gates"]]
    rows[0] += ["bundle", ""]
    for row in summary["jobs"]:
        value, test = row.get("value"), row.get("test_value")
        cv = " (cv)" if row.get("ranked_by") == "cross-validated" else ""
        ranked = "n/a" if value is None else f"{value:.4f}{cv}"
        note = "promoted" if row["promoted"] else "best" if row["best"] else ""
        rows.append(
            [
                str(row["job"]),
                " ".join(row["overrides"]) or "-",
                row["status"],
                ranked,
                "n/a" if test is None else f"{test:.4f}",
                verdict(row),
                row["bundle"] or "-",
                note,
            ]
        )
    return rows


def render_text(summary: dict[str, Any]) -> str:
    rows = table(summary)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(0, f"sweep {summary['sweep']}: {len(summary['jobs'])} jobs, {summary['status']}")
    lines += _closing(summary)
    return "\n".join(lines)


def render_markdown(summary: dict[str, Any]) -> str:
    rows = table(summary)
    how = f"ranked by {summary['metric']} cross-validated on each job's training split (cv)"
    lines = [f"# Sweep {summary['sweep']}", "", f"`{summary['spec']}`, {how}.", ""]
    lines += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows[1:]]
    return "\n".join([*lines, "", *_closing(summary), ""])


def _closing(summary: dict[str, Any]) -> list[str]:
    lines = []
    for name, tag in summary["best"].items():
        if tag in summary["promoted"]:
            lines.append(f"{name}: promoted the best gate-passed job, {tag}")
        else:
            lines.append(
                f"{name}: best gate-passed job is {tag}; nothing promoted "
                f"(--promote-best, or: keel models promote {summary['spec']} --tag {tag})"
            )
    if not summary["best"]:
        lines.append("no job passed its gates; nothing promoted")
    lines.append(f"report: {summary['sweep_dir']}/sweep_report.md")
    return lines
