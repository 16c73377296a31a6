"""Domain errors: what a service refuses, in four kinds that every caller understands.

The services raise them (each room's own errors are subclasses: ``TicketNotFound``,
``WindowConflict``, ``GateRefused``, ...); the API maps each kind to its HTTP status once, in
the app factory (``bridge.api.app``), with one error body; the CLI and tests catch them by kind
or by their own class. The message is for a person and names the field when one is at fault
(``"end: the window ends before it starts"``).
"""

from __future__ import annotations

from bridge.actions import Action


class DomainError(Exception):
    """A request a service refuses; ``str()`` says why."""


class NotFound(DomainError, LookupError):
    """No such thing (404), or one the caller may not see: another hospital's ticket is
    reported as missing, so that its existence does not leak."""


class Conflict(DomainError):
    """Refused by the current state (409). ``conflicts_with``: the id of what it collides with
    (the window a new one overlaps), when there is one."""

    conflicts_with: str | None = None


class Forbidden(DomainError):
    """The caller's credentials may not do this (403). ``refusal`` is the audit action the
    refusal is recorded as (``role.refused``, ``agent.stream_refused``), by ``actor`` for
    ``client``, with ``detail``: whoever answers audits it (aggregated per source and minute)."""

    refusal: str = Action.ROLE_REFUSED

    def __init__(
        self, message: str, actor: str = "unknown", client: str | None = None, **detail: object
    ) -> None:
        super().__init__(message)
        self.actor = actor
        self.client = client
        self.detail = detail


class Invalid(DomainError, ValueError):
    """A request whose content is refused (422); the message starts with the field at fault."""
