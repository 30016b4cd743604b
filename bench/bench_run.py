"""Benchmark: `keel run` end to end vs the same steps as a plain script, both as fresh subprocesses.

Usage: python bench/bench_run.py [--rows 1000000] [--quick] [--tiny 2000] [--no-server] [--no-warm] [--startup-only]
       [--full-spec]

Both sides read one synthetic StreamFlow table from Parquet (written here with the spec's own
generator, seed and scenario: the table `data.rows=N` would generate), validate it against the
spec's contract, add the derived features, split by time, train LightGBM with the parameters Keel
derives from the spec (early stopping on the valid split), compute test metrics, save the model,
and score every subscriber's latest snapshot with top-3 reasons into Parquet + CSV. The plain side
is bench/plain_churn.py (pandas, numpy, LightGBM, scikit-learn; no Keel import). Keel also does
what the plain script does not: Prefect flow/task runs, the run directory, the reference profile,
calibration and lift tables, gates vs the champion, the hashed bundle registry and readable reasons.
The spec's masked-churner list (a second table) is switched off, as the plain script has none; so are
its fairness and causal sections (bootstrap group metrics, treatment effects on a second table, their
chart) and the fairness gates they feed, unless --full-spec.

Figures: the fixed start-up cost (keel run minus the plain script on a `--tiny` table) with the
default ephemeral Prefect API and with a Prefect server already running (PostgreSQL on
127.0.0.1:5432 in a database created and dropped here, else SQLite) and then also with the warm
runner `keel server start` starts beside it (pipeline/warm/, ADR 0034), and the wall-time ratio at
`--rows`. Every run gets a fresh run directory and BentoML home under a temporary directory, so
nothing in the repository or ~/.prefect is touched. Prints figures (wall time, and the CPU time of the
same processes, steadier on a busy box, with the load average); asserts nothing about speed.
--startup-only measures only the start-up with a server running (~2 min).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.data.synthetic.streamflow import generate  # noqa: E402
from pipeline.models.lightgbm_model import LightGBMTabularModel  # noqa: E402
from pipeline.spec.load import LoadedSpec, load_spec  # noqa: E402

SPEC = REPO / "specs" / "streamflow_churn.yaml"
PLAIN = REPO / "bench" / "plain_churn.py"
BIN = Path(sys.executable).parent
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Bench:
    """One temporary directory: the tables, run dirs, BentoML homes and the Prefect home of every run."""

    def __init__(self, root: Path, full_spec: bool = False) -> None:
        self.root = root
        self.count = 0
        self.loaded = load_spec(SPEC)
        # the masked-churner list reads a second table the plain script does not have: off for this bench
        self.extra = ["~masked_churners"] if getattr(self.loaded.spec, "masked_churners", None) else []
        spec = self.loaded.spec
        if not full_spec and (spec.fairness is not None or spec.causal is not None):
            # neither does the plain script compute group metrics with 500 bootstrap replicates, estimate
            # the offers' treatment effect on a second (synthetic) table or draw their chart: same job
            # means those sections off too, and the gate set without the fairness gates they feed
            self.extra += ["~fairness", "~causal", "gates=[churn]"]
        load_spec(SPEC, self.extra)  # the same-job overrides still compose (a spec change fails here, not later)
        self.cpu: dict[str, list[float]] = {}
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        self.env |= {"PREFECT_HOME": str(root / "prefect-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        self.env |= {"GX_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"}

    def table(self, rows: int) -> Path:
        """The spec's synthetic table at `rows` rows, as Parquet (outside every timing)."""
        path = self.root / f"streamflow-{rows}.parquet"
        if not path.exists():
            data = self.loaded.spec.data
            generate(rows, data.seed, data.scenario).to_parquet(path, index=False)
        return path

    def keel(self, data: Path, api_url: str | None = None) -> tuple[float, dict[str, Any]]:
        """Wall time of `keel run ... --json` in a fresh process, and its JSON report."""
        self.count += 1
        overrides = [
            f"data.source={data}",
            f"runtime.runs_dir={self.root / 'runs'}",
            f"runtime.bentoml_home={self.root / f'bentoml-{self.count}'}",
            *self.extra,
        ]
        env = self.env | ({"PREFECT_API_URL": api_url} if api_url else {})
        cmd = [str(BIN / "keel"), "run", str(SPEC), *overrides, "--json"]
        wall, done = self._timed("keel" + (" server" if api_url else ""), cmd, env)
        if done.returncode not in (0, 1):
            raise RuntimeError(f"keel run exited {done.returncode}:\n{done.stderr[-3000:]}")
        return wall, json.loads(done.stdout.strip().splitlines()[-1])

    def plain(self, data: Path, config: Path) -> tuple[float, dict[str, Any]]:
        """Wall time of bench/plain_churn.py in a fresh process, and its JSON summary."""
        self.count += 1
        cmd = [sys.executable, str(PLAIN), str(config), str(data), str(self.root / f"plain-{self.count}")]
        wall, done = self._timed("plain", cmd, self.env)
        if done.returncode != 0:
            raise RuntimeError(f"plain script exited {done.returncode}:\n{done.stderr[-3000:]}")
        return wall, json.loads(done.stdout.strip().splitlines()[-1])

    def _timed(self, label: str, cmd: list[str], env: dict[str, str]) -> tuple[float, Any]:
        """Wall time of one fresh process; its CPU time (user + sys) goes to self.cpu[label]."""
        before = os.times()
        start = time.perf_counter()
        done = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        self.cpu.setdefault(label, []).append(cpu)
        return wall, done

    def cpu_best(self, label: str, last: int) -> float:
        """The smallest CPU time of the last `last` runs under `label` (the timed ones, not the warm-up)."""
        return min(self.cpu[label][-last:])


