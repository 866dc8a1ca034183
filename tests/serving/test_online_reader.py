"""Serving's store read: every FeatureService from one query per feature view (features.online.OnlineStoreReader).

It must return exactly what the per-service `OnlineFeatureReader` returns (that reader is the one the
features tests check against Feast's online and historical retrieval), for known, unknown and repeated
customers; and the scorer must read a shared store once per request for all its services.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.online import OnlineFeatureReader, OnlineStoreReader

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning", "ignore::UserWarning")

SERVICES = ["churn_v1", "offer_v1", "repurchase_v1", "value_v1"]


@pytest.fixture(scope="module")
def store(small_shop: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, pd.Timestamp, list[str]]:
    from features.store import materialize
    from rebuy.config import Config, PathsConfig

    cfg = Config(paths=PathsConfig(data_dir=tmp_path_factory.mktemp("online") / "data"))
    as_of = pd.Timestamp(small_shop.sim.now).tz_convert("UTC")
    materialize(cfg, as_of, small_shop.tables)
    return cfg, as_of, small_shop.tables["customers"]["customer_id"].astype(str).tolist()


def test_shared_read_equals_per_service_reads(store: tuple[Any, pd.Timestamp, list[str]]) -> None:
    cfg, as_of, customers = store
    ids = [customers[0], "nobody", customers[5], customers[0], customers[9]]  # a repeat and an unknown
    now = as_of + pd.Timedelta(hours=3)
    shared = OnlineStoreReader(cfg, SERVICES)
    got = shared.read_services(SERVICES, ids, now)
    for svc in SERVICES:
        want = OnlineFeatureReader(cfg, svc).read(ids, now)
        for g, w in zip(got[svc], want, strict=True):
            np.testing.assert_array_equal(g, w)
        X, found, age = got[svc]
        assert found.tolist() == [True, False, True, True, True]
        np.testing.assert_array_equal(X[0], X[3])  # the repeated customer gets the same row both times
        assert np.isnan(X[1]).all() and np.isnan(age[1])
        # a per-service reader built by the shared one reads the same on its own
        for g, w in zip(shared.reader(svc).read(ids, now), want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_per_service_reader_handles_repeated_ids(store: tuple[Any, pd.Timestamp, list[str]]) -> None:
    """Before: the SQL IN-list returned one row per key, so the first of two equal ids came back cold."""
    cfg, as_of, customers = store
    X, found, age = OnlineFeatureReader(cfg, "churn_v1").read([customers[1], customers[1]], as_of)
    assert found.tolist() == [True, True]
    np.testing.assert_array_equal(X[0], X[1])
    np.testing.assert_array_equal(age[0], age[1])


def test_scorer_reads_a_shared_store_once_per_request() -> None:
    """Services whose readers share a store are answered by one `read_services` call, in service order."""
    from tests.support.synthetic import synthetic_scorer

    scorer, _ = synthetic_scorer(n_customers=50, rounds=3)
    calls: list[list[str]] = []

    class Shared:
        def read_services(self, svcs: list[str], ids: list[str], now: pd.Timestamp) -> dict[str, Any]:
            calls.append(list(svcs))
            return {s: scorer.readers[s].read(ids, now) for s in svcs}

    class View:
        def __init__(self, shared: Shared, svc: str) -> None:
            self.shared, self.feature_names = shared, scorer.readers[svc].feature_names

        def read(self, ids: list[str], now: pd.Timestamp) -> Any:
            raise AssertionError("a shared reader is read through its store, not one by one")

    shared = Shared()
    from dataclasses import replace

    viewed = replace(scorer, readers={s: View(shared, s) for s in scorer.readers})
    now = pd.Timestamp("2025-07-01T00:00:00Z")
    a, b = viewed.score_ids(["c000001", "zz"], now), scorer.score_ids(["c000001", "zz"], now)
    assert calls == [sorted(scorer.readers)]
    np.testing.assert_array_equal(a.churn, b.churn)
    np.testing.assert_array_equal(a.cold_start, b.cold_start)


def test_in_memory_store_shared_read_equals_each_readers_own() -> None:
    """The synthetic store (tests, benchmark) follows the same contract as the online one."""
    from tests.support.synthetic import FEATURES, InMemoryReader, InMemoryStore, feature_table

    table = feature_table(40, seed=2)
    store = InMemoryStore(table, FEATURES)
    ids = ["c000003", "ghost", "c000039", "c000003"]
    now = pd.Timestamp("2025-07-01T00:00:00Z")
    got = store.read_services(list(FEATURES), ids, now)
    for svc, names in FEATURES.items():
        for g, w in zip(got[svc], InMemoryReader(table, names).read(ids, now), strict=True):
            np.testing.assert_array_equal(g, w)
    assert got["churn_v1"][1].tolist() == [True, False, True, True]


def test_read_all_combines_services_as_the_scorer_does(store: tuple[Any, pd.Timestamp, list[str]]) -> None:
    """cold = found in no service, age = the oldest service's age: the per-service arrays folded by hand."""
    cfg, as_of, customers = store
    ids = [customers[2], "nobody", customers[2], customers[11]]
    now = as_of + pd.Timedelta(days=2)
    shared = OnlineStoreReader(cfg, SERVICES)
    mats, cold, age = shared.read_all(SERVICES, ids, now)
    per = {svc: OnlineFeatureReader(cfg, svc).read(ids, now) for svc in SERVICES}
    for svc in SERVICES:
        np.testing.assert_array_equal(mats[svc], per[svc][0])
    assert cold.tolist() == [False, True, False, False]
    want_age = np.fmax.reduce([np.where(f, a, np.nan) for _, f, a in per.values()])
    np.testing.assert_array_equal(age, want_age)
    # materialized at as_of, read two days later: every known customer's features are 2 days old
    np.testing.assert_allclose(age[[0, 2, 3]], 2 * 86_400.0)
    assert np.isnan(age[1])


