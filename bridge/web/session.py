"""Who is at the page: the session behind the ``dyzur_session`` cookie, and the checks of a
request that changes something.

A page declares what it needs:

- ``user: PageUser`` — a GET page: a valid session, else a 303 to ``/login?next=<this page>``
  (for the pages' script, ``HX-Request``: 401 with ``HX-Redirect`` to the same place);
- ``user: ActingUser`` — a state-changing request (POST, PUT, DELETE): a valid session, its
  CSRF token (form field ``csrf`` or header ``X-CSRF-Token``, compared in constant time), not
  from a page of another site (``Origin``), and a user who may act (engineer or admin); else
  403 with a page saying why, in both languages. Refusals are counted per source and minute
  in the audit trail (``user.request_refused``; ``role.refused`` for a hospital's user).

Every form of a page carries ``<input type="hidden" name="csrf" value="{{ user.csrf }}">``.
The sessions themselves (server-side, expiry, the guard against guessing) are
``bridge.users.Logins``'; the login form is ``bridge.web.login``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bridge.actions import Action
from bridge.auth import Principal, Role
from bridge.users import Logins, Session
from bridge.web.pages import foreign_form, render

COOKIE = "dyzur_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
LANGUAGES = ("pl", "en")
HOME = "/ui/"


@dataclass(frozen=True, slots=True)
class WebUser:
    """The person at the page."""

    name: str
    role: Role  # ENGINEER, ADMIN or CLIENT
    client: str | None  # for CLIENT
    # "pl" | "en": ?lang= on the request, else the user's choice in the config, else the
    # browser's Accept-Language, else pl.
    language: str
    # This session's CSRF token: every form carries it as the hidden field "csrf".
    csrf: str = field(repr=False)

    @property
    def principal(self) -> Principal:
        """Principal(name, role, client): for the services, and the audit trail's actor."""
        return Principal(self.name, self.role, self.client)

    @property
    def can_act(self) -> bool:
        """Engineers and admins act; a hospital's user only looks."""
        return self.role in (Role.ENGINEER, Role.ADMIN)


class LoginRequired(Exception):
    """No valid session for a page: off to the login form, and back to ``next_path`` after."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageRefused(Exception):
    """403 for a state-changing request: ``reason`` is no_session, csrf, foreign_origin or
    role."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- reading the request ---------------------------------------------------------------------


def get_logins(request: Request) -> Logins:
    return request.app.state.bridge.logins


def source_of(request: Request) -> str:
    return request.client.host if request.client else "?"


def root_of(request: Request) -> str:
    return str(request.scope.get("root_path", ""))


def browser_language(header: str | None) -> str:
    """pl or en, whichever the browser's Accept-Language prefers (q-values honoured); pl when
    it names neither."""
    best, best_q = "pl", 0.0
    for position, item in enumerate((header or "").split(",")[:20]):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        q -= position * 1e-6  # of equal q-values, the first
        if q > best_q:
            best, best_q = primary, q
    return best


def language_of(request: Request, preferred: str | None = None) -> str:
    """?lang= of the request, else ``preferred`` (the user's), else the browser's."""
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    if preferred in LANGUAGES:
        return preferred
    return browser_language(request.headers.get("accept-language"))


