"""Dependencies shared by the routers: the running bridge and the caller's identity."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from bridge.actions import Action
from bridge.auth import Principal, Role
from bridge.service import Bridge

bearer_scheme = HTTPBearer(
    auto_error=False, description="A token from dyzur.yaml (`dyzur token new`)"
)


def get_bridge(request: Request) -> Bridge:
    return request.app.state.bridge


def get_principal(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    bridge: Bridge = Depends(get_bridge),
) -> Principal:
    challenge = {"WWW-Authenticate": "Bearer"}
    if credentials is None:
        refuse(request, bridge, Action.TOKEN_MISSING)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing bearer token", challenge)
    principal = bridge.loaded.tokens.authenticate(credentials.credentials)
    if principal is None:
        refuse(request, bridge, Action.TOKEN_REFUSED)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid bearer token", challenge)
    return principal


def refuse(
    request: Request,
    bridge: Bridge,
    action: str,
    actor: str = "unknown",
    client: str | None = None,
    **detail: object,
) -> None:
    """Log and audit (aggregated per source) a request refused for its credentials. Never the
    token itself: only where the attempt came from and what it asked for."""
    source = request.client.host if request.client else "?"
    asked = f"{request.method} {request.url.path}"
    bridge.refused(action, source, asked, actor, client, **detail)


class Forbidden(HTTPException):
    """403: the token's role or hospital may not do what it asked. The app's error handler
    audits it (``role.refused``, see :func:`refuse_role`) before answering."""

    def __init__(self, principal: Principal, detail: str) -> None:
        super().__init__(status.HTTP_403_FORBIDDEN, detail)
        self.principal = principal


def refuse_role(request: Request, exc: Forbidden) -> None:
    """Audit a 403 as ``role.refused``: the token's name as the actor, its role and the
    request in the detail, its hospital as the event's client."""
    p = exc.principal
    role = f"client:{p.client}" if p.role is Role.CLIENT else p.role.value
    refuse(request, get_bridge(request), "role.refused", p.name, p.client, role=role)


def client_scope(principal: Principal, client: str | None) -> str | None:
    """The client a listing is limited to: a client token's own, whatever it asks for."""
    if principal.role is Role.CLIENT:
        if client is not None and client != principal.client:
            raise Forbidden(principal, "a client token sees only its own client")
        return principal.client
    return client


def check_role(principal: Principal, allowed: set[Role]) -> Principal:
    if principal.role not in allowed:
        raise Forbidden(principal, f"role {principal.role.value!r} may not do this")
    return principal


def require(*roles: Role) -> Callable[..., Principal]:
    """A dependency that lets through only the given roles (admin always)."""
    allowed = {*roles, Role.ADMIN}

    def check(principal: Principal = Depends(get_principal)) -> Principal:
        return check_role(principal, allowed)

    return check


def metrics_access(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer_scheme),
    bridge: Bridge = Depends(get_bridge),
) -> None:
    """/metrics needs an engineer or admin token unless the config makes it public."""
    if not bridge.config.public_metrics:
        check_role(get_principal(request, credentials, bridge), {Role.ENGINEER, Role.ADMIN})
