"""Server-rendered pages of dyzur: what a person opens in a browser rather than calls.

Each area of pages is a router of its own (``oncall``: the page behind the link in an on-call
page); ``pages`` holds what they share — the Jinja2 templates and static files in this package,
the security headers every page carries, and the guard against a form posted from another
site. Like ``bridge.api``, the pages call the bridge's services through narrow dependencies
and never reach into a store. ``add_pages`` mounts them on the app the factory builds.
"""

from __future__ import annotations

from fastapi import FastAPI

from bridge.web.agents_page import router as agents_pages
from bridge.web.docs import router as docs_pages
from bridge.web.incidents_page import router as incidents_pages
from bridge.web.login import router as login_pages
from bridge.web.maintenance_page import router as maintenance_pages
from bridge.web.oncall import router as oncall_pages
from bridge.web.pages import PAGE_PATHS, UI_PATHS, UI_SECURITY_HEADERS, PageHeaders, static_files
from bridge.web.queue import router as queue_pages
from bridge.web.session import install as install_sessions
from bridge.web.ticket_page import router as ticket_pages
from bridge.web.updates_page import router as updates_pages


def add_pages(app: FastAPI) -> None:
    """Mount the pages' routers and static files, with their security headers."""
    # The login form and logout; the answers of a page without a session (to the form)
    # and of a refused state-changing request (403).
    app.include_router(login_pages)
    install_sessions(app)
    app.include_router(oncall_pages)
    # The engineers' and hospitals' pages under /ui/; a later page (deliveries, on-call)
    # adds its router here and its nav item to bridge.web.layout.NAV.
    for pages in (
        queue_pages,
        ticket_pages,
        incidents_pages,
        maintenance_pages,
        updates_pages,
        agents_pages,
    ):
        app.include_router(pages)
    app.include_router(docs_pages)
    app.mount("/static", static_files(), name="static")
    app.add_middleware(PageHeaders, prefixes=PAGE_PATHS)
    app.add_middleware(PageHeaders, prefixes=UI_PATHS, headers=UI_SECURITY_HEADERS)
