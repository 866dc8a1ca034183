"""Crash safety on Postgres: a pass killed with SIGKILL (in its log transaction, while a COMMIT is in flight,
between the sink write and mark-sent, inside the mark-sent transaction, and at random times), then rerun:
0 duplicate and 0 lost sends, and the final state equals an uncrashed pass on the embedded SQLite log."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines import decision_log as dl
from pipelines import orchestrator
from pipelines.orchestrator import LockedError, run_pass
from pipelines.sinks import JsonlSink, sink_path
from tests.pipelines.conftest import AS_OF, config_for, make_shop
from tests.pipelines.test_crash import OneByOne, _check, _phase
from tests.support.fake_client import FakeScoreClient

N, SEED = 250, 3


def _hold(go: int) -> None:
    """Tell the parent the child is at the chosen point, then wait there for the SIGKILL."""
    os.write(go, b"h")
    time.sleep(120)


def _install(where: tuple[str, int], go: int) -> orchestrator.Checkpoint:
    """Patch the forked child so that it stops (or signals) at `where`; returns the pass's checkpoint."""
    import psycopg

    kind, nth = where
    seen = {"n": 0}

    def count() -> bool:
        seen["n"] += 1
        return seen["n"] == nth

    if kind == "commit":  # signal, then commit: the kill races the COMMIT on the wire
        orig_commit = psycopg.Connection.commit

        def commit(self):  # type: ignore[no-untyped-def]
            if count():
                os.write(go, b"h")
            return orig_commit(self)

        psycopg.Connection.commit = commit  # type: ignore[method-assign]
    elif kind == "in_log_txn":
        orig_log = dl.log_decisions

        def log(conn, decisions):  # type: ignore[no-untyped-def]
            out = orig_log(conn, decisions)
            _hold(go)
            return out

        dl.log_decisions = log
    elif kind == "in_mark_sent_txn":
        orig_mark = dl.mark_sent

        def mark(conn, ids, at, chunk=900):  # type: ignore[no-untyped-def]
            orig_mark(conn, ids, at, chunk)
            if count():
                _hold(go)

        dl.mark_sent = mark

    def checkpoint(step: str) -> None:
        if kind == "sink_written" and step == "sink_written" and count():
            _hold(go)

    return checkpoint


def _start(cfg, shop, where: tuple[str, int] | None) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one pass with tiny delivery batches, never the parent's cleanup
        os.close(r)
        code = 1
        try:
            orchestrator.DELIVERY_BATCH = 5
            checkpoint = _install(where, w) if where else orchestrator._noop
            os.write(w, b"r")
            sink = OneByOne(JsonlSink(sink_path(cfg)))
            run_pass(cfg, AS_OF, shop, FakeScoreClient(), sink=sink, checkpoint=checkpoint)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    assert os.read(r, 1) == b"r"
    return pid, r


def _rerun(cfg, shop) -> None:
    """The repair: the same pass again. The killed pass's advisory lock goes when Postgres notices its
    connection closed, which can take a moment after the kill."""
    for _ in range(100):
        try:
            run_pass(cfg, AS_OF, shop, FakeScoreClient())
            return
        except LockedError:
            time.sleep(0.1)
    raise AssertionError("the killed pass's advisory lock was never released")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[str]]:
    cfg = config_for(tmp_path_factory.mktemp("ref"))  # the embedded SQLite log
    run_pass(cfg, AS_OF, make_shop(N, SEED), FakeScoreClient())
    return _check(cfg)


def test_sigkill_on_postgres_at_chosen_and_random_points(
    tmp_path: Path, reference, pg_schema, stores_config, namespace
) -> None:
    shop = make_shop(N, SEED)
    assert len(reference[1]) > 20
    chosen: list[tuple[str, int] | None] = [
        ("in_log_txn", 1),
        ("commit", 1),
        ("commit", 2),
        ("commit", 3),
        ("commit", 4),
        ("commit", 6),
        ("sink_written", 1),
        ("sink_written", 3),
        ("in_mark_sent_txn", 1),
        ("in_mark_sent_txn", 4),
    ]
    rng = random.Random(20261205)
    calibrate = stores_config(tmp_path / "cal", decision_log_url=pg_schema(), namespace=namespace + "c")
    t0 = time.perf_counter()
    pid, r = _start(calibrate, shop, None)
    assert os.waitpid(pid, 0)[1] == 0
    os.close(r)
    duration = time.perf_counter() - t0
    _check(calibrate, reference)
    plan: list[tuple[str, int] | float] = [
        *[w for w in chosen if w],
        *[rng.uniform(0, duration) for _ in range(4)],
    ]
    kills: list[str] = []
    for i, what in enumerate(plan):
        cfg = stores_config(tmp_path / f"run{i}", decision_log_url=pg_schema(), namespace=f"{namespace}k{i}")
        pid, r = _start(cfg, shop, what if isinstance(what, tuple) else None)
        if isinstance(what, tuple):
            assert os.read(r, 1) == b"h", f"the child never reached {what}"
        else:
            time.sleep(what)
        os.close(r)
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            kills.append(f"{what if isinstance(what, tuple) else 'random'}:{_phase(cfg)}")
        _rerun(cfg, shop)
        _check(cfg, reference)  # no duplicate decision or send, none lost, same decisions as embedded
    print("kills:", kills)
    assert len(kills) >= 10, kills
    phases = {k.rsplit(":", 1)[1] for k in kills}
    assert {"before_log", "logged", "delivering"} <= phases, kills
