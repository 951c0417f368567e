"""`storyloom run --demo --host 0.0.0.0`: starts, and delivers to its own demo receiver over loopback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow


def test_a_demo_on_a_wildcard_host_delivers_to_its_own_inbox(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", demo=True, host="0.0.0.0").start()
    try:
        loopback = f"http://127.0.0.1:{server.port}"
        receivers = {r["name"]: r for r in server.get("/api/alert-routes")["receivers"]}
        assert receivers["demo-inbox"]["url"] == f"{loopback}/…"
        assert f"Storyloom console: {loopback}/" in server.logs()

        server.post("/api/v2/alerts", [{"labels": {"alertname": "WildcardCheck"}}]).raise_for_status()

        def received() -> list[dict[str, Any]]:
            return [
                alert
                for message in server.get("/api/demo/inbox")
                if message["signature_valid"]
                for alert in message["body"]["alerts"]
                if alert["alert_id"] == "WildcardCheck"
            ]

        [alert] = wait_for(received, timeout=30, message="the demo inbox to get WildcardCheck")
        assert alert["runbook_url"] == f"{loopback}/runbooks/WildcardCheck"
    finally:
        server.stop()
