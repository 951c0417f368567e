"""The Ops console (docs/reference/http-api.md): server-rendered Jinja2 over the services, updated live over SSE.

One router for the application, gathered from the console's areas: sign-in (signin.py), the Overview and
plans (plan_pages.py), the alerting pages (alert_pages.py); the shared plumbing is in render.py.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import RedirectResponse

from storyloom.console import alert_pages, plan_pages, signin
from storyloom.console.render import STATIC_DIR

__all__ = ["STATIC_DIR", "router"]

router = APIRouter(include_in_schema=False)
for area in (signin, plan_pages, alert_pages):
    router.include_router(area.router)


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> RedirectResponse:
    """Browsers that ask for /favicon.ico before reading the page's icon link get the console's icon."""
    return RedirectResponse("/static/favicon.svg", status_code=301)
