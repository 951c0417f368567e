"""Durability under a storm: `storyloom run` is killed -9 three times while 2,000 alerts are posted.

Every alert whose POST was acknowledged reaches the receiver, a notification sent again after a crash
keeps its `webhook-id`, and an unacknowledged POST is stored whole or not at all (one transaction).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx
import pytest

from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ServerProcess, free_port, wait_for

pytestmark = pytest.mark.slow

ALERTS, BATCH, KILLS = 2000, 100, 3


class Poster(threading.Thread):
    """Posts the storm batch after batch; a batch whose POST fails is left unacknowledged (not resent)."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.acked: list[list[str]] = []
        self.unacked: list[list[str]] = []
        self.lock = threading.Lock()

    def run(self) -> None:
        with httpx.Client(
            base_url=self.server.url, headers=dict(self.server.client.headers), timeout=30
        ) as c:
            for first in range(0, ALERTS, BATCH):
                seqs = [str(n) for n in range(first, first + BATCH)]
                body = [{"labels": {"alertname": "storm", "seq": seq}} for seq in seqs]
                try:
                    ok = c.post("/api/v2/alerts", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with self.lock:
                    (self.acked if ok else self.unacked).append(seqs)
                if not ok:  # the server is down: wait for its restart, then go on with the next batch
                    wait_for(self._ready, timeout=90, message="the restarted server")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.server.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def acked_count(self) -> int:
        with self.lock:
            return sum(len(b) for b in self.acked)


def test_acknowledged_alerts_survive_three_kills_and_resends_keep_their_webhook_id(tmp_path: Path) -> None:
    receiver = ReceiverProcess(free_port(), tmp_path / "received.jsonl").start()
    config = {
        "alerting": {
            "receivers": [{"name": "ops", "url": receiver.url, "retry": {"schedule": ["0s", "1s", "2s"]}}],
            "route": {"receiver": "ops", "group_by": ["..."], "group_wait": "0s", "group_interval": "1m"},
        }
    }
    server = ServerProcess(tmp_path / "data", config=config).start()
    poster = Poster(server)
    try:
        poster.start()
        for kill in range(1, KILLS + 1):
            wait_for(
                lambda k=kill: poster.acked_count() >= k * ALERTS // (KILLS + 1),
                timeout=120,
                interval=0.01,
                message=f"acknowledged alerts before kill {kill}",
            )
            server.kill()  # mid-storm: the poster is between or inside POSTs
            server.start()
        poster.join(timeout=180)
        assert not poster.is_alive(), "the storm did not finish"
        acked = {seq for batch in poster.acked for seq in batch}

        def arrived() -> dict[str, set[str]]:
            ids: dict[str, set[str]] = {}
            for record in receiver.received():
                if not isinstance(record["body"], dict):  # a request cut short by a kill
                    continue
                for alert in record["body"].get("alerts", []):
                    ids.setdefault(alert["labels"]["seq"], set()).add(record["headers"]["webhook-id"])
            return ids

        wait_for(
            lambda: acked <= set(arrived()), timeout=240, interval=0.5, message="every acknowledged alert"
        )
        assert len(acked) >= ALERTS // 2
        resent_with_new_id = {seq: ids for seq, ids in arrived().items() if len(ids) > 1}
        assert resent_with_new_id == {}

        database = sqlite3.connect(tmp_path / "data" / "storyloom.db")
        stored = {
            seq
            for (seq,) in database.execute(
                "SELECT json_extract(labels, '$.seq') FROM alerts WHERE alert_id='storm'"
            )
        }
        database.close()
        assert acked <= stored
        for batch in poster.unacked:
            assert set(batch) <= stored or not set(batch) & stored, f"batch {batch[0]}… half-stored"
    finally:
        server.stop()
        receiver.stop()
