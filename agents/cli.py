"""`dyzur agent`: argparse rather than typer, so the agent process stays small."""

from __future__ import annotations

import argparse
import logging
import sys

from agents.config import AgentConfigError, load_agent_config
from collectors import CollectorConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dyzur agent",
        description="Measure this host and push the samples to the dyzur bridge.",
    )
    parser.add_argument("--config", "-c", required=True, help="agent.yaml")
    parser.add_argument("--once", action="store_true", help="run every collector once and exit")
    parser.add_argument(
        "--print", action="store_true", help="print the samples instead of pushing (implies --once)"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from agents.agent import Agent

    try:
        config = load_agent_config(args.config)
        agent = Agent(config)
        if args.print or args.once:
            return agent.run_once(print_only=args.print)
        return agent.run()
    except AgentConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CollectorConfigError as exc:
        print(f"{args.config}: collectors: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
