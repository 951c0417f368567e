"""Config reload: the same path as SIGHUP; a config that fails validation keeps the last good one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from storyloom.api.auth import admin, runtime
from storyloom.api.openapi import answers
from storyloom.api.schemas.config import Reloaded
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import Invalid

router = APIRouter(prefix="/api/config", tags=["config"])


@router.post("/reload", responses=answers(Reloaded))
def reload_config(actor: Actor = Depends(admin), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Reload the config file.

    The same path as SIGHUP: a config that fails validation is refused with 422 listing its problems, and the last good one stays in force. Admin only.
    """
    problems = rt.reload()
    if problems:
        raise Invalid(
            "the new config was refused; the last good config stays in force: " + "; ".join(problems[:5]),
            errors=[
                {"loc": ["config", *line.split(":", 1)[0].split(".")], "msg": line.split(":", 1)[-1].strip()}
                for line in problems
            ],
        )
    return {"status": "reloaded", "receivers": sorted(rt.alerting.receivers)}
