"""`python -m bridge ...` is the same as the `dyzur` command."""

from bridge.entry import main

main()