def plain_config(loaded: LoadedSpec, path: Path) -> Path:
    """What the plain script needs from the composed spec, including Keel's own LightGBM parameter mapping."""
    spec = loaded.spec
    if spec.model.family != "lightgbm" or spec.candidates:
        raise SystemExit("bench_run compares one LightGBM model: the spec declares another family or candidates")
    params = spec.model.params
    lightgbm = LightGBMTabularModel(spec.model.features, params, seed=spec.data.seed).training_params(np.array([0, 1]))
    config = {
        "entity_id": spec.data.entity_id,
        "timestamp": spec.data.timestamp,
        "label": spec.data.label,
        "positive": spec.data.positive,
        "features": list(spec.model.features),
        "contract": {name: rule.model_dump() for name, rule in spec.contract.columns.items()},
        "max_quarantine_fraction": spec.contract.max_quarantine_fraction,
        "valid_fraction": spec.data.split.valid_fraction,
        "test_fraction": spec.data.split.test_fraction,
        "lightgbm": lightgbm,
        "n_estimators": params.n_estimators,
        "early_stopping_rounds": params.early_stopping_rounds,
        "threshold": spec.evaluation.threshold,
        "top_k": spec.evaluation.top_k,
    }
    path.write_text(json.dumps(config, default=str))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _database(root: Path) -> tuple[str, str, Any]:
    """A fresh PostgreSQL database (connection URL, description, dropper), or SQLite when that fails."""
    name = f"keel_bench_{os.getpid()}"
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"CREATE DATABASE {name}")

        def drop() -> None:
            with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

        return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", f"PostgreSQL database {name}", drop
    except Exception as exc:  # no server, no role: SQLite still shows what a running server saves
        print(f"  (PostgreSQL unavailable: {type(exc).__name__}: {exc}; using SQLite)")
        return f"sqlite+aiosqlite:///{root / 'prefect-server.db'}", "SQLite", lambda: None


@contextlib.contextmanager
def prefect_server(bench: Bench) -> Iterator[tuple[str, str, float]]:
    """`prefect server start` on a free loopback port; yields (api url, database, seconds to healthy)."""
    db_url, described, drop = _database(bench.root)
    port = free_port()
    env = bench.env | {
        "PREFECT_HOME": str(bench.root / "prefect-server-home"),
        "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
        "PREFECT_UI_ENABLED": "false",
    }
    log = open(bench.root / "prefect-server.log", "w")  # noqa: SIM115 - closed below
    cmd = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api = f"http://127.0.0.1:{port}/api"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited {proc.returncode}: see {log.name}")
            if time.perf_counter() - start > 180:
                raise RuntimeError(f"prefect server not healthy in 180 s: see {log.name}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{api}/health", timeout=2) as response:
                if response.status == 200:
                    break
            time.sleep(0.25)
        yield api, described, time.perf_counter() - start
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        log.close()
        drop()


