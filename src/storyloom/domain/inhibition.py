"""Inhibition (Alertmanager `inhibit_rules`): a firing source alert mutes matching target alerts.

Semantics follow Alertmanager's `inhibit/inhibit.go`:

* a target is muted by a rule when it matches the rule's target matchers and some *firing* alert matches
  the source matchers with the same values for every `equal` label (a missing label reads as the empty
  string, so missing equals missing, and missing equals `""`);
* self-inhibition guard: when the target also matches the rule's *source* matchers, source alerts that
  match the target matchers too are disregarded. So an alert matching both sides never mutes itself, nor
  any other two-sided alert, but it can still be muted by a one-sided source and can mute one-sided targets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from storyloom.domain.alerts import fingerprint
from storyloom.domain.matchers import Matcher, matches_all

EqualKey = tuple[str, ...]


@dataclass(frozen=True)
class InhibitRule:
    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def equal_key(self, labels: Mapping[str, str]) -> EqualKey:
        return tuple(labels.get(name, "") for name in self.equal)


@dataclass
class _Bucket:
    """Source alerts of one rule sharing one tuple of `equal` values."""

    all_sources: list[str] = field(default_factory=list)
    one_sided: list[str] = field(default_factory=list)  # sources that do not also match the target side


class Inhibitor:
    """Index of the firing source alerts, built once per evaluation.

    Building costs O(M x rules) for M firing alerts; each `mutes` check costs O(rules), independent of M.
    """

    def __init__(self, rules: Sequence[InhibitRule], firing: Iterable[Mapping[str, str]]) -> None:
        self.rules = tuple(rules)
        self._index: list[dict[EqualKey, _Bucket]] = [{} for _ in self.rules]
        for labels in firing:
            fp: str | None = None
            for rule, index in zip(self.rules, self._index, strict=True):
                if not matches_all(rule.source_matchers, labels):
                    continue
                fp = fp or fingerprint(labels)
                bucket = index.setdefault(rule.equal_key(labels), _Bucket())
                bucket.all_sources.append(fp)
                if not matches_all(rule.target_matchers, labels):
                    bucket.one_sided.append(fp)

    def _sources(self, labels: Mapping[str, str], *, first_only: bool) -> list[str]:
        found: list[str] = []
        for rule, index in zip(self.rules, self._index, strict=True):
            if not index or not matches_all(rule.target_matchers, labels):
                continue
            bucket = index.get(rule.equal_key(labels))
            if bucket is None:
                continue
            two_sided_target = matches_all(rule.source_matchers, labels)
            sources = bucket.one_sided if two_sided_target else bucket.all_sources
            if sources:
                if first_only:
                    return sources[:1]
                found.extend(sources)
        return found

    def mutes(self, labels: Mapping[str, str]) -> bool:
        return bool(self._sources(labels, first_only=True))

    def inhibited_by(self, labels: Mapping[str, str]) -> list[str]:
        """Fingerprints of the firing alerts that mute these labels (for the API's "inhibited by")."""
        return self._sources(labels, first_only=False)


def inhibited(
    target_labels: Mapping[str, str],
    firing_alert_label_sets: Iterable[Mapping[str, str]],
    rules: Sequence[InhibitRule],
) -> bool:
    """One-off check; build an `Inhibitor` instead when checking many targets against the same alerts."""
    return Inhibitor(rules, firing_alert_label_sets).mutes(target_labels)
