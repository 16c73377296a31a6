"""dyzur agent and dyzur ssh: listed in dyzur --help only. bridge/entry.py runs them
(agents.cli, agents.ssh_trust) before this CLI is loaded: an agent-only install has them too,
and the bridge never imports the agent."""

from __future__ import annotations

from bridge.cli.base import app, fail

PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=PASSTHROUGH, add_help_option=False)
def agent() -> None:
    """Run the agent on a hospital host: dyzur agent --config agent.yaml [--once] [--print]."""
    raise fail("run the agent as: dyzur agent --config agent.yaml")


@app.command(context_settings=PASSTHROUGH, add_help_option=False)
def ssh() -> None:
    """Record a host key: dyzur ssh trust HOST:PORT --config dyzur.yaml (or --known-hosts F)."""
    raise fail("record a host key as: dyzur ssh trust HOST:PORT --config dyzur.yaml")
