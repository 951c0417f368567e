"""CLI parity for alerting against a real server and a real receiver: `alerts list/show`,
`silences add/list/expire`, `deliveries list/replay`; errors print the API's problem detail and exit 1."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.receivers import ReceiverServer, Reply, standard_webhook
from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"cli-alerting-test-secret-0123456").decode()
SECRET_ENV = "CLI_ALERTING_SECRET"
DISK_FULL = {"alertname": "DiskFull", "plan_id": "plan_cli", "severity": "error"}


@pytest.fixture
def receiver() -> Iterator[ReceiverServer]:
    with ReceiverServer(standard_webhook(SECRET)) as server:
        yield server


@pytest.fixture
def server(tmp_path: Path, receiver: ReceiverServer) -> Iterator[ServerProcess]:
    config = {
        "alerting": {
            "receivers": [
                {
                    "name": "ops",
                    "url": receiver.url_for("/hooks/ops"),
                    "secret_env": SECRET_ENV,
                    "retry": {"schedule": ["0s", "0s"], "max_age": "1h"},
                }
            ],
            "route": {"receiver": "ops", "group_by": ["alert_id"], "group_wait": "0s"},
        }
    }
    process = ServerProcess(tmp_path / "data", config=config, env={SECRET_ENV: SECRET}).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def operator(server: ServerProcess) -> str:
    return server.create_token("operator", "cli-op")


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], status: int, detail: str) -> None:
    """The API's status and problem detail on stderr, exit code 1, nothing on stdout."""
    assert result.returncode == 1, result.stdout
    assert f"{status} {detail}" in " ".join(result.stderr.split()), result.stderr
    assert result.stdout == ""


def table_row(output: str, key: str) -> list[str]:
    """The cells of the piped (tab-separated) line that contains `key`."""
    line = next(line for line in output.splitlines() if key in line)
    return line.split("\t")


def test_alerts_list_and_show(server: ServerProcess, operator: str) -> None:
    [fingerprint] = server.post("/api/v2/alerts", [{"labels": DISK_FULL}]).json()["fired"]

    listed = ok(server.cli("alerts", "list", token=operator))
    assert table_row(listed, fingerprint)[:5] == [
        fingerprint,
        "DiskFull",
        "firing",
        "error",
        "plan_id=plan_cli",
    ]
    as_json = json.loads(ok(server.cli("alerts", "list", "--output", "json", token=operator)))
    assert [a["fingerprint"] for a in as_json] == [fingerprint]
    assert ok(server.cli("alerts", "list", "--status", "resolved", token=operator)) == ""

    shown = json.loads(ok(server.cli("alerts", "show", fingerprint, "--output", "json", token=operator)))
    assert shown["fingerprint"] == fingerprint and shown["labels"]["plan_id"] == "plan_cli"
    assert [h["status"] for h in shown["history"]] == ["firing"]
    human = [
        line.split("\t")
        for line in ok(server.cli("alerts", "show", fingerprint, token=operator)).splitlines()
    ]
    assert ["fingerprint", fingerprint] in human and ["alert_id", "DiskFull"] in human
    assert ["labels", "plan_id", "plan_cli"] in human
    assert [line[2] for line in human if line[0] == "history"] == ["firing"]

    refused(
        server.cli("alerts", "show", "0000000000000000", token=operator),
        404,
        "no alert with fingerprint '0000000000000000'",
    )
    refused(server.cli("alerts", "list", token="sl_not_a_token"), 401, "invalid or revoked token")


def test_silences_add_list_and_expire(server: ServerProcess, operator: str) -> None:
    silence_id = ok(
        server.cli(
            "silences",
            "add",
            "--matcher",
            'alertname="DiskFull"',
            "--duration",
            "1h",
            "--comment",
            "swapping the disk",
            token=operator,
        )
    ).strip()
    assert silence_id.startswith("sil_")
    row = table_row(ok(server.cli("silences", "list", token=operator)), silence_id)
    assert row[:3] == [silence_id, "active", 'alertname="DiskFull"']
    assert row[4:] == ["cli-op", "swapping the disk"]

    assert ok(server.cli("silences", "expire", silence_id, token=operator)).strip() == f"expired {silence_id}"
    [expired] = json.loads(ok(server.cli("silences", "list", "--output", "json", token=operator)))
    assert expired["id"] == silence_id and expired["status"] == "expired"
    assert table_row(ok(server.cli("silences", "list", token=operator)), silence_id)[1] == "expired"

    refused(
        server.cli("silences", "add", "--matcher", "nonsense", "--comment", "x", token=operator),
        422,
        "matchers.0:",
    )
    refused(server.cli("silences", "expire", "sil_missing", token=operator), 404, "no silence 'sil_missing'")


def test_deliveries_list_and_replay(server: ServerProcess, operator: str, receiver: ReceiverServer) -> None:
    receiver.script(Reply(400), Reply(400))  # the first notification and its one retry: dead
    server.post("/api/v2/alerts", [{"labels": DISK_FULL}])

    def disk_full(status: str) -> list[dict[str, Any]]:
        """DiskFull's deliveries (the dead letter also raises `delivery:failing`, which has its own)."""
        rows = server.get("/api/deliveries", status=status)
        return [d for d in rows if d["alert_ids"] == ["DiskFull"]]

    [dead] = wait_for(lambda: disk_full("dead"), timeout=30, message="the refused delivery to go dead")
    row = table_row(ok(server.cli("deliveries", "list", "--status", "dead", token=operator)), dead["id"])
    assert row[:6] == [dead["id"], "ops", "dead", "firing", "2", "400"]

    replayed = ok(server.cli("deliveries", "replay", dead["id"], token=operator)).split()
    assert replayed[:3] == ["replaying", dead["id"], "as"] and replayed[3].startswith("dlv_")
    [delivered] = wait_for(lambda: disk_full("delivered"), timeout=30, message="the replay to be delivered")
    assert delivered["id"] == replayed[3] and delivered["webhook_id"] == dead["webhook_id"]
    listed = json.loads(
        ok(server.cli("deliveries", "list", "--receiver", "ops", "-o", "json", token=operator))
    )
    assert {(d["id"], d["status"]) for d in listed} >= {(dead["id"], "dead"), (delivered["id"], "delivered")}
    [first, retry, replay] = [
        r for r in receiver.requests if r.json["group_labels"] == {"alert_id": "DiskFull"}
    ]
    assert first.headers["webhook-id"] == retry.headers["webhook-id"] == replay.headers["webhook-id"]

    refused(
        server.cli("deliveries", "replay", "dlv_missing", token=operator), 404, "no delivery 'dlv_missing'"
    )
