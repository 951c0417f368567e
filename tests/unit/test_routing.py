from __future__ import annotations

import json
from datetime import timedelta

import pytest

from storyloom.domain.matchers import as_matchers
from storyloom.domain.routing import Route, RouteSpec, build_route_tree, group_key, receivers_for


def spec(*matchers: str, **kwargs: object) -> RouteSpec:
    return RouteSpec(matchers=as_matchers(matchers), **kwargs)  # type: ignore[arg-type]


ERROR = {"alert_id": "planner:phase-failed", "severity": "error", "plan_id": "p1"}
WARNING = {"alert_id": "planner:phase-blocked", "severity": "warning", "plan_id": "p1"}


def contract_tree() -> Route:
    """The example tree of CONTRACTS §2."""
    return build_route_tree(
        RouteSpec(
            receiver="ops-webhook",
            group_by=("alert_id", "plan_id"),
            group_wait=timedelta(0),
            group_interval=timedelta(minutes=1),
            repeat_interval=timedelta(hours=4),
            routes=(spec('severity=~"error|critical"', receiver="pager", continue_=True),),
        )
    )


def test_a_matching_continue_child_does_not_add_the_parent_receiver() -> None:
    root = contract_tree()
    # The only child matched with continue and no sibling matched after it, so the alert reaches the child;
    # the parent is returned only when no child matched at all (Alertmanager semantics).
    assert receivers_for(root, ERROR) == ["pager"]
    assert receivers_for(root, WARNING) == ["ops-webhook"]


def test_continue_lets_later_siblings_match_too() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="default",
            routes=(
                spec('severity="error"', receiver="pager", continue_=True),
                spec('alert_id=~"planner:.*"', receiver="planner-team"),
                spec('plan_id="p1"', receiver="never"),
            ),
        )
    )
    assert receivers_for(root, ERROR) == ["pager", "planner-team"]
    assert receivers_for(root, WARNING) == ["planner-team"]


def test_first_matching_child_wins_without_continue() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="default",
            routes=(
                spec('plan_id="p1"', receiver="first"),
                spec('severity="error"', receiver="second"),
            ),
        )
    )
    assert receivers_for(root, ERROR) == ["first"]
    assert receivers_for(root, {**ERROR, "plan_id": "p2"}) == ["second"]


def test_no_child_matches_returns_the_parent_and_root_always_matches() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="default",
            routes=(
                spec('team="a"', receiver="a", routes=(spec('severity="critical"', receiver="a-pager"),)),
            ),
        )
    )
    matched = root.match({"team": "a", "severity": "error"})
    assert [r.route_id for r in matched] == ["0.0"]
    assert [r.receiver for r in matched] == ["a"]
    assert receivers_for(root, {}) == ["default"]
    assert receivers_for(root, {"team": "a", "severity": "critical"}) == ["a-pager"]


def test_same_receiver_can_be_reached_twice() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="default",
            routes=(
                spec('severity="error"', receiver="ops", continue_=True),
                spec('plan_id="p1"', receiver="ops"),
            ),
        )
    )
    assert receivers_for(root, ERROR) == ["ops", "ops"]


def test_inheritance_of_receiver_group_by_and_timers_through_three_levels() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="root-recv",
            group_by=("alert_id",),
            group_wait=timedelta(seconds=10),
            group_interval=timedelta(minutes=2),
            repeat_interval=timedelta(hours=1),
            routes=(
                spec(
                    'team="a"',
                    group_interval=timedelta(minutes=7),
                    routes=(
                        spec(
                            'severity="error"',
                            receiver="a-recv",
                            routes=(spec('plan_id="p1"', repeat_interval=timedelta(minutes=30)),),
                        ),
                    ),
                ),
            ),
        )
    )
    level1, level2, level3 = [r for r in root.walk()][1:]
    assert (level1.receiver, level2.receiver, level3.receiver) == ("root-recv", "a-recv", "a-recv")
    assert level1.group_by == level2.group_by == level3.group_by == ("alert_id",)
    assert level1.group_wait == level2.group_wait == level3.group_wait == timedelta(seconds=10)
    assert level1.group_interval == level2.group_interval == level3.group_interval == timedelta(minutes=7)
    assert level1.repeat_interval == level2.repeat_interval == timedelta(hours=1)
    assert level3.repeat_interval == timedelta(minutes=30)
    assert root.match({"team": "a", "severity": "error", "plan_id": "p1"}) == [level3]


