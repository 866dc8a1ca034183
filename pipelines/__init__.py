"""Stage 4 of the loop: the orchestrator (decide, hold out, cap, log, send), uplift reports, drift."""
