"""`python -m agents --config agent.yaml`: the same as `dyzur agent`."""

import sys

from agents.cli import main

sys.exit(main())