def test_root_timers_default_like_alertmanager_and_callers_can_override() -> None:
    default = build_route_tree(RouteSpec(receiver="r"))
    assert (default.group_wait, default.group_interval, default.repeat_interval) == (
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(hours=4),
    )
    custom = build_route_tree(
        RouteSpec(receiver="r"), group_wait=timedelta(0), group_interval=timedelta(minutes=1)
    )
    assert custom.group_wait == timedelta(0) and custom.group_interval == timedelta(minutes=1)
    explicit = build_route_tree(
        RouteSpec(receiver="r", group_wait=timedelta(seconds=3)), group_wait=timedelta(0)
    )
    assert explicit.group_wait == timedelta(seconds=3)


def test_group_by_all_uses_every_label_and_is_inherited() -> None:
    root = build_route_tree(
        RouteSpec(
            receiver="r", group_by=("...",), routes=(spec('a="1"'), spec('b="1"', group_by=("alert_id",)))
        )
    )
    assert root.group_by_all and root.group_labels(ERROR) == ERROR
    assert root.routes[0].group_by_all and root.routes[0].group_labels({"a": "1", "z": "2"}) == {
        "a": "1",
        "z": "2",
    }
    assert not root.routes[1].group_by_all and root.routes[1].group_labels(ERROR) == {
        "alert_id": ERROR["alert_id"]
    }
    flag = build_route_tree(RouteSpec(receiver="r", group_by_all=True))
    assert flag.group_by_all and flag.as_dict()["group_by"] == ["..."]


def test_group_labels_leave_out_absent_labels() -> None:
    root = contract_tree()
    assert root.group_labels({"alert_id": "x", "severity": "info"}) == {"alert_id": "x"}
    assert root.group_labels(ERROR) == {"alert_id": "planner:phase-failed", "plan_id": "p1"}


def test_group_key_is_stable_readable_and_distinct_per_route_and_receiver() -> None:
    root = contract_tree()
    pager = root.routes[0]
    key = group_key(pager, {"plan_id": "p1", "alert_id": "planner:phase-failed"})
    assert key == group_key(pager, {"alert_id": "planner:phase-failed", "plan_id": "p1"})
    assert key.startswith("0.0:pager:")
    assert json.loads(key.split(":", 2)[2]) == {"alert_id": "planner:phase-failed", "plan_id": "p1"}
    assert key != group_key(root, {"alert_id": "planner:phase-failed", "plan_id": "p1"})
    assert key != group_key(pager, {"alert_id": "planner:phase-failed", "plan_id": "p2"})


def test_route_ids_are_tree_paths_and_walk_is_depth_first() -> None:
    root = build_route_tree(
        RouteSpec(receiver="r", routes=(spec('a="1"', routes=(spec('b="1"'), spec('b="2"'))), spec('a="2"')))
    )
    assert [r.route_id for r in root.walk()] == ["0", "0.0", "0.0.0", "0.0.1", "0.1"]
    view = root.as_dict()
    assert view["routes"][0]["routes"][1]["matchers"] == ['b="2"']
    assert view["group_wait"] == "30s"


@pytest.mark.parametrize(
    ("root", "message"),
    [
        (RouteSpec(), "needs a receiver"),
        (RouteSpec(receiver="r", matchers=as_matchers(['a="1"'])), "cannot have matchers"),
        (RouteSpec(receiver="r", continue_=True), "cannot have continue"),
        (RouteSpec(receiver="r", group_by=("...", "a")), "cannot mix '...'"),
        (
            RouteSpec(receiver="r", routes=(RouteSpec(group_interval=timedelta(0)),)),
            "route 0.0: group_interval",
        ),
    ],
)
def test_invalid_trees_are_refused_with_the_route_path(root: RouteSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_route_tree(root)
