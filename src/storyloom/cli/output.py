"""How the CLI prints data: tables on a terminal, whole tab-separated values in a pipe, JSON on request.

In a pipe (stdout not a terminal) nothing is wrapped, truncated or decorated: a list prints one line per
row, its columns separated by tabs, without a header (like `gh`), so `cut -f1` gives whole ids; a `show`
prints `field<TAB>value` lines, then one line per row of each section, led by the section's name.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output(StrEnum):
    AUTO = "auto"
    TABLE = "table"
    TSV = "tsv"
    JSON = "json"


def output_option() -> Any:
    return typer.Option(
        Output.AUTO,
        "--output",
        "-o",
        case_sensitive=False,
        help="table (the default on a terminal), tsv (the default in a pipe: whole values, tab-separated, "
        "no header) or json.",
    )


def chosen(output: Output) -> Output:
    """`auto` becomes `table` when stdout is a terminal, else `tsv`."""
    if output is not Output.AUTO:
        return output
    return Output.TABLE if sys.stdout.isatty() else Output.TSV


def cell(value: Any) -> str:
    """One value as text on one line: nothing for None, lists joined with commas, objects as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value)
    if isinstance(value, Mapping):
        return " ".join(f"{k}={cell(v)}" for k, v in value.items())
    return " ".join(str(value).split())


def _keeps_whole(column: str) -> bool:
    """Ids and fingerprints never fold, even in a narrow terminal: they are copied whole."""
    return column in ("id", "fingerprint") or column.endswith("_id")


WORD_CAP = 40  # a word longer than this (a URL, say) may fold; shorter ones never break
COLUMN_GAP = 2


def _minimum(column: str, values: Sequence[str]) -> int:
    """A column's narrowest width: its header and its longest word whole (ids whole however long), so
    text wraps between words and never inside an id, a timestamp or a status."""
    longest = max([len(column), *(len(word) for value in values for word in value.split())])
    return longest if _keeps_whole(column) else min(longest, WORD_CAP)


def _fitting(rows: Sequence[Sequence[str]], columns: Sequence[str], width: int) -> dict[int, int]:
    """The columns that fit `width` (in order, always the first) with each one's minimum width."""
    kept: dict[int, int] = {}
    used = 0
    for index, column in enumerate(columns):
        minimum = _minimum(column, [r[index] for r in rows])
        cost = minimum + (COLUMN_GAP if kept else 0)
        if kept and used + cost > width:
            continue
        kept[index] = minimum
        used += cost
    return kept


def _print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], title: str | None) -> None:
    console = Console()
    cells = [[cell(row.get(c)) for c in columns] for row in rows]
    kept = _fitting(cells, columns, console.width)
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, COLUMN_GAP // 2)
    )
    for index, minimum in kept.items():
        column = columns[index]
        table.add_column(column, no_wrap=_keeps_whole(column), min_width=minimum, overflow="fold")
    for row_cells in cells:
        table.add_row(*(Text(row_cells[i]) for i in kept))
    console.print(table)
    left_out = [column for i, column in enumerate(columns) if i not in kept]
    if left_out:
        console.print(
            Text(
                f"({', '.join(left_out)} left out to fit the terminal: widen it, or use --output tsv or json)"
            ),
            style="dim",
        )


def _tsv_line(values: Sequence[Any]) -> str:
    return "\t".join(cell(v).replace("\t", " ") for v in values)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    title: str,
    output: Output,
    data: Any = None,
) -> None:
    """A list: a table, tab-separated lines, or `data` (default: the rows) as JSON."""
    mode = chosen(output)
    if mode is Output.JSON:
        print_json(rows if data is None else data)
    elif mode is Output.TSV:
        for row in rows:
            typer.echo(_tsv_line([row.get(c) for c in columns]))
    elif not rows:
        typer.echo(f"(no {title})")
    else:
        _print_table(rows, columns, title)


@dataclass(frozen=True)
class Section:
    """A list inside a `show`: its name, rows and columns."""

    name: str
    rows: Sequence[Mapping[str, Any]]
    columns: Sequence[str]


def print_record(
    fields: Mapping[str, Any], sections: Sequence[Section], *, output: Output, data: Any
) -> None:
    """A `show`: the fields, then each section; or `data` as JSON."""
    mode = chosen(output)
    if mode is Output.JSON:
        print_json(data)
        return
    if mode is Output.TSV:
        for key, value in fields.items():
            typer.echo(_tsv_line([key, value]))
        for section in sections:
            for row in section.rows:
                typer.echo(_tsv_line([section.name, *(row.get(c) for c in section.columns)]))
        return
    console = Console()
    width = max(len(k) for k in fields)
    for key, value in fields.items():
        console.print(Text.assemble((key.ljust(width), "bold"), "  ", cell(value)), soft_wrap=True)
    for section in sections:
        console.print()
        if section.rows:
            _print_table(section.rows, section.columns, section.name)
        else:
            console.print(f"(no {section.name})")


def print_result(message: str, data: Any, *, output: Output) -> None:
    """What an action command prints: its one-line message, or the API's answer as JSON."""
    if chosen(output) is Output.JSON:
        print_json(data)
    else:
        typer.echo(message)
