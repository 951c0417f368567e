"""Operator flows over the API: plans, backlog, obligations, health."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from storyloom.cli.base import ApiClient, console, fail, output_option, print_json, print_table

BACKLOG_COLUMNS = [
    "backlog_id",
    "phase",
    "status",
    "agent_id",
    "persona_id",
    "provider",
    "model",
    "task_id",
    "attempts",
    "last_error",
]


def watch_plan(client: ApiClient, plan_id: str, timeout: float) -> None:
    """A progress bar over the plan's backlog; exits 1 when an item fails or blocks, or on timeout."""
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task(plan_id, total=None)
        while True:
            items = client.get(f"/api/fiction/plans/{plan_id}/backlog")
            done = sum(1 for i in items if i["status"] == "complete")
            stuck = [i for i in items if i["status"] in ("failed", "blocked")]
            running = next((i["backlog_id"] for i in items if i["status"] == "in_progress"), "")
            progress.update(bar, total=len(items), completed=done, description=f"{plan_id} {running}".strip())
            if stuck:
                progress.stop()
                fail("; ".join(f"{i['backlog_id']} is {i['status']}: {i['last_error']}" for i in stuck))
            if client.get(f"/api/fiction/plans/{plan_id}")["status"] == "complete":
                return
            if time.monotonic() > deadline:
                progress.stop()
                fail(
                    f"plan {plan_id} did not complete within {timeout:g}s ({done}/{len(items)} items complete)"
                )
            time.sleep(0.5)


