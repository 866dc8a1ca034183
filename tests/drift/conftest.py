"""Drift fixtures: two independent shops of the same size and season (reference and fresh current)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from drift_shop import feature_rows, shop_tables

CUTOFF = pd.Timestamp("2025-06-02", tz="UTC")
CUSTOMERS = 6000


@pytest.fixture(scope="session")
def drift_shops() -> dict[str, object]:
    """Reference features, the fresh shop's tables and its unshifted features, all at the same cutoff."""
    ref_tables = shop_tables(CUSTOMERS, 11, CUTOFF)
    cur_tables = shop_tables(CUSTOMERS, 12, CUTOFF)
    return {
        "cutoff": CUTOFF,
        "reference": feature_rows(ref_tables, CUTOFF),
        "current_tables": cur_tables,
        "current": feature_rows(cur_tables, CUTOFF),
    }
