"""Swagger UI at `/docs`, served by Storyloom itself from the `swagger-ui-bundle-v2` package (Swagger UI 5,
which renders OpenAPI 3.1): it works offline (no CDN), and its page runs no inline script."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

ASSETS = "/docs/assets"
INIT = "/docs/swagger-init.js"


def _page(title: str) -> str:
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} API</title>
  <link rel="icon" type="image/png" href="{ASSETS}/favicon-32x32.png">
  <link rel="stylesheet" href="{ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{ASSETS}/swagger-ui-bundle.js"></script>
  <script src="{INIT}"></script>
</body>
</html>
"""


def _init_script(openapi_url: str) -> str:
    return f"""window.ui = SwaggerUIBundle({{
  url: "{openapi_url}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
"""


def install(app: FastAPI) -> None:
    """`/docs`, its init script and the bundled assets (create the app with `docs_url=None`)."""
    router = APIRouter(include_in_schema=False)
    page = _page(app.title)
    script = _init_script(app.openapi_url or "/openapi.json")

    @router.get("/docs", response_class=HTMLResponse)
    def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get(INIT)
    def swagger_init() -> Response:
        return Response(script, media_type="text/javascript")

    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui")
