"""SIGHUP to a real `storyloom run`: a good config file takes effect, keeping the process's own URL;
a bad one is refused with its YAML path in the log and the last good config stays in force."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow

SECRET = Path(__file__).resolve().parents[2] / "docs" / "examples" / "secrets" / "ops-webhook.whsec"


def config(receiver: str) -> dict[str, Any]:
    """No `public_url`: the server serves on a test port and must keep using it after a reload."""
    return {
        "demo_receiver": True,
        "alerting": {
            "receivers": [{"name": receiver, "url": "http://127.0.0.1:9/hooks", "secret_file": str(SECRET)}],
            "route": {"receiver": receiver},
        },
    }


def receivers(server: ServerProcess) -> dict[str, str]:
    return {r["name"]: r["url"] for r in server.get("/api/alert-routes")["receivers"]}


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.logs().splitlines() if line.startswith("{")]


def test_sighup_reloads_a_good_config_and_keeps_the_last_good_one_on_error(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", config=config("first"), pin_public_url=False).start()
    try:
        assert set(receivers(server)) == {"first", "demo-inbox"}

        server.write_config(config("second"))
        server.send_signal(signal.SIGHUP)
        reloaded = wait_for(
            lambda: "second" in receivers(server) and receivers(server), message="the new receiver"
        )
        assert set(reloaded) == {"second", "demo-inbox"}
        assert reloaded["demo-inbox"] == f"{server.url}/…"  # still this process's port, not :8700
        [fingerprint] = server.post("/api/v2/alerts", [{"labels": {"alertname": "Reloaded"}}]).json()["fired"]
        alert = server.get(f"/api/alerts/{fingerprint}")
        assert alert["runbook_url"] == f"{server.url}/runbooks/Reloaded"

        routed_to_nowhere = config("third")
        routed_to_nowhere["alerting"]["route"]["receiver"] = "ghost"
        server.write_config(routed_to_nowhere)
        server.send_signal(signal.SIGHUP)
        refusal = wait_for(
            lambda: [e for e in log_lines(server) if e.get("event", "").startswith("SIGHUP reload refused")],
            message="the refusal in the log",
        )
        assert refusal[0]["level"] == "error"
        [problem] = refusal[0]["problems"]
        assert problem.startswith("alerting.route.receiver: unknown receiver 'ghost'")
        assert receivers(server) == reloaded
    finally:
        server.stop()