def test_read_is_split_into_statements_within_sqlite_variable_limit(
    store: tuple[Any, pd.Timestamp, list[str]],
) -> None:
    """More keys x views than one statement may bind: several statements, the same answer."""
    cfg, as_of, customers = store
    ids = [*customers[:23], "nobody", customers[4]]
    shared = OnlineStoreReader(cfg, SERVICES)
    want = shared.read_all(SERVICES, ids, as_of)
    shared._rows.max_vars = 2 * len(shared._tables) + 1  # two keys per statement
    got = shared.read_all(SERVICES, ids, as_of)
    for svc in SERVICES:
        np.testing.assert_array_equal(got[0][svc], want[0][svc])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    assert not shared.read_all(SERVICES, [], as_of)[1].size


def test_a_row_of_the_wrong_width_is_a_clear_error(
    store: tuple[Any, pd.Timestamp, list[str]], tmp_path: Any
) -> None:
    """A packed row that does not match its view's layout is refused, naming the table and what to run."""
    import sqlite3

    from features.online_store import SqliteRows
    from features.store import online_path
    from rebuy.errors import RebuyError

    cfg, as_of, _ = store
    shared = OnlineStoreReader(cfg, SERVICES)
    table = shared._tables[0]
    db = tmp_path / "online.db"
    src, conn = sqlite3.connect(online_path(cfg)), sqlite3.connect(db)
    src.backup(conn)  # a copy of the store (WAL included); the shared fixture stays intact
    src.close()
    with conn:
        one = conn.execute(f'SELECT entity_key FROM "{table}" LIMIT 1').fetchone()[0]
        conn.execute(f'UPDATE "{table}" SET vals = ? WHERE entity_key = ?', (np.zeros(3).tobytes(), one))
    conn.close()
    shared._rows = SqliteRows(db, read_only=True)
    cid = one[len(shared._prefix) + 4 :].decode()
    with pytest.raises(RebuyError, match=rf"{table}.*3 values.*rebuy features materialize"):
        shared.read_all(SERVICES, [cid], as_of)
    shared.row_loop_max = 0  # the block path (many keys) refuses it the same way
    with pytest.raises(RebuyError, match=rf"{table}.*3 values.*rebuy features materialize"):
        shared.read_all(SERVICES, [cid, "nobody"], as_of)


def test_row_by_row_and_block_placement_agree(store: tuple[Any, pd.Timestamp, list[str]]) -> None:
    """Few keys are copied row by row, many by one block per view: the same arrays either way."""
    cfg, as_of, customers = store
    ids = [customers[7], "nobody", *customers[20:40], customers[7]]
    shared = OnlineStoreReader(cfg, SERVICES)
    shared.row_loop_max = 0
    blocks = shared.read_services(SERVICES, ids, as_of)
    shared.row_loop_max = 10**9
    rows = shared.read_services(SERVICES, ids, as_of)
    for svc in SERVICES:
        for a, b, w in zip(
            blocks[svc], rows[svc], OnlineFeatureReader(cfg, svc).read(ids, as_of), strict=True
        ):
            np.testing.assert_array_equal(a, w)
            np.testing.assert_array_equal(b, w)