def register(app: typer.Typer) -> None:
    plan_app = typer.Typer(help="Fiction plans.", no_args_is_help=True)
    backlog_app = typer.Typer(help="Backlog items.", no_args_is_help=True)
    obligations_app = typer.Typer(help="Persona obligations.", no_args_is_help=True)
    app.add_typer(plan_app, name="plan")
    app.add_typer(backlog_app, name="backlog")
    app.add_typer(obligations_app, name="obligations")

    @plan_app.command("create")
    def plan_create(
        name: str = typer.Option(..., "--name"),
        premise: str = typer.Option(..., "--premise"),
        persona: str = typer.Option(..., "--persona", help="the author persona id"),
        agent: str | None = typer.Option(None, "--agent"),
        project_title: str | None = typer.Option(None, "--project-title"),
        provider: str | None = typer.Option(None, "--provider"),
        model: str | None = typer.Option(None, "--model"),
        wait: bool = typer.Option(False, "--wait", help="show progress until the plan completes or stalls"),
        timeout: float = typer.Option(600, "--timeout", help="seconds to wait with --wait"),
        as_json: bool = output_option(),
    ) -> None:
        """Create and start a plan."""
        body = {
            "name": name,
            "premise": premise,
            "persona_id": persona,
            "agent_id": agent,
            "project_title": project_title,
            "provider": provider,
            "model": model,
        }
        client = ApiClient()
        plan = client.post("/api/fiction/plans", {k: v for k, v in body.items() if v is not None})
        if as_json:
            print_json(plan)
        else:
            typer.echo(plan["plan_id"])
        if wait:
            watch_plan(client, plan["plan_id"], timeout)

    @plan_app.command("list")
    def plan_list(as_json: bool = output_option()) -> None:
        """List plans."""
        plans = ApiClient().get("/api/fiction/plans")
        if as_json:
            print_json(plans)
            return
        for p in plans:
            p["counts"] = " ".join(f"{k}={v}" for k, v in sorted(p["counts"].items()))
        print_table(
            plans,
            ["plan_id", "name", "status", "persona_id", "agent_id", "provider", "model", "counts"],
            "plans",
        )

    @plan_app.command("watch")
    def plan_watch(plan_id: str, timeout: float = typer.Option(600, "--timeout")) -> None:
        """Show the plan's progress until it completes, or stops on a failed or blocked item."""
        watch_plan(ApiClient(), plan_id, timeout)

    @plan_app.command("show")
    def plan_show(plan_id: str) -> None:
        """Show a plan with its checkpoints and backlog."""
        client = ApiClient()
        plan = client.get(f"/api/fiction/plans/{plan_id}")
        plan["backlog"] = client.get(f"/api/fiction/plans/{plan_id}/backlog")
        print_json(plan)

    @backlog_app.command("list")
    def backlog_list(
        plan_id: str, status: str | None = typer.Option(None, "--status"), as_json: bool = output_option()
    ) -> None:
        """List a plan's backlog items."""
        items = ApiClient().get(f"/api/fiction/plans/{plan_id}/backlog")
        items = [i for i in items if status is None or i["status"] == status]
        if as_json:
            print_json(items)
        else:
            print_table(items, BACKLOG_COLUMNS, "backlog items")

    @backlog_app.command("actions")
    def backlog_actions(plan_id: str, as_json: bool = output_option()) -> None:
        """The plan's action log, newest first."""
        actions = ApiClient().get(f"/api/fiction/plans/{plan_id}/backlog/actions")
        if as_json:
            print_json(actions)
        else:
            print_table(
                actions, ["time", "action", "backlog_id", "actor", "source", "agent_id", "status"], "actions"
            )

    @backlog_app.command("resume")
    def backlog_resume(
        plan_id: str,
        backlog_id: str,
        agent: str = typer.Option(..., "--agent", help="the agent to act as"),
        provider: str = typer.Option(..., "--provider"),
        model: str = typer.Option(..., "--model"),
        task: str | None = typer.Option(
            None, "--task", help="the item's latest task id (guards against races)"
        ),
        notes: str | None = typer.Option(None, "--notes"),
    ) -> None:
        """Resume a failed, blocked, cancelled or stale backlog item."""
        body = {"agent_id": agent, "provider": provider, "model": model, "task_id": task, "notes": notes}
        result = ApiClient().post(
            f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume",
            {k: v for k, v in body.items() if v is not None},
        )
        typer.echo(f"resumed {backlog_id} as task {result['task_id']}")

    @backlog_app.command("cancel")
    def backlog_cancel(
        plan_id: str,
        backlog_id: str,
        agent: str = typer.Option(..., "--agent", help="the agent to act as (of the plan's author persona)"),
        notes: str | None = typer.Option(None, "--notes"),
    ) -> None:
        """Cancel a backlog item that is not complete (resume brings it back)."""
        body = {"agent_id": agent, "notes": notes}
        result = ApiClient().post(
            f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/cancel",
            {k: v for k, v in body.items() if v is not None},
        )
        stopped = result["cancelled_task_id"]
        typer.echo(f"cancelled {backlog_id}" + (f" (task {stopped} stopped)" if stopped else ""))

    @obligations_app.command("list")
    def obligations_list(
        plan_id: str,
        status: str | None = typer.Option(None, "--status", help="open, resolved or dismissed"),
        page: int = typer.Option(1, "--page", min=1),
        page_size: int = typer.Option(50, "--page-size", min=1, max=200),
        as_json: bool = output_option(),
    ) -> None:
        """List a plan's persona obligations."""
        data = ApiClient().get(
            f"/api/fiction/plans/{plan_id}/persona-obligations", status=status, page=page, page_size=page_size
        )
        if as_json:
            print_json(data)
        else:
            print_table(
                data["items"],
                ["obligation_id", "slug", "status", "persona_id", "voice_drift", "title"],
                "obligations",
            )

    @obligations_app.command("resolve")
    def obligations_resolve(
        plan_id: str,
        obligation_id: str,
        notes: str = typer.Option(..., "--notes", help="what was done (required)"),
        agent: str = typer.Option(..., "--agent", help="the agent to act as"),
        dismiss: bool = typer.Option(False, "--dismiss", help="dismiss instead of resolve"),
        voice_drift: bool | None = typer.Option(None, "--voice-drift/--no-voice-drift"),
    ) -> None:
        """Resolve (or dismiss) an obligation."""
        body: dict[str, object] = {
            "action": "dismiss" if dismiss else "resolve",
            "notes": notes,
            "agent_id": agent,
        }
        if voice_drift is not None:
            body["voice_drift"] = voice_drift
        result = ApiClient().post(
            f"/api/fiction/plans/{plan_id}/persona-obligations/{obligation_id}/resolve", body
        )
        typer.echo(f"{obligation_id} is {result['status']}")

    @app.command("health")
    def health(as_json: bool = output_option()) -> None:
        """Print the PlannerHealth report."""
        report = ApiClient().get("/api/diagnostics/planner")
        if as_json:
            print_json(report)
            return
        typer.echo(f"status: {report['status']}")
        for warning in report.get("warnings", []):
            typer.echo(f"- {warning}")
        print_table(
            report.get("alerts", []), ["alert_id", "severity", "fingerprint", "title"], "firing alerts"
        )
