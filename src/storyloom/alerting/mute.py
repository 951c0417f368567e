"""Who mutes an alert right now: inhibition by firing alerts and active silences, as one index.

The flush's mute stage drops what it mutes; the API shows `silenced_by` / `inhibited_by` from the same
index (computed at read time, nothing is sent).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Connection

from storyloom.alerting.rows import active_silences, firing_alerts
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import Alert
from storyloom.domain.alerts import fingerprint as label_fingerprint
from storyloom.domain.inhibition import Inhibitor, InhibitRule
from storyloom.domain.silences import Silence, SilenceState

INHIBITED = "inhibited"
SILENCED = "silenced"


class MuteIndex:
    """Built once per evaluation from every firing alert and the active silences."""

    def __init__(
        self,
        rules: Sequence[InhibitRule],
        firing: Iterable[Alert],
        silences: Sequence[Silence],
        now: datetime,
    ) -> None:
        firing = list(firing)
        self.now = now
        self.silences = tuple(s for s in silences if s.state(now) is SilenceState.ACTIVE)
        self._inhibitor = Inhibitor(rules, [a.labels for a in firing]) if rules else None
        # The inhibitor names sources by the hash of all their labels; the API shows alert fingerprints.
        self._alert_fp = {label_fingerprint(a.labels): a.fingerprint for a in firing} if rules else {}

    def inhibited_by(self, alert: Alert) -> list[str]:
        if self._inhibitor is None:
            return []
        found = self._inhibitor.inhibited_by(alert.labels)
        return list(dict.fromkeys(self._alert_fp.get(fp, fp) for fp in found))

    def inhibited(self, alert: Alert) -> bool:
        return self._inhibitor is not None and self._inhibitor.mutes(alert.labels)

    def silenced_by(self, alert: Alert) -> list[str]:
        return [s.silence_id for s in self.silences if s.mutes(alert.labels, self.now)]

    def muted(self, alert: Alert) -> str | None:
        """`inhibited`, `silenced` or None (inhibition is checked first, as Alertmanager does)."""
        if self.inhibited(alert):
            return INHIBITED
        if self.silenced_by(alert):
            return SILENCED
        return None


def mute_index(conn: Connection, alerting: AlertingRuntime, now: datetime) -> MuteIndex:
    """What mutes what right now, read strictly (the notifier's flush)."""
    firing = firing_alerts(conn) if alerting.inhibit_rules else []
    return MuteIndex(alerting.inhibit_rules, firing, active_silences(conn, now), now)
