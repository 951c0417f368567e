"""A real Prometheus (Debian `prometheus`) scrapes a real `storyloom run` server over loopback, and PromQL
over what it stored returns the Storyloom series."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import ServerProcess, free_port, running_server, seed_author, wait_for

PROMETHEUS = "/usr/bin/prometheus"

pytestmark = pytest.mark.slow


@pytest.fixture
def prometheus_binary() -> str:
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus not installed: make test installs Debian prometheus when run as root")
    return PROMETHEUS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with running_server(tmp_path / "storyloom") as srv:
        yield srv


@pytest.fixture
def prometheus(prometheus_binary: str, server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "prometheus"
    folder.mkdir()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "storyloom",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (folder / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {proc.returncode}:\n{_tail(folder)}")
            try:
                return httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=60, message="prometheus /-/ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
        shutil.rmtree(folder / "data", ignore_errors=True)


def _tail(folder: Path) -> str:
    path = folder / "prometheus.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def query(url: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5.0)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_storyloom(server: ServerProcess, prometheus: str) -> None:
    persona_id, agent_id = seed_author(server)
    created = server.post(
        "/api/fiction/plans",
        {
            "name": "Scraped",
            "premise": "Lamplighters keep the dark at bay.",
            "persona_id": persona_id,
            "agent_id": agent_id,
        },
    )
    assert created.status_code == 201, created.text

    series = wait_for(
        lambda: query(prometheus, "storyloom_backlog_items"),
        timeout=60,
        interval=0.25,
        message="Prometheus to store storyloom_backlog_items",
    )
    assert {s["metric"]["status"] for s in series} >= {"pending", "complete", "in_progress"}
    assert all(s["metric"]["job"] == "storyloom" for s in series)

    total = wait_for(
        lambda: query(prometheus, "sum(storyloom_backlog_items) > 0"),
        timeout=60,
        interval=0.25,
        message="sum(storyloom_backlog_items) > 0",
    )
    assert float(total[0]["value"][1]) >= 3  # the plan's three seeded items

    targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5.0).json()["data"]["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    # the other families are exposed with their types (a histogram shows up once a phase has run)
    assert query(prometheus, "storyloom_backlog_oldest_ready_age_seconds")
    assert wait_for(
        lambda: query(prometheus, "sum by (phase) (storyloom_phase_duration_seconds_count)"),
        timeout=60,
        interval=0.25,
        message="a phase duration histogram",
    )