def local_next(value: str | None) -> str:
    """Where to go after logging in: ``value`` if it is a page of the bridge under /ui/ (no
    other site, scheme, backslash, control character or ``..``), else /ui/."""
    if not value or len(value) > 2000 or not value.startswith(HOME):
        return HOME
    if any(ord(c) < 0x21 or ord(c) == 0x7F or c == "\\" for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or ".." in parts.path.split("/"):
        return HOME
    return value


def this_page(request: Request) -> str:
    """The page asked for, under the bridge's root path, with its query."""
    path = request.scope["path"]
    root = root_of(request)
    if root and path.startswith(root):
        path = path[len(root) :]
    query = request.url.query
    return local_next(f"{path}?{query}" if query else path)


async def current_session(request: Request) -> Session | None:
    """The session of the request's cookie, if it is valid now."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    return await run_in_threadpool(get_logins(request).resume, cookie)


def web_user(request: Request, session: Session) -> WebUser:
    user = session.user
    return WebUser(
        user.name, user.role, user.client, language_of(request, user.language), session.csrf
    )


async def presented_csrf(request: Request) -> str:
    """The CSRF token the request carries: the X-CSRF-Token header, else the form's ``csrf``."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return ""
    form = await request.form()
    value = form.get(CSRF_FIELD)
    return "" if value is None or isinstance(value, UploadFile) else value


def csrf_matches(presented: str, expected: str) -> bool:
    return bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def refuse(request: Request, action: str, actor: str = "unknown", **detail: object) -> None:
    """Count a refused request in the audit trail (per source and minute) and the log."""
    request.app.state.bridge.refused(
        action,
        source_of(request),
        f"{request.method} {request.url.path}",
        actor,
        detail.pop("client", None),
        **detail,
    )


# --- the dependencies ------------------------------------------------------------------------


async def page_user(request: Request) -> WebUser:
    """The user of a page shown by GET: a valid session, else LoginRequired (to the form)."""
    session = await current_session(request)
    if session is None:
        raise LoginRequired(this_page(request))
    return web_user(request, session)


async def acting_user(request: Request) -> WebUser:
    """The user of a request that changes something: a valid session, its CSRF token, from
    the bridge's own pages, and allowed to act; else PageRefused (403), counted."""
    if foreign_form(request, request.app.state.bridge.config.public_url):
        refuse(request, Action.USER_REQUEST_REFUSED, reason="foreign_origin")
        raise PageRefused("foreign_origin")
    session = await current_session(request)
    if session is None:
        refuse(request, Action.USER_REQUEST_REFUSED, reason="no_session")
        raise PageRefused("no_session")
    user = web_user(request, session)
    if not csrf_matches(await presented_csrf(request), user.csrf):
        refuse(request, Action.USER_REQUEST_REFUSED, user.name, client=user.client, reason="csrf")
        raise PageRefused("csrf")
    if not user.can_act:
        role = f"client:{user.client}" if user.role is Role.CLIENT else user.role.value
        refuse(request, Action.ROLE_REFUSED, user.name, client=user.client, role=role)
        raise PageRefused("role")
    return user


PageUser = Annotated[WebUser, Depends(page_user)]
ActingUser = Annotated[WebUser, Depends(acting_user)]


# --- the answers -----------------------------------------------------------------------------

REFUSED_TEXTS = {
    "pl": {
        "title": "Żądanie odrzucone",
        "no_session": "Nie ma sesji (wygasła albo wylogowano): zaloguj się ponownie.",
        "csrf": "Brak ważnego tokenu formularza (CSRF). Wróć, odśwież stronę i spróbuj ponownie.",
        "foreign_origin": "Formularz przysłany z innej strony nie jest przyjmowany.",
        "role": "Twoja rola pozwala przeglądać, nie działać: zrobi to inżynier serwisu.",
    },
    "en": {
        "title": "Request refused",
        "no_session": "No session (it expired, or you logged out): log in again.",
        "csrf": "The form's security token (CSRF) is missing or wrong. Go back, reload the page "
        "and try again.",
        "foreign_origin": "A form sent from another site is not accepted.",
        "role": "Your role may look, not act: a service engineer will do it.",
    },
}

# A link followed from another site (a ticket's link in an e-mail) comes without the cookie,
# which is SameSite=Strict; the same address again, asked by this page, brings it.
_RELOAD = (
    '<!doctype html><html><head><meta charset="utf-8">'
    '<meta http-equiv="refresh" content="0"><title>dyzur</title></head><body></body></html>'
)


def login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = f"{root_of(request)}/login?{urlencode({'next': exc.next_path})}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=401, headers={"HX-Redirect": target})
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    if cross_site and request.method == "GET" and COOKIE not in request.cookies:
        return HTMLResponse(_RELOAD)
    return RedirectResponse(target, status_code=303)


def page_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageRefused)
    reasons = [
        (REFUSED_TEXTS[lang]["title"], REFUSED_TEXTS[lang][exc.reason], lang) for lang in LANGUAGES
    ]
    first = language_of(request)
    reasons.sort(key=lambda r: r[2] != first)
    return render(request, "refused.html", 403, first, title=reasons[0][0], reasons=reasons)


def install(app: FastAPI) -> None:
    """The answers of LoginRequired and PageRefused."""
    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageRefused, page_refused)
