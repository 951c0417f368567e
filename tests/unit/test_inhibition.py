from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from storyloom.domain.alerts import fingerprint
from storyloom.domain.inhibition import Inhibitor, InhibitRule, inhibited
from storyloom.domain.matchers import as_matchers


def rule(source: list[str], target: list[str], equal: tuple[str, ...] = ()) -> InhibitRule:
    return InhibitRule(as_matchers(source), as_matchers(target), equal)


PROVIDER_RULE = rule(
    ['alert_id="planner:provider-unavailable"'], ['alert_id="planner:phase-failed"'], equal=("provider",)
)
OUTAGE = {"alert_id": "planner:provider-unavailable", "severity": "error", "provider": "openai"}
FAILED = {"alert_id": "planner:phase-failed", "severity": "error", "provider": "openai", "plan_id": "p1"}


def test_source_mutes_target_with_equal_labels() -> None:
    assert inhibited(FAILED, [OUTAGE], [PROVIDER_RULE])


def test_different_equal_label_values_do_not_mute() -> None:
    assert not inhibited({**FAILED, "provider": "offline"}, [OUTAGE], [PROVIDER_RULE])


def test_only_firing_sources_passed_in_mute_and_no_source_means_no_mute() -> None:
    assert not inhibited(FAILED, [], [PROVIDER_RULE])
    assert not inhibited(FAILED, [{**OUTAGE, "alert_id": "something-else"}], [PROVIDER_RULE])


def test_target_must_match_target_matchers() -> None:
    assert not inhibited({**FAILED, "alert_id": "planner:phase-blocked"}, [OUTAGE], [PROVIDER_RULE])


def test_missing_equal_label_on_both_sides_counts_as_equal() -> None:
    outage = {k: v for k, v in OUTAGE.items() if k != "provider"}
    failed = {k: v for k, v in FAILED.items() if k != "provider"}
    assert inhibited(failed, [outage], [PROVIDER_RULE])
    assert not inhibited(FAILED, [outage], [PROVIDER_RULE])  # missing vs "openai"
    assert inhibited({**failed, "provider": ""}, [outage], [PROVIDER_RULE])  # missing reads as ""


def test_rule_without_equal_labels_mutes_every_target() -> None:
    r = rule(['severity="critical"'], ['severity="warning"'])
    assert inhibited({"severity": "warning", "plan_id": "x"}, [{"severity": "critical", "plan_id": "y"}], [r])


SELF_RULE = rule(['severity=~"error|critical"'], ['severity=~"warning|error"'], equal=("plan_id",))
TWO_SIDED = {"alert_id": "a", "severity": "error", "plan_id": "p1"}  # matches source and target
SOURCE_ONLY = {"alert_id": "b", "severity": "critical", "plan_id": "p1"}
TARGET_ONLY = {"alert_id": "c", "severity": "warning", "plan_id": "p1"}


def test_self_inhibition_guard_an_alert_matching_both_sides_does_not_mute_itself() -> None:
    assert not inhibited(TWO_SIDED, [TWO_SIDED], [SELF_RULE])


def test_self_inhibition_guard_two_sided_sources_do_not_mute_two_sided_targets() -> None:
    other_two_sided = {**TWO_SIDED, "alert_id": "a2"}
    assert not inhibited(TWO_SIDED, [other_two_sided], [SELF_RULE])


def test_two_sided_target_is_still_muted_by_a_one_sided_source() -> None:
    assert inhibited(TWO_SIDED, [TWO_SIDED, SOURCE_ONLY], [SELF_RULE])


def test_two_sided_source_still_mutes_one_sided_targets() -> None:
    assert inhibited(TARGET_ONLY, [TWO_SIDED], [SELF_RULE])


def test_inhibited_by_lists_the_muting_alerts_across_rules() -> None:
    second = rule(['alert_id="planner:provider-unavailable"'], ['plan_id="p1"'])
    inhibitor = Inhibitor([PROVIDER_RULE, second], [OUTAGE, TARGET_ONLY])
    assert inhibitor.inhibited_by(FAILED) == [fingerprint(OUTAGE), fingerprint(OUTAGE)]
    assert inhibitor.inhibited_by({"plan_id": "p2"}) == []
    assert not inhibitor.mutes({"plan_id": "p2"})


def test_many_alerts_are_checked_in_linear_time() -> None:
    rules = [PROVIDER_RULE, SELF_RULE]
    sources = [{**OUTAGE, "provider": f"prov-{i}"} for i in range(5000)]
    targets = [{**FAILED, "provider": f"prov-{i}", "plan_id": f"p{i}"} for i in range(10000)]
    started = time.perf_counter()
    inhibitor = Inhibitor(rules, sources)
    muted = [t for t in targets if inhibitor.mutes(t)]
    elapsed = time.perf_counter() - started
    assert len(muted) == 5000
    assert all(int(t["provider"].split("-")[1]) < 5000 for t in muted)
    # A nested loop would do 50M matcher checks (minutes); the index needs ~30k (well under a second).
    assert elapsed < 5


labels = st.fixed_dictionaries(
    {"severity": st.sampled_from(["warning", "error", "critical"]), "plan_id": st.sampled_from(["p1", "p2"])},
    optional={"alert_id": st.sampled_from(["a", "b"])},
)


def naive_inhibited(target: dict[str, str], firing: list[dict[str, str]], rules: list[InhibitRule]) -> bool:
    """A line-by-line reading of Alertmanager's Inhibitor.Mutes, used as the oracle."""
    from storyloom.domain.matchers import matches_all

    for r in rules:
        if not matches_all(r.target_matchers, target):
            continue
        exclude_two_sided = matches_all(r.source_matchers, target)
        for source in firing:
            if not matches_all(r.source_matchers, source):
                continue
            if any(source.get(n, "") != target.get(n, "") for n in r.equal):
                continue
            if exclude_two_sided and matches_all(r.target_matchers, source):
                continue
            return True
    return False


@given(st.lists(labels, max_size=8), labels)
def test_indexed_inhibitor_agrees_with_alertmanagers_nested_loop(
    firing: list[dict[str, str]], target: dict[str, str]
) -> None:
    rules = [SELF_RULE, rule(['alert_id="b"'], ['severity="warning"'], equal=("plan_id", "alert_id"))]
    assert Inhibitor(rules, firing).mutes(target) is naive_inhibited(target, firing, rules)
