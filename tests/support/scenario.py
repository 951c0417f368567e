"""The alert scenario suite's harness: a real `storyloom` server, real signed receivers, and checks of what
they received against CONTRACTS §6/§7 and `docs/schemas/webhook-v1.json`.

A `Scenario` owns one receiver process (the `ops-webhook` receiver, and a `pager` receiver that is the same
process under another path, reached by error/critical alerts as in the §2 sample), any extra receivers a
module asks for, and one server. Tests drive a cause, `wait_firing` for the notification, then remove the
cause and `wait_resolved` for the notification of the same fingerprint. Every wait polls with a deadline
(`wait_for`) and, on timeout, says what the product's own alert table and delivery log hold, so a failure
reads "fired but never delivered" rather than just "timed out".
"""

from __future__ import annotations

import base64
import copy
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml
from sqlalchemy import Engine, create_engine

from tests.support.receiver_process import ReceiverProcess
from tests.support.runbooks import RunbookSession, label_bindings, operator_environment
from tests.support.server import ADMIN_TOKEN, ServerProcess, free_port, seed_author, wait_for

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "docs" / "schemas" / "webhook-v1.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)

SECRET_ENV = "SCENARIO_WEBHOOK_SECRET"
ENVIRONMENT = "scenario-ci"
OPS = "ops-webhook"
PAGER = "pager"
ROUTING_KEYS = {OPS: "fiction-ops", PAGER: "fiction-pager"}
MODEL = "offline-test"  # the model `seed_author` gives the author's agent

# CONTRACTS §6, copied on purpose (not imported from the product): severity and the `source` label values
# that may fire each id. Drift between the catalog and the contract fails the suite.
CATALOG: dict[str, tuple[str, frozenset[str]]] = {
    "planner:phase-failed": ("error", frozenset({"planner_runner"})),
    "planner:phase-blocked": ("warning", frozenset({"planner_runner"})),
    "planner:critique-exhausted": ("warning", frozenset({"planner_runner"})),
    "planner:recent-failures": ("error", frozenset({"health"})),
    "planner:no-executions": ("info", frozenset({"health"})),
    "planner:template-missing": ("critical", frozenset({"health"})),
    "planner:template-inactive": ("warning", frozenset({"health"})),
    "planner:latency-slo": ("warning", frozenset({"health"})),
    "planner:provider-unavailable": ("error", frozenset({"tool_dispatcher"})),
    "tool:failed": ("warning", frozenset({"tool_dispatcher"})),
    "tool:timeout": ("warning", frozenset({"tool_dispatcher"})),
    "tool:quota-exceeded": ("warning", frozenset({"tool_dispatcher"})),
    "backlog:stale": ("warning", frozenset({"backlog_scheduler", "health"})),
    "backlog:orphaned": ("warning", frozenset({"health"})),
    "backlog:flapping": ("warning", frozenset({"backlog_scheduler"})),
    "backlog:contract-drift": ("warning", frozenset({"backlog_scheduler"})),  # error from the 2nd event
    "backlog:queue-age": ("warning", frozenset({"health"})),
    "obligation:open": ("info", frozenset({"obligations"})),
    "obligation:aging": ("warning", frozenset({"obligations", "health"})),
    "obligation:drift": ("warning", frozenset({"obligations"})),
    "lore:blocked": ("warning", frozenset({"health"})),
    "worldbible:missing": ("warning", frozenset({"health"})),
    "worldbible:stale": ("warning", frozenset({"health"})),
    "delivery:failing": ("error", frozenset({"delivery"})),
}


class _Sentinel:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


PRESENT = _Sentinel("PRESENT")  # the label must be there (any non-empty value)
ABSENT = _Sentinel("ABSENT")  # the label must not be there


class NotResolved(AssertionError):
    """The cause was removed but no `resolved` notification of the alert arrived in time."""


class LabelGap(AssertionError):
    """An identifying label §6 asks for is missing from an alert that otherwise went end to end."""


