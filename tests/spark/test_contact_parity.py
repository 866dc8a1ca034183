"""The contact family (features.contact) on Spark equals DuckDB on its hand-written rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from features.contact import CONTACT, contact_features

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def _rows():  # the contact tests' hand-written tables, loaded from their file
    path = Path(__file__).parents[1] / "features" / "test_contact.py"
    spec = importlib.util.spec_from_file_location("contact_rows", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_contact_family_on_spark_equals_duckdb(spark_engine):
    m = _rows()
    args = (m._messages(), m._events(), m._orders(), m._consent_updates(), m._pairs())
    duck = contact_features(*args)
    spark = contact_features(*args, con=spark_engine)
    assert duck["customer_id"].tolist() == spark["customer_id"].tolist()
    for col in CONTACT:
        a, b = duck[col].to_numpy(np.float64), spark[col].to_numpy(np.float64)
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col)
    assert np.nanmax(duck[list(CONTACT)].to_numpy(np.float64)) > 0
