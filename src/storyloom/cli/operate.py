"""Operator flows over the API: plans, backlog, obligations, health."""

from __future__ import annotations

import time
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from storyloom.cli.base import ApiClient, console, err_console, fail
from storyloom.cli.output import (
    Output,
    Section,
    output_option,
    print_record,
    print_result,
    print_rows,
)

# Most useful first: a narrow terminal leaves the last columns out (a pipe always gets them all).
BACKLOG_COLUMNS = [
    "backlog_id",
    "status",
    "attempts",
    "task_id",
    "phase",
    "agent_id",
    "provider",
    "model",
    "persona_id",
    "last_error",
]
PLAN_FIELDS = (
    "plan_id",
    "name",
    "status",
    "persona_id",
    "agent_id",
    "provider",
    "model",
    "branch_slug",
    "project_id",
    "created_at",
    "updated_at",
    "completed_at",
    "counts",
    "premise",
)
CHECKPOINT_COLUMNS = ["phase_key", "phase", "status", "locked_by_agent", "task_id", "last_step", "updated_at"]
RESUME_CHOICE = ("agent_id", "provider", "model")


def resume_defaults(client: ApiClient, plan_id: str, backlog_id: str) -> tuple[dict[str, str | None], str]:
    """Agent, provider and model as the console's Resume dialog pre-fills them: those of the last resume
    on the plan (the latest choice that worked), else the item's own; and where they came from."""
    actions = client.get(f"/api/fiction/plans/{plan_id}/backlog/actions")
    last = next((a for a in actions if a.get("action") == "resume"), None)
    if last is not None:
        source = f"the last resume on this plan ({last.get('backlog_id')} by {last.get('actor')})"
        return {k: last.get(k) for k in RESUME_CHOICE}, source
    items = client.get(f"/api/fiction/plans/{plan_id}/backlog")
    item: dict[str, Any] = next((i for i in items if i["backlog_id"] == backlog_id), {})
    return {k: item.get(k) for k in RESUME_CHOICE}, "the item"


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
        output: Output = output_option(),
    ) -> None:
        """Create and start a plan; prints its id."""
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
        print_result(plan["plan_id"], plan, output=output)
        if wait:
            watch_plan(client, plan["plan_id"], timeout)

    @plan_app.command("list")
    def plan_list(output: Output = output_option()) -> None:
        """List plans."""
        plans = ApiClient().get("/api/fiction/plans")
        rows = [{**p, "counts": dict(sorted(p["counts"].items()))} for p in plans]
        print_rows(
            rows,
            ["plan_id", "name", "status", "persona_id", "agent_id", "provider", "model", "counts"],
            title="plans",
            output=output,
            data=plans,
        )

    @plan_app.command("watch")
    def plan_watch(plan_id: str, timeout: float = typer.Option(600, "--timeout")) -> None:
        """Show the plan's progress until it completes, or stops on a failed or blocked item."""
        watch_plan(ApiClient(), plan_id, timeout)

    @plan_app.command("show")
    def plan_show(plan_id: str, output: Output = output_option()) -> None:
        """Show a plan with its checkpoints and backlog."""
        client = ApiClient()
        plan = client.get(f"/api/fiction/plans/{plan_id}")
        plan["backlog"] = client.get(f"/api/fiction/plans/{plan_id}/backlog")
        print_record(
            {k: plan.get(k) for k in PLAN_FIELDS},
            [
                Section("checkpoints", plan.get("checkpoints", []), CHECKPOINT_COLUMNS),
                Section("backlog", plan["backlog"], BACKLOG_COLUMNS),
            ],
            output=output,
            data=plan,
        )

    @backlog_app.command("list")
    def backlog_list(
        plan_id: str, status: str | None = typer.Option(None, "--status"), output: Output = output_option()
    ) -> None:
        """List a plan's backlog items."""
        items = ApiClient().get(f"/api/fiction/plans/{plan_id}/backlog")
        items = [i for i in items if status is None or i["status"] == status]
        print_rows(items, BACKLOG_COLUMNS, title="backlog items", output=output)

    @backlog_app.command("actions")
    def backlog_actions(plan_id: str, output: Output = output_option()) -> None:
        """The plan's action log, newest first."""
        actions = ApiClient().get(f"/api/fiction/plans/{plan_id}/backlog/actions")
        print_rows(
            actions,
            ["time", "action", "backlog_id", "actor", "source", "agent_id", "status"],
            title="actions",
            output=output,
        )

    @backlog_app.command("resume")
    def backlog_resume(
        plan_id: str,
        backlog_id: str,
        agent: str | None = typer.Option(None, "--agent", help="the agent to act as"),
        provider: str | None = typer.Option(None, "--provider"),
        model: str | None = typer.Option(None, "--model"),
        task: str | None = typer.Option(
            None, "--task", help="the item's latest task id (guards against races)"
        ),
        notes: str | None = typer.Option(None, "--notes"),
        output: Output = output_option(),
    ) -> None:
        """Resume a failed, blocked, cancelled or stale backlog item.

        Without --agent, --provider or --model, each missing one is taken as the console's Resume dialog
        pre-fills it: from the last resume on this plan, else from the item itself.
        """
        client = ApiClient()
        chosen: dict[str, str | None] = {"agent_id": agent, "provider": provider, "model": model}
        if None in chosen.values():
            defaults, source = resume_defaults(client, plan_id, backlog_id)
            chosen = {k: v if v is not None else defaults[k] for k, v in chosen.items()}
            err_console.print(
                f"as agent {chosen['agent_id']} on {chosen['provider']}/{chosen['model']} "
                f"(defaults from {source})",
                highlight=False,
                soft_wrap=True,
            )
        body = {**chosen, "task_id": task, "notes": notes}
        result = client.post(
            f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume",
            {k: v for k, v in body.items() if v is not None},
        )
        print_result(f"resumed {backlog_id} as task {result['task_id']}", result, output=output)

    @backlog_app.command("cancel")
    def backlog_cancel(
        plan_id: str,
        backlog_id: str,
        agent: str = typer.Option(..., "--agent", help="the agent to act as (of the plan's author persona)"),
        notes: str | None = typer.Option(None, "--notes"),
        output: Output = output_option(),
    ) -> None:
        """Cancel a backlog item that is not complete (resume brings it back)."""
        body = {"agent_id": agent, "notes": notes}
        result = ApiClient().post(
            f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/cancel",
            {k: v for k, v in body.items() if v is not None},
        )
        stopped = result["cancelled_task_id"]
        message = f"cancelled {backlog_id}" + (f" (task {stopped} stopped)" if stopped else "")
        print_result(message, result, output=output)

    @obligations_app.command("list")
    def obligations_list(
        plan_id: str,
        status: str | None = typer.Option(None, "--status", help="open, resolved or dismissed"),
        page: int = typer.Option(1, "--page", min=1),
        page_size: int = typer.Option(50, "--page-size", min=1, max=200),
        output: Output = output_option(),
    ) -> None:
        """List a plan's persona obligations."""
        data = ApiClient().get(
            f"/api/fiction/plans/{plan_id}/persona-obligations", status=status, page=page, page_size=page_size
        )
        print_rows(
            data["items"],
            ["obligation_id", "slug", "status", "persona_id", "voice_drift", "title"],
            title="obligations",
            output=output,
            data=data,
        )

    @obligations_app.command("resolve")
    def obligations_resolve(
        plan_id: str,
        obligation_id: str,
        notes: str = typer.Option(..., "--notes", help="what was done (required)"),
        agent: str = typer.Option(..., "--agent", help="the agent to act as"),
        dismiss: bool = typer.Option(False, "--dismiss", help="dismiss instead of resolve"),
        voice_drift: bool | None = typer.Option(None, "--voice-drift/--no-voice-drift"),
        output: Output = output_option(),
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
        print_result(f"{obligation_id} is {result['status']}", result, output=output)

    @app.command("health")
    def health(output: Output = output_option()) -> None:
        """Print the PlannerHealth report: its status, warnings and firing alerts."""
        report = ApiClient().get("/api/diagnostics/planner")
        print_record(
            {"status": report["status"], "generated_at": report["generated_at"]},
            [
                Section("warnings", [{"text": w} for w in report.get("warnings", [])], ["text"]),
                Section("alerts", report.get("alerts", []), ["alert_id", "severity", "fingerprint", "title"]),
            ],
            output=output,
            data=report,
        )
