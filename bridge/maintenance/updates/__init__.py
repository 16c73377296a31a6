"""Staged AMMS updates, in four parts:

- ``validation``: what a plan request must be (pure; ``UpdateError`` names the field);
- ``machine``: what the ticker must do for a plan at a moment (pure: ``next_actions``);
- ``gate``: the soak judgement over the test assets' tickets and muted alerts;
- ``runner``: the runbook threads over SSH (steps, their records and audit events);
- ``service``: ``Updates``, which ties them to the store, the tickets, the windows and the
  audit trail.
"""

from bridge.maintenance.updates.gate import Finding, findings_text
from bridge.maintenance.updates.machine import PlanAction, next_actions
from bridge.maintenance.updates.runner import Problem, fill
from bridge.maintenance.updates.service import GateRefused, PlanNotFound, Updates
from bridge.maintenance.updates.validation import (
    VERSION_PATTERN,
    StageWindow,
    UpdateError,
    UpdateRequest,
)

__all__ = [
    "VERSION_PATTERN",
    "Finding",
    "GateRefused",
    "PlanAction",
    "PlanNotFound",
    "Problem",
    "StageWindow",
    "UpdateError",
    "UpdateRequest",
    "Updates",
    "fill",
    "findings_text",
    "next_actions",
]
