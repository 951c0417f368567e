"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from storyloom.api.auth import runtime
from storyloom.api.openapi import answers
from storyloom.api.schemas.system import Liveness, Readiness
from storyloom.runtime import Runtime

router = APIRouter(tags=["system"])


@router.get("/healthz", responses=answers(Liveness))
def healthz() -> dict[str, str]:
    """Liveness: the process answers.

    Always `{"status": "ok"}`; it checks nothing else (use `/readyz` for that).
    """
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=None,
    responses={
        **answers(Readiness, description="Ready: every check is ok"),
        503: {"description": "Not ready: `checks` names what failed", "model": Readiness},
    },
)
def readyz(request: Request, rt: Runtime = Depends(runtime)) -> Any:
    """Readiness: the database answers and the engine runs.

    200 `{status: "ready", checks}` or 503 `{status: "not ready", checks}` naming what failed.
    """
    checks: dict[str, str] = {}
    try:
        with rt.db.read() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # readiness reports any failure instead of raising
        checks["database"] = f"unreachable: {type(exc).__name__}"
    engine = getattr(request.app.state, "engine", None)
    checks["engine"] = "ok" if engine is None or engine.ready() else "not running"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )
