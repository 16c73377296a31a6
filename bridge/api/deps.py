"""Dependencies of the routers: the caller's identity, and the narrow service each route needs.

A route declares what it uses (``tickets: TicketsDep``, ``who: Engineer``); nothing here hands
out the bridge or its store. A refusal for the caller's credentials is audited in one place,
:func:`refuse`: a missing or wrong token here, a role or hospital that may not do what it
asked (a :class:`bridge.errors.Forbidden`) by the app factory's error handler.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Annotated, Protocol, TypeVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CollectorRegistry

from bridge.actions import Action
from bridge.audit import AuditQueries
from bridge.auth import Principal, Role
from bridge.errors import Forbidden, NotFound
from bridge.maintenance.planning import Maintenance
from bridge.maintenance.queries import CalendarFeed, PlanQueries, WindowQueries
from bridge.maintenance.updates import Updates
from bridge.models import Asset
from bridge.service import Bridge
from bridge.sources.alertmanager import AlertmanagerReceiver
from bridge.sources.samples import Intake
from bridge.sources.versions import AmmsVersions
from bridge.tickets.desk import TicketDesk

bearer_scheme = HTTPBearer(
    auto_error=False, description="A token from dyzur.yaml (`dyzur token new`)"
)


def _bridge(request: Request) -> Bridge:
    return request.app.state.bridge


# --- refusals and identity ----------------------------------------------------------------


def refuse(
    request: Request,
    action: str,
    actor: str = "unknown",
    client: str | None = None,
    **detail: object,
) -> None:
    """Log and audit (aggregated per source) a request refused for its credentials. Never the
    token itself: only where the attempt came from and what it asked for."""
    source = request.client.host if request.client else "?"
    asked = f"{request.method} {request.url.path}"
    _bridge(request).refused(action, source, asked, actor, client, **detail)


def authenticate(request: Request, token: str | None, scheme: str = "Bearer") -> Principal:
    """The principal of ``token``. None (no credentials) or a token that is not configured is
    audited (``token.missing``, ``token.refused``) and answered 401 with a ``scheme``
    challenge."""
    challenge = {"WWW-Authenticate": "Bearer" if scheme == "Bearer" else f'{scheme} realm="dyzur"'}
    if token is None:
        refuse(request, Action.TOKEN_MISSING)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", challenge)
    principal = _bridge(request).loaded.tokens.authenticate(token) if token else None
    if principal is None:
        refuse(request, Action.TOKEN_REFUSED)
        what = "bearer token" if scheme == "Bearer" else "token"
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"invalid {what}", challenge)
    return principal


def get_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Principal:
    return authenticate(request, credentials.credentials if credentials else None)


def basic_or_bearer(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> Principal:
    """Bearer, or HTTP Basic with the token as password: calendar programs (Thunderbird,
    Outlook) subscribe with a user name and password, not with a bearer header."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return get_principal(request, credentials)
    try:
        token = base64.b64decode(value, validate=True).decode().partition(":")[2]
    except (binascii.Error, UnicodeDecodeError):
        token = ""
    return authenticate(request, token, "Basic")


class RoleRefused(Forbidden):
    """403: the token's role or hospital may not do what it asked; audited as ``role.refused``
    with the token's name as the actor, its role in the detail and its hospital as the
    event's client."""

    def __init__(self, principal: Principal, message: str) -> None:
        p = principal
        role = f"client:{p.client}" if p.role is Role.CLIENT else p.role.value
        super().__init__(message, p.name, p.client, role=role)


def client_scope(principal: Principal, client: str | None) -> str | None:
    """The client a listing is limited to: a client token's own, whatever it asks for."""
    if principal.role is Role.CLIENT:
        if client is not None and client != principal.client:
            raise RoleRefused(principal, "a client token sees only its own client")
        return principal.client
    return client


def check_role(principal: Principal, allowed: set[Role]) -> Principal:
    if principal.role not in allowed:
        raise RoleRefused(principal, f"role {principal.role.value!r} may not do this")
    return principal


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency that lets through only the given roles (admin always)."""
    allowed = {*roles, Role.ADMIN}

    def check(principal: Principal = Depends(get_principal)) -> Principal:
        return check_role(principal, allowed)

    return check


# Who may call: the principal, once its role was checked.
Engineer = Annotated[Principal, Depends(require(Role.ENGINEER))]
Reader = Annotated[Principal, Depends(require(Role.ENGINEER, Role.CLIENT))]
Agent = Annotated[Principal, Depends(require(Role.AGENT))]


class _OfAClient(Protocol):
    @property
    def client(self) -> str: ...


Owned = TypeVar("Owned", bound=_OfAClient)


def visible(principal: Principal, found: Owned | None, missing: NotFound) -> Owned:
    """What was found, if the principal may see it. Another hospital's ticket, window or plan
    is reported as missing (``missing``), so that its existence does not leak."""
    if found is None or not principal.can_see(found.client):
        raise missing
    return found


def metrics_access(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
) -> None:
    """/metrics needs an engineer or admin token unless the config makes it public."""
    if not _bridge(request).config.public_metrics:
        check_role(get_principal(request, credentials), {Role.ENGINEER, Role.ADMIN})


# --- the services -------------------------------------------------------------------------


def get_ingestor(request: Request) -> Intake:
    return _bridge(request).intake


def get_receiver(request: Request) -> AlertmanagerReceiver:
    return _bridge(request).alertmanager


def get_tickets(request: Request) -> TicketDesk:
    return _bridge(request).tickets


def get_maintenance(request: Request) -> Maintenance:
    return _bridge(request).maintenance


def get_windows(request: Request) -> WindowQueries:
    return _bridge(request).windows


def get_calendar(request: Request) -> CalendarFeed:
    return _bridge(request).calendar


def get_updates(request: Request) -> Updates:
    return _bridge(request).updates


def get_plans(request: Request) -> PlanQueries:
    return _bridge(request).plans


def get_trail(request: Request) -> AuditQueries:
    return _bridge(request).trail


def get_assets(request: Request) -> Mapping[str, Asset]:
    return _bridge(request).loaded.assets


def get_versions(request: Request) -> AmmsVersions:
    return _bridge(request).versions


def get_ping(request: Request) -> Callable[[], None]:
    return _bridge(request).ping


def get_registry(request: Request) -> CollectorRegistry:
    return _bridge(request).metrics.registry


IngestorDep = Annotated[Intake, Depends(get_ingestor)]
ReceiverDep = Annotated[AlertmanagerReceiver, Depends(get_receiver)]
TicketsDep = Annotated[TicketDesk, Depends(get_tickets)]
MaintenanceDep = Annotated[Maintenance, Depends(get_maintenance)]
WindowsDep = Annotated[WindowQueries, Depends(get_windows)]
CalendarDep = Annotated[CalendarFeed, Depends(get_calendar)]
UpdatesDep = Annotated[Updates, Depends(get_updates)]
PlansDep = Annotated[PlanQueries, Depends(get_plans)]
TrailDep = Annotated[AuditQueries, Depends(get_trail)]
AssetsDep = Annotated[Mapping[str, Asset], Depends(get_assets)]
VersionsDep = Annotated[AmmsVersions, Depends(get_versions)]
PingDep = Annotated[Callable[[], None], Depends(get_ping)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]
