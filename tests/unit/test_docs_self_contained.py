"""The repository stands on its own: nothing a user reads (README, docs/, src/ code, comments, docstrings and
messages) points outside it, and the interface reference's links lead to files that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared|CONTRACTS")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
REFERENCE_PAGES = sorted((ROOT / "docs" / "reference").glob("*.md"))


def readable_files() -> list[Path]:
    """README.md and every text file under docs/ and src/ (build output such as *.egg-info left out)."""
    files = [ROOT / "README.md"]
    for folder in ("docs", "src"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and not any(p.endswith(".egg-info") or p == "__pycache__" for p in path.parts):
                files.append(path)
    return files


def test_nothing_points_outside_the_repository() -> None:
    found = []
    for path in readable_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # images and other binary assets
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not found, "point into docs/reference/ instead:\n" + "\n".join(found)


def test_the_reference_covers_each_interface() -> None:
    assert {p.name for p in REFERENCE_PAGES} >= {
        "README.md",
        "commands.md",
        "config.md",
        "http-api.md",
        "payloads.md",
        "alerts.md",
        "metrics.md",
    }


@pytest.mark.parametrize(
    "page",
    [*REFERENCE_PAGES, ROOT / "README.md", ROOT / "docs" / "contract-extensions.md"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_lead_to_files_that_exist(page: Path) -> None:
    targets = [t for t in LINK.findall(page.read_text()) if "://" not in t]
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_the_catalog_of_alert_ids_in_the_reference_is_complete() -> None:
    from storyloom.domain.catalog import CATALOG

    text = (ROOT / "docs" / "reference" / "alerts.md").read_text()
    assert [alert_id for alert_id in CATALOG if f"`{alert_id}`" not in text] == []


def test_config_check_points_an_unknown_key_into_the_reference(tmp_path: Path) -> None:
    from storyloom.config import ConfigError, load_config

    path = tmp_path / "storyloom.yaml"
    path.write_text("health:\n  evaluate_evry: 30s\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert refused.value.problems == [
        "health.evaluate_evry: unknown key (check the spelling against docs/reference/config.md)"
    ]
