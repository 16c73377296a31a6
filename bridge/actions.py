"""The names of what happened: audit actions and ticket timeline events.

The values are a contract: SIEMs, the audit API's filters and the tests match on them, so a
value never changes once released. ``Action`` is every audit action dyzur writes itself (the
agents' own actions come from ``collectors.base``); ``Event`` is every kind of line on a
ticket's timeline, and ``TICKET_ACTIONS`` says which audit action each recorded kind is.
"""

from __future__ import annotations

from enum import StrEnum

from collectors.base import SSH_COMMAND, SSH_HOST_KEY_MISMATCH, SSH_HOST_KEY_UNKNOWN


class Action(StrEnum):
    # A ticket's life (lifecycle; one per recorded timeline event, see TICKET_ACTIONS).
    TICKET_OPENED = "ticket.opened"
    TICKET_ESCALATED = "ticket.escalated"
    TICKET_REFIRED = "ticket.refired"
    TICKET_REOPENED = "ticket.reopened"
    TICKET_RECOVERED = "ticket.recovered"
    TICKET_LEFT_OPEN = "ticket.left_open"
    TICKET_RESOLVED = "ticket.resolved"
    TICKET_ACKNOWLEDGED = "ticket.acknowledged"
    TICKET_NOTE = "ticket.note"  # an engineer's note on the timeline
    SLA_AT_RISK = "sla.at_risk"
    SLA_BREACHED = "sla.breached"
    # An update plan's progress as written on its aktualizacja ticket.
    TICKET_STAGE_STARTED = "ticket.stage_started"
    TICKET_STAGE_SUCCEEDED = "ticket.stage_succeeded"
    TICKET_STAGE_FAILED = "ticket.stage_failed"
    TICKET_STAGE_CANCELLED = "ticket.stage_cancelled"
    TICKET_STAGE_CANCELLED_INTERRUPTED = "ticket.stage_cancelled_interrupted"
    TICKET_SOAK = "ticket.soak"
    TICKET_GATE_PASSED = "ticket.gate_passed"
    TICKET_GATE_FAILED = "ticket.gate_failed"
    TICKET_GATE_APPROVED = "ticket.gate_approved"
    TICKET_GATE_OVERRIDDEN = "ticket.gate_overridden"
    TICKET_GATE_HELD = "ticket.gate_held"
    TICKET_MUTING_ENDS = "ticket.muting_ends"
    TICKET_FAILURE_TICKET = "ticket.failure_ticket"
    TICKET_PLAN_COMPLETED = "ticket.plan_completed"
    TICKET_PLAN_CANCELLED = "ticket.plan_cancelled"
    TICKET_PLAN_EXPIRED = "ticket.plan_expired"
    TICKET_PROD_NOT_RUN = "ticket.prod_not_run"
    # Maintenance windows and the alerts they muted.
    WINDOW_PLANNED = "window.planned"
    WINDOW_CANCELLED = "window.cancelled"
    WINDOW_ENDED_EARLY = "window.ended_early"
    WINDOW_ALERT_SUPPRESSED = "window.alert_suppressed"
    WINDOW_ALERT_RECOVERED = "window.alert_recovered"
    WINDOW_ALERT_RELEASED = "window.alert_released"
    WINDOW_ALERT_DROPPED = "window.alert_dropped"
    # Staged updates.
    UPDATE_PLANNED = "update.planned"
    UPDATE_STAGE_STARTED = "update.stage_started"
    UPDATE_STEP = "update.step"
    UPDATE_STAGE_SUCCEEDED = "update.stage_succeeded"
    UPDATE_STAGE_FAILED = "update.stage_failed"
    UPDATE_STAGE_CANCELLED = "update.stage_cancelled"
    UPDATE_GATE_PASSED = "update.gate_passed"
    UPDATE_GATE_FAILED = "update.gate_failed"
    UPDATE_GATE_APPROVED = "update.gate_approved"
    UPDATE_GATE_OVERRIDDEN = "update.gate_overridden"
    UPDATE_GATE_HELD = "update.gate_held"
    UPDATE_CANCELLED = "update.cancelled"
    UPDATE_EXPIRED = "update.expired"
    UPDATE_COMPLETED = "update.completed"
    # Assets and agents.
    ASSET_VERSION_SEEN = "asset.version_seen"
    ASSET_VERSION_SET = "asset.version_set"
    AGENT_SEQ_ANOMALY = "agent.seq_anomaly"
    AGENT_STREAM_REFUSED = "agent.stream_refused"
    # Requests refused for their credentials (aggregated, see bridge/refusals.py).
    TOKEN_MISSING = "token.missing"  # noqa: S105 (an action, not a secret)
    TOKEN_REFUSED = "token.refused"  # noqa: S105
    ROLE_REFUSED = "role.refused"
    # SSH, as the agents record it too (collectors.base).
    SSH_COMMAND = SSH_COMMAND
    SSH_HOST_KEY_UNKNOWN = SSH_HOST_KEY_UNKNOWN
    SSH_HOST_KEY_MISMATCH = SSH_HOST_KEY_MISMATCH
    # Incidents (bridge.tickets.incidents): a dependent's alert held for its root cause,
    # attached to a ticket (its root's, its storm's), recovered there, released into a ticket
    # of its own, split out by an engineer; a dependent's own ticket linked to its root's; a
    # hospital's storm ticket opened and closed.
    INCIDENT_ALERT_HELD = "incident.alert_held"
    INCIDENT_ALERT_ATTACHED = "incident.alert_attached"
    INCIDENT_ALERT_RECOVERED = "incident.alert_recovered"
    INCIDENT_ALERT_RELEASED = "incident.alert_released"
    INCIDENT_ALERT_SPLIT = "incident.alert_split"
    INCIDENT_TICKET_LINKED = "incident.ticket_linked"
    INCIDENT_STORM_OPENED = "incident.storm_opened"
    INCIDENT_STORM_CLOSED = "incident.storm_closed"
    # The bridge itself.
    CONFIG_LOADED = "config.loaded"
    SIEM_EVENTS_DROPPED = "siem.events_dropped"
    # An outbox consumer refused an event for good (bridge.delivery.outbox).
    OUTBOX_DELIVERY_FAILED = "outbox.delivery_failed"
    # Helpdesk sinks (bridge.delivery.sinks): each sink as the bridge loaded it, a change held
    # behind a failed change of its ticket, and a person asking to send the parked ones again.
    SINK_CONFIGURED = "sink.configured"
    SINK_DELIVERY_HELD = "sink.delivery_held"
    SINK_RETRY_REQUESTED = "sink.retry_requested"
    # On call (bridge.delivery.oncall.pager): a page decided (the outbox entry its channel
    # delivers; also one by the person's next channel when the first did not deliver in
    # time), a ticket escalated to the next step, a step with nobody on duty.
    ONCALL_PAGE = "oncall.page"
    ONCALL_ESCALATED = "oncall.escalated"
    ONCALL_NOBODY_ON_DUTY = "oncall.nobody_on_duty"
    # The one-time link in an on-call page (bridge.delivery.oncall.responses): opened (the
    # page shown, nothing changed), used (the ticket acknowledged), refused (used, expired,
    # forged, or a form from another site).
    ONCALL_LINK_OPENED = "oncall.link_opened"
    ONCALL_LINK_USED = "oncall.link_used"
    ONCALL_LINK_REFUSED = "oncall.link_refused"
    # A period of a person's on-call shifts handed to another (bridge.delivery.oncall.desk):
    # who asked, whose duty to whom, the period and why.
    ONCALL_OVERRIDE = "oncall.override"
    # People at the pages (bridge.users): a login and a logout; a failed login (the user's
    # name, or only a digest of a name that is no user's, and the source; never the password);
    # a user name or a source address locked out after repeated failures. Attempts refused
    # while throttled or locked out, and a page's state-changing request without a session, its
    # CSRF token, or from another site, are counted per source and minute like refused tokens.
    USER_LOGIN = "user.login"
    USER_LOGOUT = "user.logout"
    USER_LOGIN_FAILED = "user.login_failed"
    USER_LOCKED_OUT = "user.locked_out"
    USER_LOGIN_REFUSED = "user.login_refused"
    USER_REQUEST_REFUSED = "user.request_refused"