@dataclass(frozen=True)
class Notified:
    """One alert inside one received notification."""

    index: int  # position of the request in the receiver's log (later requests have larger ones)
    record: dict[str, Any]  # what the receiver recorded: path, headers, body, signature_valid, status
    alert: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        return dict(self.record["body"])

    @property
    def fingerprint(self) -> str:
        return str(self.alert["fingerprint"])

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.alert["labels"])


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


def deep_merge(base: Mapping[str, Any], *overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Mappings merge key by key; anything else (lists included) is replaced by the override."""
    out: dict[str, Any] = copy.deepcopy(dict(base))
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
                out[key] = deep_merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def receiver_config(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "type": "webhook",
        "url": url,
        "secret_env": SECRET_ENV,
        "send_resolved": True,
        "timeout": "5s",
        "retry": {"schedule": ["0s", "1s"], "max_age": "5m"},
        **extra,
    }


def base_config(ops_url: str, pager_url: str) -> dict[str, Any]:
    """Small plans, fast retries, an evaluation every second, and the §2 routing: everything to the Ops
    webhook, error and critical alerts to the pager as well, grouped by alert and plan, sent at once."""
    return {
        "environment": ENVIRONMENT,
        "llm": {"provider": "offline", "faults": []},
        "pipeline": {
            "chapters": 1,
            "scenes_per_chapter": 1,
            "max_phase_attempts": 3,
            "retry_backoff": "10ms",
        },
        "health": {"evaluate_every": "1s"},
        "alerting": {
            "source": "storyloom",
            "receivers": [
                receiver_config(OPS, ops_url, routing_key=ROUTING_KEYS[OPS]),
                receiver_config(PAGER, pager_url, routing_key=ROUTING_KEYS[PAGER]),
            ],
            "route": {
                "receiver": OPS,
                "group_by": ["alert_id", "plan_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "4h",
                "routes": [
                    {"matchers": ['severity=~"error|critical"'], "receiver": PAGER, "continue": True},
                    {"receiver": OPS},
                ],
            },
        },
    }


@dataclass
class Scenario:
    """One server and its receivers for a module; `configure` reloads the config a test needs."""

    root: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)
    extra_receivers: Mapping[str, list[int]] = field(default_factory=dict)  # name → scripted statuses
    secret: str = field(default_factory=new_secret)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.receiver = ReceiverProcess(free_port(), self.root / "received.jsonl", secret=self.secret)
        self.pager_url = self.receiver.url.replace("/hooks/ops", "/hooks/pager")
        self.extras = {
            name: ReceiverProcess(
                free_port(), self.root / f"received-{name}.jsonl", secret=self.secret, statuses=statuses
            )
            for name, statuses in self.extra_receivers.items()
        }
        base = base_config(self.receiver.url, self.pager_url)
        base["alerting"]["receivers"] += [
            receiver_config(name, process.url) for name, process in self.extras.items()
        ]
        self.base = deep_merge(base, self.overrides)
        self.server = ServerProcess(self.root / "data", config=self.base, env={SECRET_ENV: self.secret})
        self._author: tuple[str, str] | None = None
        self._engine: Engine | None = None

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Scenario:
        self.receiver.start()
        for process in self.extras.values():
            process.start()
        self.server.start()
        return self

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            for process in (self.receiver, *self.extras.values()):
                process.stop()
            if self._engine is not None:
                self._engine.dispose()

    def configure(self, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Rewrite the config file as the module's config plus `overrides`, and reload it."""
        config = deep_merge(self.base, {"public_url": self.server.url}, overrides or {})
        assert self.server.config_path is not None
        self.server.config_path.write_text(yaml.safe_dump(config))
        response = self.server.post("/api/config/reload")
        assert response.status_code == 200, f"config reload refused: {response.text}"
        return config

    # --- the pipeline ----------------------------------------------------------------------------------

    @property
    def author(self) -> tuple[str, str]:
        """(persona_id, agent_id) of the author every scenario plan belongs to."""
        if self._author is None:
            self._author = seed_author(self.server, "Scenario Author")
        return self._author

    def create_plan(
        self, name: str, premise: str = "A lighthouse keeper counts ships that never arrive."
    ) -> str:
        persona_id, agent_id = self.author
        response = self.server.post(
            "/api/fiction/plans",
            {"name": name, "premise": premise, "persona_id": persona_id, "agent_id": agent_id},
        )
        assert response.status_code == 201, response.text
        return str(response.json()["plan_id"])

    def items(self, plan_id: str) -> dict[str, dict[str, Any]]:
        return {i["backlog_id"]: i for i in self.server.get(f"/api/fiction/plans/{plan_id}/backlog")}

    def wait_item(self, plan_id: str, backlog_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            item = self.items(plan_id).get(backlog_id)
            return item if item and item["status"] in statuses else None

        return dict(
            wait_for(
                reached, timeout=timeout, message=f"{plan_id}/{backlog_id} to be {' or '.join(statuses)}"
            )
        )

    def wait_plan(self, plan_id: str, status: str = "complete", timeout: float = 90) -> None:
        def reached() -> bool:
            return self.server.get(f"/api/fiction/plans/{plan_id}")["status"] == status

        try:
            wait_for(reached, timeout=timeout, message=f"plan {plan_id} to be {status}")
        except AssertionError as exc:
            states = {k: (v["status"], v["last_error"]) for k, v in self.items(plan_id).items()}
            raise AssertionError(f"{exc}; backlog: {states}") from None

    def resume(self, plan_id: str, backlog_id: str, **body: Any) -> httpx.Response:
        _, agent_id = self.author
        payload = {"agent_id": agent_id, "provider": "offline", "model": MODEL, **body}
        return self.server.post(f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume", payload)

    def resume_ok(self, plan_id: str, backlog_id: str, **body: Any) -> str:
        response = self.resume(plan_id, backlog_id, **body)
        assert response.status_code == 202, response.text
        return str(response.json()["task_id"])

    def obligations(self, plan_id: str, status: str = "open") -> list[dict[str, Any]]:
        page = self.server.get(
            f"/api/fiction/plans/{plan_id}/persona-obligations", status=status, page_size=200
        )
        return list(page["items"])

    # --- direct database access (only for causes no API can produce) ----------------------------------

    @contextmanager
    def database(self) -> Iterator[Any]:
        """A transaction on the server's own database (SQLite file, or the e2e PostgreSQL URL)."""
        if self._engine is None:
            url = self.server.env.get("STORYLOOM_DATABASE_URL")
            if url:
                from storyloom.store.db import normalize_url

                self._engine = create_engine(normalize_url(url))
            else:
                self._engine = create_engine(
                    f"sqlite:///{self.server.data_dir / 'storyloom.db'}", connect_args={"timeout": 30}
                )
        with self._engine.begin() as conn:
            yield conn

    # --- the runbook --------------------------------------------------------------------------------

    def runbook(self, firing: Notified, **bindings: str) -> RunbookSession:
        """The runbook at the alert's `runbook_url` (which this server must serve), ready to run against this
        server: `$STORYLOOM_URL`, `$STORYLOOM_TOKEN` (admin), `$FINGERPRINT` and the placeholders the alert's
        labels bind, plus `bindings` for what the labels do not carry (e.g. `AGENT_ID`, `DELIVERY_ID`)."""
        alert_id = str(firing.alert["alert_id"])
        page = self.server.client.get(firing.alert["runbook_url"])
        assert page.status_code == 200 and alert_id in page.text, f"runbook_url: {page.status_code}"
        env = operator_environment(
            {
                "STORYLOOM_URL": self.server.url,
                "STORYLOOM_TOKEN": ADMIN_TOKEN,
                "FINGERPRINT": firing.fingerprint,
                **label_bindings(firing.labels),
                **bindings,
            }
        )
        return RunbookSession(alert_id, env, self.root)

    def follow_runbook(
        self, firing: Notified, *, manual_fix: Callable[[], object] | None = None, **bindings: str
    ) -> Notified:
        """Work the alert by its runbook: Confirm, then `manual_fix` (what the test does for the runbook's
        manual steps, such as editing the config file; it runs even if Confirm fails, so a broken runbook
        does not leave the cause to the module's next tests), then Fix, which must remove the cause: the
        `resolved` notification follows. Then Verify recovery. Returns the resolved notification."""
        with self.runbook(firing, **bindings) as runbook:
            try:
                runbook.confirm()
            finally:
                if manual_fix is not None:
                    manual_fix()
            runbook.fix()
            resolved = self.wait_resolved(firing)
            runbook.verify()
        return resolved

    # --- what the receivers got ---------------------------------------------------------------------

    def process_for(self, receiver: str) -> ReceiverProcess:
        return self.extras.get(receiver, self.receiver)

    def mark(self, receiver: str = OPS) -> int:
        """The receiver log's length now: `since=` for waits that must ignore earlier notifications."""
        return len(self.process_for(receiver).received())

    def notifications(
        self, receiver: str = OPS, *, since: int = 0, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[Notified]:
        found = []
        for index, record in enumerate(self.process_for(receiver).received()):
            body = record.get("body")
            if index < since or not isinstance(body, dict) or body.get("receiver") != receiver:
                continue
            for alert in body.get("alerts") or []:
                if where is None or where(alert):
                    found.append(Notified(index, record, alert))
        return found

    def _diagnose(self, alert_id: str) -> str:
        try:
            alerts = self.server.get("/api/alerts", alert_id=alert_id, status="all")
            deliveries = self.server.get("/api/deliveries", limit=200)
        except (httpx.HTTPError, AssertionError) as exc:
            return f"(could not read the server's state: {exc})"
        states = [(a["status"], a["severity"], a["labels"]) for a in alerts]
        sent: dict[str, int] = {}
        for d in deliveries:
            key = f"{d.get('receiver')}:{d.get('status')}"
            sent[key] = sent.get(key, 0) + 1
        return f"the server's {alert_id} alerts: {states}; its deliveries by receiver:status: {sent}"

    def wait_firing(
        self,
        alert_id: str,
        labels: Mapping[str, Any] | None = None,
        *,
        receiver: str = OPS,
        since: int = 0,
        severity: str | None = None,
        timeout: float = 60,
    ) -> Notified:
        """The first `firing` notification of `alert_id` whose labels match, checked in full (§6, §7)."""
        labels = dict(labels or {})
        concrete = {k: v for k, v in labels.items() if isinstance(v, str)}

        def matching(alert: dict[str, Any]) -> bool:
            got = alert.get("labels") or {}
            return (
                alert.get("alert_id") == alert_id
                and alert.get("status") == "firing"
                and (severity is None or alert.get("severity") == severity)
                and all(got.get(k) == v for k, v in concrete.items())
            )

        try:
            found = wait_for(
                lambda: self.notifications(receiver, since=since, where=matching),
                timeout=timeout,
                interval=0.1,
                message=f"{receiver} to receive {alert_id} firing with {concrete}",
            )
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self._diagnose(alert_id)}") from None
        notified: Notified = found[0]
        check_notification(self, notified, alert_id, "firing", labels, receiver=receiver, severity=severity)
        return notified

    def wait_resolved(
        self, firing: Notified, *, receiver: str | None = None, timeout: float = 60
    ) -> Notified:
        """The `resolved` notification of the same fingerprint, received after `firing`, and the last word
        on it: an alert that flaps on the way (fires again before its cause is really gone) is waited
        for until the receiver was last told `resolved`."""
        receiver = receiver or str(firing.body["receiver"])
        alert_id = str(firing.alert["alert_id"])

        def settled() -> Notified | None:
            told = self.notifications(
                receiver, since=firing.index + 1, where=lambda a: a.get("fingerprint") == firing.fingerprint
            )
            return told[-1] if told and told[-1].alert["status"] == "resolved" else None

        try:
            resolved: Notified = wait_for(
                settled,
                timeout=timeout,
                interval=0.1,
                message=f"{receiver} to receive {alert_id} {firing.fingerprint} resolved",
            )
        except AssertionError as exc:
            raise NotResolved(f"{exc}\n{self._diagnose(alert_id)}") from None
        expected = {k: v for k, v in firing.labels.items() if k != "severity"}
        check_notification(self, resolved, alert_id, "resolved", expected, receiver=receiver)
        assert resolved.alert["ends_at"] >= firing.alert["starts_at"]
        return resolved


def require_labels(notified: Notified, **wanted: str) -> None:
    """Raise `LabelGap` unless the alert carries these labels with these values."""
    got = notified.labels
    wrong = {k: got.get(k) for k, v in wanted.items() if got.get(k) != v}
    if wrong:
        raise LabelGap(f"{notified.alert['alert_id']} lacks labels {wanted}: has {wrong} in {got}")


def check_notification(
    scenario: Scenario,
    notified: Notified,
    alert_id: str,
    status: str,
    labels: Mapping[str, Any],
    *,
    receiver: str = OPS,
    severity: str | None = None,
) -> None:
    """Everything a receiver may rely on: the JSON Schema, the signature, §7's envelope and §6's alert."""
    record, body, alert = notified.record, notified.body, notified.alert
    errors = sorted(VALIDATOR.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "payload drift from docs/schemas/webhook-v1.json: " + "; ".join(
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}" for e in errors[:10]
    )
    headers = record["headers"]
    for header in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        assert headers.get(header), f"missing {header} header"
    assert record["signature_valid"], "the Standard Webhooks signature did not verify"
    assert headers["webhook-signature"].startswith("v1,")
    if receiver in (OPS, PAGER):
        assert record["path"] == f"/hooks/{'pager' if receiver == PAGER else 'ops'}", record["path"]

    assert body["type"] == "storyloom.alerts" and body["version"] == "1"
    assert body["source"] == "storyloom" and body["environment"] == ENVIRONMENT
    assert body["receiver"] == receiver
    assert body["routing_key"] == ROUTING_KEYS.get(receiver)
    assert body["group_labels"].get("alert_id") == alert_id, body["group_labels"]
    if "plan_id" in alert["labels"]:
        assert body["group_labels"].get("plan_id") == alert["labels"]["plan_id"], body["group_labels"]
    any_firing = any(a["status"] == "firing" for a in body["alerts"])
    assert body["status"] == ("firing" if any_firing else "resolved")

    default_severity, sources = CATALOG[alert_id]
    want_severity = severity or default_severity
    assert alert["alert_id"] == alert_id
    assert alert["status"] == status
    assert alert["severity"] == want_severity, (
        f"{alert_id} severity {alert['severity']}, want {want_severity}"
    )
    got = alert["labels"]
    assert got["alert_id"] == alert_id and got["severity"] == want_severity
    assert got["source"] in sources, f"{alert_id} source {got['source']}, want one of {sorted(sources)}"
    for key, want in labels.items():
        if want is PRESENT:
            assert got.get(key), f"{alert_id}: label {key} missing in {got}"
        elif want is ABSENT:
            assert key not in got, f"{alert_id}: label {key} should not be there: {got}"
        else:
            assert got.get(key) == want, f"{alert_id}: label {key}={got.get(key)!r}, want {want!r}"
    if status == "firing":
        assert alert["ends_at"] is None
    else:
        assert alert["ends_at"] is not None and alert["ends_at"] >= alert["starts_at"]
    base = scenario.server.url
    assert alert["runbook_url"] == f"{base}/runbooks/{alert_id}", alert["runbook_url"]
    assert alert["console_url"] == f"{base}/alerts/{alert['fingerprint']}", alert["console_url"]
