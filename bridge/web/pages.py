"""What every page shares: templates, security headers, and the guard against foreign forms.

Pages load nothing from elsewhere and are never framed; the on-call pages carry no script at
all, the /ui/ pages only the bridge's own script file (no inline script). A page may be
opened from a link that is itself a credential (an on-call page's), so it is never cached and
its address never leaves as a Referer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
# The paths the pages are served under; every answer there carries SECURITY_HEADERS.
PAGE_PATHS = ("/oncall/", "/static/", "/login", "/logout", "/ui/")

SECURITY_HEADERS = {
    # The bridge's own origin only, and no script of any kind.
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}
# The engineers' and hospitals' pages (queue, tickets, maintenance, updates, agents): the same,
# but the bridge's own script file (bridge/web/static/dyzur.js, the queue's refresh) may run;
# no inline script, nothing from elsewhere.
UI_PATHS = ("/ui",)
UI_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
}
# /docs and /redoc (bridge/web/docs.py) run the vendored Swagger UI and Redoc: script files of
# the bridge's own origin only (no inline script, no eval), their inline styles, the data: images
# of Swagger UI's stylesheet and Redoc's search worker, which it builds from a blob: URL of this
# origin. Nothing from elsewhere, no font, and never framed.
DOCS_SECURITY_HEADERS = {
    **SECURITY_HEADERS,
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'none'; "
    "worker-src blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
}

_templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a missing value is a defect, not an empty field
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request, template: str, status: int, language: str, **context: object
) -> HTMLResponse:
    """The page ``template`` in ``language`` (the ``lang`` of the document), answered with
    ``status``."""
    root = request.scope.get("root_path", "")
    html = _templates.get_template(template).render(
        lang=language, stylesheet=f"{root}/static/dyzur.css", **context
    )
    return HTMLResponse(html, status_code=status)


def static_files() -> StaticFiles:
    """The pages' stylesheet (and later images), served by the bridge itself."""
    return StaticFiles(directory=STATIC)


class PageHeaders:
    """Pure ASGI middleware: ``headers`` (SECURITY_HEADERS) on every answer under
    ``prefixes``, the errors and redirects of those paths included."""

    def __init__(
        self,
        app: ASGIApp,
        prefixes: Iterable[str],
        headers: Mapping[str, str] = SECURITY_HEADERS,
    ) -> None:
        self.app = app
        self.prefixes = tuple(prefixes)
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefixes):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _origin(url: str) -> tuple[str, str, int] | None:
    """scheme, host and port of an origin or URL (the port filled in); None when it is none."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.scheme, parts.hostname.lower(), port or (443 if parts.scheme == "https" else 80)


def foreign_form(request: Request, public_url: str | None) -> bool:
    """Whether a form POST came from a page of another site: its ``Origin`` names another
    origin than the bridge's own (``public_url``'s, or the address it was reached at).

    ``Origin: null`` is what browsers send for the bridge's own form, since its pages carry
    ``Referrer-Policy: no-referrer``; it counts as foreign only when the browser also says the
    request is not same-origin (``Sec-Fetch-Site``). A client that sends no Origin (curl, a
    script) is not a browser page of another site."""
    headers: Mapping[str, str] = request.headers
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        return True
    if origin is None or origin == "null":
        return False
    own = {_origin(str(request.base_url))}
    if public_url is not None:
        own.add(_origin(public_url))
    found = _origin(origin)
    return found is None or found not in own
