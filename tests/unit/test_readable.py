"""Stored values repaired for display, each with the problem that names its field."""

from __future__ import annotations

from storyloom.domain.readable import (
    REPLACEMENT,
    readable_json,
    readable_list,
    readable_map,
    readable_text,
    showable,
)

SURROGATE = "\ud800"


def test_sound_text_is_kept_as_it_is() -> None:
    assert readable_text("Disk full · 99 %", "title") == ("Disk full · 99 %", [])


def test_lone_surrogates_and_nul_are_replaced_and_named() -> None:
    assert readable_text(f"a{SURROGATE}b\x00", "title") == (
        f"a{REPLACEMENT}b{REPLACEMENT}",
        ["title: holds a lone surrogate or NUL"],
    )
    shown, _ = readable_text(SURROGATE, "x")
    assert shown.encode("utf-8")  # encodable: a response can carry it


def test_a_non_text_becomes_its_json() -> None:
    assert readable_text({"k": [1]}, "labels.o") == (
        '{"k": [1]}',
        ["labels.o: stored as an object, not text"],
    )
    assert readable_text(None, "z") == ("null", ["z: stored as null, not text"])


def test_a_label_map_becomes_text_to_text() -> None:
    shown, problems = readable_map({"a": "1", "n": 5, SURROGATE: "x"}, "labels")
    assert shown == {"a": "1", "n": "5", REPLACEMENT: "x"}
    assert problems == ["labels.n: stored as a number, not text", "labels: holds a lone surrogate or NUL"]
    assert readable_map(["a"], "labels") == ({}, ["labels: stored as a list, not an object"])


def test_any_json_keeps_its_shape_with_every_text_repaired() -> None:
    stored = {"alerts": [{"labels": {"v": SURROGATE}, "n": 1}], "ok": True}
    shown, problems = readable_json(stored, "notification")
    assert shown == {"alerts": [{"labels": {"v": REPLACEMENT}, "n": 1}], "ok": True}
    assert problems == ["notification.alerts.0.labels.v: holds a lone surrogate or NUL"]


def test_a_list_of_texts() -> None:
    assert readable_list(["a", 2], "fingerprints") == (
        ["a", "2"],
        ["fingerprints.1: stored as a number, not text"],
    )
    assert readable_list(None, "matchers") == ([], ["matchers: stored as null, not a list"])


def test_showable_returns_the_same_text_when_nothing_needs_replacing() -> None:
    sound = "plain text"
    assert showable(sound) is sound
    assert showable(f"x{SURROGATE}\x00") == f"x{REPLACEMENT}{REPLACEMENT}"
