"""/docs (Swagger UI) and /redoc: the API's documentation pages, with every script, stylesheet
and image served by the bridge itself from ``static/docs/`` (the vendored versions and their
licenses are in its README). FastAPI's own pages load them from a CDN, which a hospital network
without internet cannot reach; the app factory turns those off and mounts this router instead.

Unlike the other pages these run scripts, so they carry their own Content-Security-Policy
(``DOCS_SECURITY_HEADERS``): the bridge's own script files only, no inline script (Swagger UI
is started by ``swagger-init.js``), no font, and nothing from another origin.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

from bridge.web.pages import DOCS_SECURITY_HEADERS

router = APIRouter(include_in_schema=False)

# Under the pages' static files (bridge/web/static/docs/).
ASSETS = "/static/docs"

_SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="{assets}/swagger-ui/swagger-ui.css">
<link rel="icon" type="image/png" href="{assets}/swagger-ui/favicon-32x32.png">
</head>
<body>
<noscript>Dokumentacja API wymaga JavaScriptu; opis API w formacie OpenAPI:
<a href="{openapi}">{openapi}</a>. / The API documentation needs JavaScript; the OpenAPI
document: <a href="{openapi}">{openapi}</a>.</noscript>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{assets}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""


def _urls(request: Request) -> tuple[str, str]:
    """The OpenAPI document's URL and the assets' prefix, behind the app's root_path."""
    root = request.scope.get("root_path", "")
    return f"{root}{request.app.openapi_url}", f"{root}{ASSETS}"


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI on the bridge's OpenAPI document, the "try it out" calls included."""
    openapi, assets = _urls(request)
    html = _SWAGGER_PAGE.format(
        title=escape(f"{request.app.title} API — Swagger UI"),
        assets=escape(assets),
        openapi=escape(openapi),
    )
    return HTMLResponse(html, headers=DOCS_SECURITY_HEADERS)


@router.get("/redoc")
def redoc(request: Request) -> HTMLResponse:
    """Redoc on the same document; without Google's fonts (the page's own sans-serif)."""
    openapi, assets = _urls(request)
    page = get_redoc_html(
        openapi_url=openapi,
        title=f"{request.app.title} API — Redoc",
        redoc_js_url=f"{assets}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{assets}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
    page.headers.update(DOCS_SECURITY_HEADERS)
    return page
