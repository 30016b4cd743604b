"""runtime.prefect_api_url: applied for one command, checked before any flow starts, env wins."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pipeline.cli import main
from pipeline.prefect_target import PrefectUnreachable, prefect_api


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/api/health"
        self.send_response(200 if ok else 404)
        self.end_headers()
        self.wfile.write(b"true" if ok else b"no")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api"
    server.shutdown()


def test_spec_url_applies_inside_and_is_restored_after(health_server: str, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    import prefect  # noqa: F401 - the in-process path (tests, sweeps) uses temporary settings
    from prefect.settings import PREFECT_API_URL

    before = PREFECT_API_URL.value()
    with prefect_api(health_server) as url:
        assert url == health_server
        assert PREFECT_API_URL.value() == health_server
    assert PREFECT_API_URL.value() == before


def test_environment_wins_over_the_spec(monkeypatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    with prefect_api("http://127.0.0.1:2/api") as url:  # not even checked: the operator's setting rules
        assert url == "http://127.0.0.1:1/api"


def test_absent_means_ephemeral(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # a project with no `keel server` of its own (the checkout may have one up)
    with prefect_api(None) as url:
        assert url is None


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/api", "ftp://127.0.0.1/api"])
def test_unreachable_or_odd_url_is_refused(url: str, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(PrefectUnreachable, match=r"runtime\.prefect_api_url"), prefect_api(url):
        pytest.fail("must not enter")


def test_keel_run_with_a_dead_server_exits_2_before_any_flow(repo, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(
            [
                "run",
                str(repo / "specs/streamflow_churn.yaml"),
                "runtime.prefect_api_url=http://127.0.0.1:9/api",
                f"runtime.runs_dir={tmp_path / 'runs'}",
            ]
        )
    assert code == 2
    assert "no Prefect server answers at http://127.0.0.1:9/api" in err.getvalue()
    assert not (tmp_path / "runs").exists()