class Event(StrEnum):
    """The kind of a line on a ticket's timeline."""

    OPENED = "opened"
    ESCALATED = "escalated"
    REFIRED = "refired"
    REOPENED = "reopened"
    RECOVERED = "recovered"
    LEFT_OPEN = "left_open"
    RESOLVED = "resolved"
    ACKNOWLEDGED = "acknowledged"
    NOTE = "note"  # an engineer's note (POST /api/v1/tickets/{number}/notes)
    SLA_AT_RISK = "sla_at_risk"
    SLA_BREACHED = "sla_breached"
    STALE = "stale"  # written without an audit event
    WINDOW_ENDED = "window_ended"  # written without an audit event
    STAGE_STARTED = "stage_started"
    STAGE_SUCCEEDED = "stage_succeeded"
    STAGE_FAILED = "stage_failed"
    STAGE_CANCELLED = "stage_cancelled"
    STAGE_CANCELLED_INTERRUPTED = "stage_cancelled_interrupted"
    SOAK = "soak"
    GATE_PASSED = "gate_passed"
    GATE_FAILED = "gate_failed"
    GATE_APPROVED = "gate_approved"
    GATE_OVERRIDDEN = "gate_overridden"
    GATE_HELD = "gate_held"
    MUTING_ENDS = "muting_ends"
    FAILURE_TICKET = "failure_ticket"
    PLAN_COMPLETED = "plan_completed"
    PLAN_CANCELLED = "plan_cancelled"
    PLAN_EXPIRED = "plan_expired"
    PROD_NOT_RUN = "prod_not_run"
    # On call (bridge.delivery.oncall.pager), written with the oncall.* audit events.
    PAGED = "paged"
    PAGE_FAILED = "page_failed"
    PAGE_FALLBACK = "page_fallback"
    ONCALL_ESCALATED = "oncall_escalated"
    NOBODY_ON_DUTY = "nobody_on_duty"
    # Incidents (bridge.tickets.incidents), written with the incident.* audit events or, for
    # the lines of a group's ticket, without one.
    INCIDENT_ATTACHED = "incident_attached"
    INCIDENT_RECOVERED = "incident_recovered"
    INCIDENT_RELEASED = "incident_released"
    INCIDENT_PART = "incident_part"
    INCIDENT_HELD = "incident_held"
    INCIDENT_LINKED = "incident_linked"
    INCIDENT_EXPLAINS = "incident_explains"
    INCIDENT_SPLIT = "incident_split"
    INCIDENT_SPLIT_OUT = "incident_split_out"
    GROUP_JOINED = "group_joined"
    GROUP_RECOVERED = "group_recovered"
    STORM_ATTACHED = "storm_attached"
    STORM_PART = "storm_part"
    STORM_ENDED = "storm_ended"


