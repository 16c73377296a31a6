"""The login form (GET and POST ``/login``) and logging out (POST ``/logout``).

The form is in Polish or English by the browser's Accept-Language (``?lang=`` chooses). A
login that succeeds gets a new session (the one the browser had is ended: no fixation) in the
``dyzur_session`` cookie — HttpOnly, SameSite=Strict, Path=/, Secure when the request came
over TLS — and a 303 to ``next`` if that is a page under /ui/, else to /ui/. A wrong password
and an unknown name get the same answer (401); an attempt too soon after failures, or while
the name or the source is locked out, gets 429 with Retry-After. Logging out needs the
session's CSRF token; it ends the session in the store and clears the cookie.
"""

from __future__ import annotations

import math
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bridge.actions import Action
from bridge.clock import WARSAW
from bridge.users import LoginRefused, Refusal
from bridge.web.pages import foreign_form, render
from bridge.web.session import (
    COOKIE,
    LANGUAGES,
    PageRefused,
    csrf_matches,
    current_session,
    get_logins,
    language_of,
    local_next,
    presented_csrf,
    refuse,
    root_of,
    source_of,
)

router = APIRouter(include_in_schema=False)

LOGIN = {
    "pl": {
        "title": "Logowanie",
        "name": "Nazwa użytkownika",
        "password": "Hasło",
        "button": "Zaloguj się",
        "wrong": "Nieprawidłowa nazwa użytkownika lub hasło.",
        "throttled": "Zbyt wiele nieudanych prób. Spróbuj ponownie za {seconds} s.",
        "locked": "Zbyt wiele nieudanych prób: logowanie jest zablokowane do {at}.",
        "foreign": "Formularz przysłany z innej strony nie jest przyjmowany.",
        "logged_out": "Wylogowano.",
        "other": "English",
    },
    "en": {
        "title": "Log in",
        "name": "User name",
        "password": "Password",
        "button": "Log in",
        "wrong": "Wrong user name or password.",
        "throttled": "Too many failed attempts. Try again in {seconds} s.",
        "locked": "Too many failed attempts: logging in is locked until {at}.",
        "foreign": "A form sent from another site is not accepted.",
        "logged_out": "You are logged out.",
        "other": "Polski",
    },
}


def login_page(
    request: Request,
    language: str,
    next_path: str,
    status: int = 200,
    message: str = "",
    message_class: str = "warn",
) -> HTMLResponse:
    root = root_of(request)
    t = LOGIN[language]
    other = next(lang for lang in LANGUAGES if lang != language)
    return render(
        request,
        "login.html",
        status,
        language,
        title=t["title"],
        texts=t,
        action=f"{root}/login",
        next_path=next_path,
        message=message,
        message_class=message_class,
        other_lang=other,
        other_href=f"{root}/login?{urlencode({'next': next_path, 'lang': other})}",
    )


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if not isinstance(v, UploadFile)}


def session_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    """The form; a browser that is logged in already goes on to ``next``."""
    next_path = local_next(next)
    if await current_session(request) is not None:
        return RedirectResponse(root_of(request) + next_path, status_code=303)
    language = language_of(request)
    if request.query_params.get("logged_out"):
        t = LOGIN[language]
        return login_page(
            request, language, next_path, message=t["logged_out"], message_class="done"
        )
    return login_page(request, language, next_path)


@router.post("/login", response_class=HTMLResponse)
async def log_in(request: Request) -> Response:
    form = await _form(request)
    chosen = form.get("lang")
    language = chosen if chosen in LANGUAGES else language_of(request)
    next_path = local_next(form.get("next"))
    t = LOGIN[language]
    if foreign_form(request, request.app.state.bridge.config.public_url):
        refuse(request, Action.USER_REQUEST_REFUSED, reason="foreign_origin")
        return login_page(request, language, next_path, 403, t["foreign"])
    logins = get_logins(request)
    try:
        done = await run_in_threadpool(
            logins.log_in,
            form.get("name", ""),
            form.get("password", ""),
            source_of(request),
            request.cookies.get(COOKIE),
        )
    except LoginRefused as exc:
        return refused_login(request, language, next_path, exc)
    response = RedirectResponse(root_of(request) + next_path, status_code=303)
    session_cookie(response, request, done.session_id)
    return response


def refused_login(
    request: Request, language: str, next_path: str, exc: LoginRefused
) -> HTMLResponse:
    t = LOGIN[language]
    if exc.refusal is Refusal.WRONG or exc.until is None:
        return login_page(request, language, next_path, 401, t["wrong"])
    now = get_logins(request).clock.now()
    wait = max(1, math.ceil((exc.until - now).total_seconds()))
    if exc.refusal is Refusal.THROTTLED:
        message = t["throttled"].format(seconds=wait)
    else:
        message = t["locked"].format(at=exc.until.astimezone(WARSAW).strftime("%H:%M:%S"))
    response = login_page(request, language, next_path, 429, message)
    response.headers["Retry-After"] = str(wait)
    return response


@router.post("/logout")
async def log_out(request: Request) -> Response:
    """End the session (with its CSRF token) and clear the cookie; on to the login form."""
    cookie = request.cookies.get(COOKIE)
    session = await current_session(request)
    if session is not None and cookie:
        if foreign_form(request, request.app.state.bridge.config.public_url):
            refuse(request, Action.USER_REQUEST_REFUSED, reason="foreign_origin")
            raise PageRefused("foreign_origin")
        if not csrf_matches(await presented_csrf(request), session.csrf):
            user = session.user
            refuse(
                request, Action.USER_REQUEST_REFUSED, user.name, client=user.client, reason="csrf"
            )
            raise PageRefused("csrf")
        await run_in_threadpool(get_logins(request).log_out, cookie, source_of(request))
    preferred = session.user.language if session is not None else None
    query = {"logged_out": "1", "lang": language_of(request, preferred)}
    response = RedirectResponse(f"{root_of(request)}/login?{urlencode(query)}", status_code=303)
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
