"""A real Prometheus (Debian `prometheus`) for end-to-end tests: its own config, data folder and port."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import free_port, wait_for

PROMETHEUS = "/usr/bin/prometheus"


def prometheus_binary() -> str:
    """The binary, or a skip that says how to get it."""
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus not installed: make test installs Debian prometheus when run as root")
    return PROMETHEUS


class PrometheusProcess:
    """`prometheus` on a free loopback port with `config` (and `rules`, written beside it)."""

    def __init__(
        self,
        folder: Path,
        config: dict[str, Any],
        *,
        rules: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if rules is not None:
            (folder / "rules.yml").write_text(yaml.safe_dump(rules))
            config = {**config, "rule_files": [str(folder / "rules.yml")]}
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            prometheus_binary(),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
            *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusProcess:
        with (self.folder / "prometheus.log").open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout=60, message="prometheus /-/ready")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def log_tail(self) -> str:
        path = self.folder / "prometheus.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        """Terminate (SIGTERM) and wait; kill only if it does not exit."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.folder / "data", ignore_errors=True)

    def query(self, promql: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5.0)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
