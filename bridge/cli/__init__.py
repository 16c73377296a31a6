"""The `dyzur` command, one module per command group:

- ``base``: the app, its groups, errors (JSON with --json), reading the config;
- ``client``: the HTTP client of the commands that go through the bridge's API;
- ``run``: dyzur run; ``setup``: check-config, init, rules check, token new;
- ``passthrough``: dyzur agent and dyzur ssh (run by bridge/entry.py before this CLI loads);
- ``sla``: sla due, report sla; ``audit``: audit verify, audit list;
- ``window`` and ``update``: maintenance windows and staged updates through the API;
- ``sinks``: sinks list, test, retry (helpdesk sinks, on the config and store file);
- ``oncall``: oncall now, gaps, swap (the rota, on the config and store file);
- ``incidents``: incidents list (open incidents and held alerts, on the config and store file).
- ``user``: user new (the config entry of a person who logs in to the pages).
- ``tickets``: tickets list, show, ack, resolve, note (through the API).
- ``cluster``: cluster status (several bridges: who holds what, read from Redis).

"""

# Imported in the order `dyzur --help` lists the commands: run, check-config, init, agent,
# ssh, then the groups (in the order base.py adds them).
from bridge.cli import run, setup  # isort: split

from bridge.cli import passthrough  # isort: split

from bridge.cli import audit, sinks, sla, update, window  # isort: split

from bridge.cli import incidents, oncall, tickets, user  # isort: split

from bridge.cli import cluster
from bridge.cli.base import app, main
from bridge.cli.run import utc_log_formatter

__all__ = [
    "app",
    "audit",
    "cluster",
    "incidents",
    "main",
    "oncall",
    "passthrough",
    "run",
    "setup",
    "sinks",
    "sla",
    "tickets",
    "update",
    "user",
    "utc_log_formatter",
    "window",
]
