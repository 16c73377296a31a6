"""The `dyzur` command's entry point.

Commands of other packages (the agent's ``dyzur agent``) are dispatched by name before the
bridge's CLI is imported: the bridge never imports the agent (DESIGN.md's layering), and the
agent process pays for neither typer nor FastAPI.
"""

from __future__ import annotations

import importlib
import sys

# name -> "module:function(argv) -> exit status"
COMMANDS = {"agent": "agents.cli:main", "ssh": "agents.ssh_trust:main"}


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] in COMMANDS:
        module, _, function = COMMANDS[argv[0]].partition(":")
        sys.exit(getattr(importlib.import_module(module), function)(argv[1:]))
    try:
        from bridge.cli import main as bridge_main
    except ImportError as exc:  # an agent-only install has no bridge libraries
        sys.exit(
            f"dyzur: the bridge is not installed here ({exc.name} missing): "
            "pip install 'dyzur[bridge]'; the agent runs as: dyzur agent --config FILE"
        )
    bridge_main(argv)