def flow_runs(api: str) -> int:
    """Flow runs the server has recorded: proof that `keel run` used it rather than an ephemeral API."""
    request = urllib.request.Request(
        f"{api}/flow_runs/count", data=b"{}", headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(json.load(response))


def _load() -> str:
    """The 1/5/15-minute load average, printed with every figure (a busy box slows both sides unevenly)."""
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def best(runs: list[tuple[float, dict[str, Any]]]) -> tuple[float, dict[str, Any]]:
    return min(runs, key=lambda run: run[0])


def describe(keel: dict[str, Any], plain: dict[str, Any]) -> str:
    """Same job? Quarantine, test AUC, listed subscribers of both sides."""
    scoring = keel.get("scoring") or {}
    return (
        f"keel: {keel['status']}, quarantined {keel['report']['quarantined']:,}, auc {keel['metrics']['auc']:.4f}, "
        f"listed {scoring.get('listed', 0):,}; plain: quarantined {plain['quarantined']:,}, "
        f"auc {plain['metrics']['auc']:.4f}, listed {plain['listed']:,}, {plain['trees']} trees"
    )


def warm_runs(bench: Bench, tiny: Path, api: str, repeat: int) -> tuple[float, list[float]]:
    """`keel run` handed to a warm runner started in the runs' directory: best wall time and every wall time.

    The CPU time is the forked child's, which this process cannot see: wall time only."""
    from pipeline.warm.control import start_runner, stop_runner

    start_runner(bench.root)
    try:
        bench.keel(tiny, api)  # warm-up, as for the cold runs
        runs = [bench.keel(tiny, api) for _ in range(repeat)]
    finally:
        stop_runner(bench.root)
    return best(runs)[0], [t for t, _ in runs]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the large table")
    ap.add_argument("--quick", action="store_true", help="100k rows instead of --rows")
    ap.add_argument("--tiny", type=int, default=2000, help="rows of the table that measures start-up")
    ap.add_argument("--repeat", type=int, default=3, help="best of N for the tiny runs")
    ap.add_argument("--no-server", action="store_true", help="skip the run against a running Prefect server")
    ap.add_argument("--no-warm", action="store_true", help="skip the runs served by the warm runner")
    ap.add_argument(
        "--startup-only",
        action="store_true",
        help="only the start-up with a Prefect server running (no ephemeral API, no large table; ~1-2 min)",
    )
    ap.add_argument(
        "--full-spec",
        action="store_true",
        help="keep the spec's fairness and causal sections (and their gates) on: Keel then does more than the plain "
        "script (bootstrap group metrics, treatment effects, a chart)",
    )
    args = ap.parse_args()
    if args.startup_only and args.no_server:
        ap.error("--startup-only measures the start-up with a running server: drop --no-server")
    rows = 100_000 if args.quick else args.rows
    with tempfile.TemporaryDirectory(prefix="keel-bench-run-") as tmp:
        bench = Bench(Path(tmp), args.full_spec)
        config = plain_config(bench.loaded, bench.root / "plain-config.json")
        tiny = bench.table(args.tiny)
        print(
            f"cores: {os.cpu_count()}; load average {_load()}; each run a fresh subprocess; "
            f"tiny runs best of {args.repeat}; keel overrides: {' '.join(bench.extra)}"
        )
        # untimed warm-up: the fresh Prefect home's database migrations, page cache of the libraries
        bench.plain(tiny, config)
        t_plain, plain = best([bench.plain(tiny, config) for _ in range(args.repeat)])
        if not args.startup_only:
            bench.keel(tiny)
            t_keel, keel = best([bench.keel(tiny) for _ in range(args.repeat)])
            print(
                f"start-up, ephemeral Prefect ({args.tiny:,} rows): keel run {t_keel:.2f} s, plain {t_plain:.2f} s "
                f"-> fixed cost {t_keel - t_plain:.2f} s; CPU {bench.cpu_best('keel', args.repeat):.2f} s vs "
                f"{bench.cpu_best('plain', args.repeat):.2f} s"
            )
        if not args.no_server:
            with prefect_server(bench) as (api, described, started):
                bench.keel(tiny, api)  # warm-up: the flow and its tasks get registered
                runs = [bench.keel(tiny, api) for _ in range(args.repeat)]
                t_server, _ = best(runs)
                walls = [t for t, _ in runs]
                cpu_keel = bench.cpu_best("keel server", args.repeat)  # before the warm runs add theirs
                if not args.no_warm:
                    t_warm, warm_walls = warm_runs(bench, tiny, api, args.repeat)
                recorded = flow_runs(api)
            cpu_plain = bench.cpu_best("plain", args.repeat)
            print(
                f"start-up, Prefect server running ({described}, up in {started:.1f} s, {recorded} flow runs "
                f"recorded): keel run {t_server:.2f} s, plain {t_plain:.2f} s -> fixed cost {t_server - t_plain:.2f} s;"
                f" CPU {cpu_keel:.2f} s vs {cpu_plain:.2f} s (load average {_load()}); keel walls "
                + " ".join(f"{t:.2f}" for t in walls)
            )
            if not args.no_warm:
                print(
                    f"start-up, Prefect server + warm runner (`keel server start` starts both; ADR 0034): keel run "
                    f"{t_warm:.2f} s, plain {t_plain:.2f} s -> fixed cost {t_warm - t_plain:.2f} s (target < 1.5 s); "
                    f"load average {_load()}; keel walls " + " ".join(f"{t:.2f}" for t in warm_walls)
                )
        if args.startup_only:
            return
        large = bench.table(rows)
        t_plain, plain = bench.plain(large, config)
        t_keel, keel = bench.keel(large)
        print(
            f"{rows:,} rows: keel run {t_keel:.1f} s, plain {t_plain:.1f} s, ratio keel/plain {t_keel / t_plain:.2f}x "
            f"(ephemeral Prefect)"
        )
        print(f"  {describe(keel, plain)}")
        print("  plain steps (s): " + ", ".join(f"{k} {v:.2f}" for k, v in plain["steps"].items()))


if __name__ == "__main__":
    main()
