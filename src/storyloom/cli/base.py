"""Shared CLI plumbing: the Typer app, an API client, and error printing (output formats: `output.py`)."""

from __future__ import annotations

import os
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console

app = typer.Typer(
    help="Storyloom: the operations layer for AI fiction pipelines.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_URL = "http://127.0.0.1:8700"


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class ApiClient:
    """Talks to a running Storyloom (`STORYLOOM_URL`, `STORYLOOM_TOKEN`); prints the API's error on failure."""

    def __init__(self, url: str | None = None, token: str | None = None) -> None:
        self.url = (url or os.environ.get("STORYLOOM_URL") or DEFAULT_URL).rstrip("/")
        token = token or os.environ.get("STORYLOOM_TOKEN") or os.environ.get("STORYLOOM_ADMIN_TOKEN")
        if not token:
            fail(
                "no token: set STORYLOOM_TOKEN (create one with `storyloom token create --role operator --name me`)"
            )
        self.client = httpx.Client(
            base_url=self.url,
            timeout=30.0,
            headers={"Authorization": f"Bearer {token}", "X-Storyloom-Client": "cli"},
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach Storyloom at {self.url}: {exc}. Is `storyloom run` running? (set STORYLOOM_URL)"
            )
        if response.status_code >= 400:
            try:
                body = response.json()
                message = body.get("detail") or body.get("title") or response.text
            except ValueError:
                message = response.text
            fail(f"{response.status_code} {message}")
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)
