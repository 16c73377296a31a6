"""Audit actions and timeline events are enums whose values are a contract: SIEM rules, the
audit API's filters and people's scripts match on them, so none may change or vanish."""

from __future__ import annotations

import pytest

from bridge.actions import TICKET_ACTIONS, Action, Event, ticket_action
from bridge.tickets.texts import TIMELINE
from tests.test_lifecycle import disk, tickets

# The audit actions as released. Adding one is fine (add it here); changing or removing one
# breaks every SIEM rule written against it.
RELEASED = {
    "ticket.opened", "ticket.escalated", "ticket.refired", "ticket.reopened",
    "ticket.recovered", "ticket.left_open", "ticket.resolved", "ticket.acknowledged",
    "sla.at_risk", "sla.breached",
    "ticket.stage_started", "ticket.stage_succeeded", "ticket.stage_failed",
    "ticket.stage_cancelled", "ticket.stage_cancelled_interrupted", "ticket.soak",
    "ticket.gate_passed", "ticket.gate_failed", "ticket.gate_approved", "ticket.gate_overridden",
    "ticket.gate_held", "ticket.muting_ends", "ticket.failure_ticket", "ticket.plan_completed",
    "ticket.plan_cancelled", "ticket.plan_expired", "ticket.prod_not_run",
    "window.planned", "window.cancelled", "window.ended_early", "window.alert_suppressed",
    "window.alert_recovered", "window.alert_released", "window.alert_dropped",
    "update.planned", "update.stage_started", "update.step", "update.stage_succeeded",
    "update.stage_failed", "update.stage_cancelled", "update.gate_passed", "update.gate_failed",
    "update.gate_approved", "update.gate_overridden", "update.gate_held", "update.cancelled",
    "update.expired", "update.completed",
    "asset.version_seen", "asset.version_set", "agent.seq_anomaly", "agent.stream_refused",
    "token.missing", "token.refused", "role.refused",
    "ssh.command", "ssh.host_key_unknown", "ssh.host_key_mismatch",
    "config.loaded", "siem.events_dropped",
    "outbox.delivery_failed", "sink.configured", "sink.delivery_held", "sink.retry_requested",
    "oncall.page", "oncall.escalated", "oncall.nobody_on_duty",
    "oncall.link_opened", "oncall.link_used", "oncall.link_refused",
    "oncall.override", "ticket.note",
}  # fmt: skip


def test_no_released_action_changed_or_vanished():
    assert {a.value for a in Action} >= RELEASED


def test_every_timeline_event_has_its_text_and_every_audited_one_its_action():
    for event in Event:
        assert event in TIMELINE["pl"] and event in TIMELINE["en"], event
    unaudited = {Event.STALE, Event.WINDOW_ENDED}
    # Written by the pager with its own oncall.* events (or none: a page sent).
    unaudited |= {
        Event.PAGED,
        Event.PAGE_FAILED,
        Event.PAGE_FALLBACK,
        Event.ONCALL_ESCALATED,
        Event.NOBODY_ON_DUTY,
    }
    # Written by the incidents with their own incident.* events (or none: a group's lines).
    unaudited |= {
        Event.INCIDENT_ATTACHED,
        Event.INCIDENT_RECOVERED,
        Event.INCIDENT_RELEASED,
        Event.INCIDENT_PART,
        Event.INCIDENT_HELD,
        Event.INCIDENT_LINKED,
        Event.INCIDENT_EXPLAINS,
        Event.INCIDENT_SPLIT,
        Event.INCIDENT_SPLIT_OUT,
        Event.GROUP_JOINED,
        Event.GROUP_RECOVERED,
        Event.STORM_ATTACHED,
        Event.STORM_PART,
        Event.STORM_ENDED,
    }
    assert set(TICKET_ACTIONS) == set(Event) - unaudited
    assert ticket_action("sla_breached") is Action.SLA_BREACHED
    assert ticket_action("opened") is Action.TICKET_OPENED


@pytest.mark.parametrize("kind", ["bogus", "sla_bogus", "stale"])
def test_a_kind_without_an_action_is_refused(kind):
    """No action name is made up from a kind: an unknown one is an error, not
    ``ticket.bogus`` or ``sla.bogus`` in the audit trail."""
    with pytest.raises((ValueError, KeyError)):
        ticket_action(kind)


def test_an_unknown_timeline_kind_writes_neither_line_nor_audit_event(bridge):
    disk(bridge, 0.95)
    [ticket] = tickets(bridge)
    lines = bridge.store.timeline(ticket.number)
    events = bridge.store.audit_events()
    with pytest.raises(ValueError), bridge.store.transaction():  # note() needs the caller's
        bridge.lifecycle.note(ticket.number, "bogus", "a line nobody defined")
    assert bridge.store.timeline(ticket.number) == lines
    assert bridge.store.audit_events() == events
