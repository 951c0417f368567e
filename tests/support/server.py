"""A real `storyloom` server process for end-to-end tests: its own data dir, free port and admin token."""

from __future__ import annotations

import fcntl
import os
import pty
import random
import re
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

ADMIN_TOKEN = "sl_test_admin_token_0123456789abcdef"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# Below Linux's ephemeral range (32768-60999): a port the kernel handed out (bind to 0) can be taken as
# the source port of any outgoing connection before the server binds it ("address already in use").
LISTEN_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port no one listens on now, outside the range outgoing connections draw their ports from."""
    for port in random.sample(LISTEN_PORTS, 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {LISTEN_PORTS}")


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.05, message: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


class ServerProcess:
    """`storyloom run` (or `api`/`worker`) as a subprocess; `client` is an admin httpx client."""

    def __init__(
        self,
        data_dir: Path,
        *,
        config: dict[str, Any] | None = None,
        demo: bool = False,
        env: dict[str, str] | None = None,
        role: str = "run",
        port: int | None = None,
        database_url: str | None = None,
        host: str = "127.0.0.1",
        pin_public_url: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        """`pin_public_url=False` leaves `public_url` out of the config file, for the server to derive."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path: Path | None = None
        data_dir.mkdir(parents=True, exist_ok=True)
        if config is not None:
            if pin_public_url:
                config = {"public_url": self.url, **config}
            self.config_path = data_dir / "storyloom.yaml"
            self.config_path.write_text(yaml.safe_dump(config))
        self.env = {
            **os.environ,
            "STORYLOOM_DATA_DIR": str(data_dir),
            "STORYLOOM_ADMIN_TOKEN": ADMIN_TOKEN,
            "STORYLOOM_LOG_FORMAT": "json",
            **(env or {}),
        }
        test_db = database_url or os.environ.get("STORYLOOM_E2E_DATABASE_URL")
        if test_db:
            self.env["STORYLOOM_DATABASE_URL"] = test_db
        self.args = [sys.executable, "-m", "storyloom", role]
        if role != "worker":
            self.args += ["--host", host, "--port", str(self.port)]
        if self.config_path:
            self.args += ["--config", str(self.config_path)]
        if demo:
            self.args.append("--demo")
        self.args += extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"
        self.client = httpx.Client(
            base_url=self.url, timeout=10.0, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )

    def start(self, *, wait: bool = True) -> ServerProcess:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, message=f"{self.url}/readyz")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: a crash, not a shutdown."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace the config file (the server reads it again on SIGHUP or POST /api/config/reload)."""
        assert self.config_path is not None, "started without a config file"
        self.config_path.write_text(yaml.safe_dump(config))

    def send_signal(self, signum: int) -> None:
        assert self.proc is not None and self.proc.poll() is None, "the server is not running"
        self.proc.send_signal(signum)

    def cli(self, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
        """`storyloom ARGS` against this server as the holder of `token`, never of the admin token."""
        env = {**self.cli_env(token), "COLUMNS": "200"}
        return subprocess.run(
            [sys.executable, "-m", "storyloom", *args], env=env, capture_output=True, text=True, timeout=60
        )

    def cli_env(self, token: str | None) -> dict[str, str]:
        env = {k: v for k, v in self.env.items() if k != "STORYLOOM_ADMIN_TOKEN"}
        env["STORYLOOM_URL"] = self.url
        if token:
            env["STORYLOOM_TOKEN"] = token
        return env

    def cli_in_terminal(self, *args: str, token: str, columns: int = 80, timeout: float = 60) -> str:
        """`storyloom ARGS` with stdout and stderr on a pseudo-terminal `columns` wide, as a person types it;
        returns what the terminal showed, without colour codes."""
        env = {**self.cli_env(token), "TERM": "xterm", "NO_COLOR": "1"}
        env.pop("COLUMNS", None)
        controller, terminal = pty.openpty()
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
        proc = subprocess.Popen(
            [sys.executable, "-m", "storyloom", *args],
            env=env,
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            close_fds=True,
        )
        os.close(terminal)
        shown = bytearray()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([controller], [], [], 0.5)
                if not ready:
                    if proc.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # the terminal closed: the command has exited
                    break
                if not chunk:
                    break
                shown += chunk
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            os.close(controller)
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, shown.decode(errors="replace")
        return ANSI_ESCAPE.sub("", shown.decode(errors="replace")).replace("\r\n", "\n")

    def create_token(self, role: str, name: str) -> str:
        """`storyloom token create` on this server's database, as an operator would; returns the token."""
        args = ["token", "create", "--role", role, "--name", name]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        created = self.cli(*args)
        assert created.returncode == 0, created.stderr
        return created.stdout.strip().splitlines()[-1]

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kwargs)


@contextmanager
def running_server(data_dir: Path, **kwargs: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(data_dir, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def seed_author(server: ServerProcess, name: str = "Test Author") -> tuple[str, str]:
    """Create an author persona and its agent through the API; returns (persona_id, agent_id)."""
    persona = server.post("/api/personas", {"name": name, "kind": "author"}).json()
    agent = server.post(
        "/api/agents",
        {
            "name": f"{name} agent",
            "persona_id": persona["id"],
            "provider": "offline",
            "model": "offline-test",
        },
    ).json()
    return persona["id"], agent["id"]


def start_plan(server: ServerProcess, name: str, premise: str, author: tuple[str, str] | None = None) -> str:
    """Create and start a plan through the API as `author` (persona id, agent id; a new one when None)."""
    persona_id, agent_id = author or seed_author(server)
    response = server.post(
        "/api/fiction/plans",
        {"name": name, "premise": premise, "persona_id": persona_id, "agent_id": agent_id},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["plan_id"])


def backlog_status(server: ServerProcess, plan_id: str) -> dict[str, str]:
    return {i["backlog_id"]: i["status"] for i in server.get(f"/api/fiction/plans/{plan_id}/backlog")}
