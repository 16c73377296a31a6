"""The `dyzur` command's entry point.

Commands of other packages (the agent's ``dyzur agent``) are announced as entry points in the
``dyzur.commands`` group and dispatched before the bridge's CLI is imported: the bridge does not
import the agent (DESIGN.md's layering), and the agent process does not pay for typer.
"""

from __future__ import annotations

import sys

COMMAND_GROUP = "dyzur.commands"


def main() -> None:
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):
        from importlib.metadata import entry_points

        for ep in entry_points(group=COMMAND_GROUP):
            if ep.name == argv[0]:
                sys.exit(ep.load()(argv[1:]))
    try:
        from bridge.cli import app
    except ImportError as exc:  # an agent-only install has no bridge libraries
        sys.exit(
            f"dyzur: the bridge is not installed here ({exc.name} missing): "
            "pip install 'dyzur[bridge]'; the agent runs as: dyzur agent --config FILE"
        )
    app()