# The audit action of each timeline event that is recorded with one (lifecycle._record).
TICKET_ACTIONS: dict[Event, Action] = {
    Event.OPENED: Action.TICKET_OPENED,
    Event.ESCALATED: Action.TICKET_ESCALATED,
    Event.REFIRED: Action.TICKET_REFIRED,
    Event.REOPENED: Action.TICKET_REOPENED,
    Event.RECOVERED: Action.TICKET_RECOVERED,
    Event.LEFT_OPEN: Action.TICKET_LEFT_OPEN,
    Event.RESOLVED: Action.TICKET_RESOLVED,
    Event.ACKNOWLEDGED: Action.TICKET_ACKNOWLEDGED,
    Event.NOTE: Action.TICKET_NOTE,
    Event.SLA_AT_RISK: Action.SLA_AT_RISK,
    Event.SLA_BREACHED: Action.SLA_BREACHED,
    Event.STAGE_STARTED: Action.TICKET_STAGE_STARTED,
    Event.STAGE_SUCCEEDED: Action.TICKET_STAGE_SUCCEEDED,
    Event.STAGE_FAILED: Action.TICKET_STAGE_FAILED,
    Event.STAGE_CANCELLED: Action.TICKET_STAGE_CANCELLED,
    Event.STAGE_CANCELLED_INTERRUPTED: Action.TICKET_STAGE_CANCELLED_INTERRUPTED,
    Event.SOAK: Action.TICKET_SOAK,
    Event.GATE_PASSED: Action.TICKET_GATE_PASSED,
    Event.GATE_FAILED: Action.TICKET_GATE_FAILED,
    Event.GATE_APPROVED: Action.TICKET_GATE_APPROVED,
    Event.GATE_OVERRIDDEN: Action.TICKET_GATE_OVERRIDDEN,
    Event.GATE_HELD: Action.TICKET_GATE_HELD,
    Event.MUTING_ENDS: Action.TICKET_MUTING_ENDS,
    Event.FAILURE_TICKET: Action.TICKET_FAILURE_TICKET,
    Event.PLAN_COMPLETED: Action.TICKET_PLAN_COMPLETED,
    Event.PLAN_CANCELLED: Action.TICKET_PLAN_CANCELLED,
    Event.PLAN_EXPIRED: Action.TICKET_PLAN_EXPIRED,
    Event.PROD_NOT_RUN: Action.TICKET_PROD_NOT_RUN,
}


def ticket_action(kind: str) -> Action:
    """The audit action recorded with a timeline event of ``kind`` (ValueError for a kind that
    is no Event, KeyError for one written without an audit event)."""
    return TICKET_ACTIONS[Event(kind)]
