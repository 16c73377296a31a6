"""`python -m bridge ...` is the same as the `dyzur` command."""

from bridge.cli import main

main()
