"""`python -m cli` is the `rebuy` command (used to start child processes with this interpreter)."""

from cli.app import main

main()
