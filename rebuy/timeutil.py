"""`--as-of` handling: every command that reads "now" takes an explicit time."""

from __future__ import annotations

import pandas as pd


def parse_as_of(value: str | None) -> pd.Timestamp:
    """A timezone-aware UTC timestamp; None means the wall clock. Naive input is read as UTC."""
    if value is None or value == "now":
        return pd.Timestamp.now(tz="UTC")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"--as-of {value!r} is not a timestamp; use ISO 8601, e.g. 2025-06-30T00:00:00Z"
        ) from exc
    if ts is pd.NaT:
        raise ValueError(f"--as-of {value!r} is not a timestamp")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def telemetry_off() -> None:
    """Turn off every library's phone-home; called by entry points, never at import."""
    import os

    for key, value in {
        "FEAST_USAGE": "False",
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "EVIDENTLY_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
    }.items():
        os.environ.setdefault(key, value)


def quiet_libraries() -> None:
    """Keep the CLI's output to rebuy's own progress: no artifact download bars, no known-harmless warnings."""
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("REBUY_QUIET", "1")  # read by requiet() in this process and the ones it starts
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # no "Detected uv project" per logged model
    # the same filters for the processes the CLI starts (the service, training and loop workers)
    os.environ.setdefault(
        "PYTHONWARNINGS",
        "ignore::DeprecationWarning,ignore:On demand feature view is an experimental feature:RuntimeWarning",
    )
    _ignore_known_warnings()
    warnings.filterwarnings("ignore", message=".*model_fields.*")


def _ignore_known_warnings() -> None:
    """Feast's on-demand-view notice and library deprecations (set again by `requiet` after Feast's import)."""
    import warnings

    warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def requiet() -> None:
    """Put the CLI's warning filters back in front after importing Feast.

    Feast's modules call `warnings.simplefilter("once", ...)` when imported, which goes in front of the
    filters `quiet_libraries` set, so its notices would print again. Does nothing outside the CLI.
    """
    import os

    if os.environ.get("REBUY_QUIET") == "1":
        _ignore_known_warnings()
