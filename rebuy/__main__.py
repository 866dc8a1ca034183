"""`python -m rebuy` is the `rebuy` command (used to start child processes with this interpreter)."""

from rebuy.cli import main

main()
