"""The monthly SLA report a hospital gets with its invoice."""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from bridge.clock import WARSAW
from bridge.models import Category, Client, SlaState
from bridge.store import Store
from bridge.tickets.sla import ServiceCalendar


class ReportError(ValueError):
    pass


@dataclass(frozen=True)
class CategoryRow:
    category: str
    tickets: int
    responded: int
    within_deadline: int
    breached: int  # answered late, or still unanswered past the deadline
    awaiting: int  # no response yet, deadline not passed
    median_reaction_minutes: float | None  # in service hours
    max_reaction_minutes: float | None


def month_bounds(month: str) -> tuple[datetime, datetime]:
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=WARSAW)
    except ValueError:
        raise ReportError(f"--month: expected YYYY-MM, got {month!r}") from None
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def sla_report(store: Store, client: Client, month: str) -> list[CategoryRow]:
    start, end = month_bounds(month)
    calendar = ServiceCalendar.for_contract(client.contract)
    tickets = store.tickets_opened_between(client.id, start, end)
    rows = []
    for category in Category:
        mine = [t for t in tickets if t.category is category]
        if not mine:
            continue
        reactions = [
            calendar.between(t.opened_at, t.responded_at).total_seconds() / 60
            for t in mine
            if t.responded_at is not None
        ]
        rows.append(
            CategoryRow(
                category=category.value,
                tickets=len(mine),
                responded=len(reactions),
                within_deadline=sum(t.sla_state is SlaState.MET for t in mine),
                breached=sum(t.sla_state is SlaState.BREACHED for t in mine),
                awaiting=sum(
                    t.responded_at is None and t.sla_state in (SlaState.RUNNING, SlaState.AT_RISK)
                    for t in mine
                ),
                median_reaction_minutes=round(statistics.median(reactions), 1)
                if reactions
                else None,
                max_reaction_minutes=round(max(reactions), 1) if reactions else None,
            )
        )
    return rows


def render_report(rows: list[CategoryRow], fmt: str, client: Client, month: str) -> str:
    if fmt == "json":
        return (
            json.dumps(
                {"client": client.id, "month": month, "categories": [asdict(r) for r in rows]},
                ensure_ascii=False,
                indent=2,
            )
            + "\n"
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(list(CategoryRow.__dataclass_fields__))
        for r in rows:
            writer.writerow(["" if v is None else v for v in asdict(r).values()])
        return out.getvalue()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"SLA {client.name} ({client.id}) {month}")
    for header in (
        "category",
        "tickets",
        "responded",
        "within deadline",
        "breached",
        "awaiting",
        "median reaction (min)",
        "max reaction (min)",
    ):
        table.add_column(header, justify="left" if header == "category" else "right")
    for r in rows:
        table.add_row(*("—" if v is None else str(v) for v in asdict(r).values()))
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None)
    console.print(table)
    return out.getvalue()
