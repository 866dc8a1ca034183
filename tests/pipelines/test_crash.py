"""Crash safety: kill a pass with SIGKILL at random points (>= 20 kills) and fail it deterministically
after each step; after a rerun there are no duplicate decisions, no duplicate sink messages, no decision
without its outbox row, and the final state equals an uncrashed pass."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest

from pipelines import decision_log as dl
from pipelines import orchestrator
from pipelines.orchestrator import run_pass
from pipelines.sinks import JsonlSink, sink_path
from tests.support.fake_client import FakeScoreClient

from .conftest import AS_OF, config_for, make_shop

N, SEED = 250, 3


class Boom(RuntimeError):
    pass


def _check(cfg, reference: tuple[pd.DataFrame, list[str]] | None = None) -> tuple[pd.DataFrame, list[str]]:
    eng = dl.engine_for(cfg.decision_log_url)
    with eng.connect() as conn:
        d, o = dl.read_decisions(conn), dl.read_outbox(conn)
    eng.dispose()
    sink = [json.loads(x)["decision_id"] for x in sink_path(cfg).read_bytes().splitlines()]
    messaged = d.loc[(d["group"] == "treatment") & (d["offer"] != "none"), "decision_id"]
    assert d["decision_id"].is_unique and d["customer_id"].is_unique, "duplicate decisions"
    assert len(sink) == len(set(sink)), "duplicate messages in the sink"
    assert set(messaged) <= set(o["decision_id"]), "decision without its outbox row"
    assert set(o["decision_id"]) <= set(d["decision_id"]), "outbox row without its decision"
    assert (o["status"] == "sent").all() and sorted(sink) == sorted(messaged), "undelivered or stray messages"
    view = d[["decision_id", "customer_id", "offer", "group", "propensity"]].reset_index(drop=True)
    if reference is not None:
        pd.testing.assert_frame_equal(view, reference[0])
        assert sorted(sink) == reference[1]
    return view, sorted(sink)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, list[str]]:
    cfg = config_for(tmp_path_factory.mktemp("ref"))
    run_pass(cfg, AS_OF, make_shop(N, SEED), FakeScoreClient())
    view, sink = _check(cfg)
    assert len(sink) > 20  # enough messages for the kills to land between them
    return view, sink


class HalfThenFail:
    """A sink that stores the first half of a batch, then dies: a crash in the middle of a write."""

    def __init__(self, inner: JsonlSink) -> None:
        self.inner = inner

    def send(self, messages):  # type: ignore[no-untyped-def]
        self.inner.send(messages[: len(messages) // 2])
        raise Boom("sink died mid-batch")


@pytest.mark.parametrize("step", ["decided", "logged", "sink_written", "before_mark_sent", "mid_sink_write"])
def test_injected_failure_at_each_step_then_rerun(tmp_path: Path, step: str, reference) -> None:
    cfg = config_for(tmp_path)
    shop = make_shop(N, SEED)

    def fail(at: str) -> None:
        if at == step:
            raise Boom(at)

    sink = HalfThenFail(JsonlSink(sink_path(cfg))) if step == "mid_sink_write" else None
    with pytest.raises(Boom):
        run_pass(cfg, AS_OF, shop, FakeScoreClient(), sink=sink, checkpoint=fail)
    eng = dl.engine_for(cfg.decision_log_url)
    with eng.connect() as conn:
        logged = len(dl.read_decisions(conn))
    eng.dispose()
    assert (logged == 0) == (step == "decided")  # failing before the commit leaves nothing behind
    run_pass(cfg, AS_OF, shop, FakeScoreClient())
    _check(cfg, reference)


class OneByOne:
    """The file sink, one fsynced message per write: more points between writes for a kill to land on."""

    def __init__(self, inner: JsonlSink) -> None:
        self.inner = inner

    def send(self, messages):  # type: ignore[no-untyped-def]
        for m in messages:
            self.inner.send([m])
        return [k for k, _ in messages]


def _child(cfg, shop, go: int) -> None:
    """The forked pass: small delivery batches, then exit without running the parent's cleanup."""
    code = 1
    try:
        orchestrator.DELIVERY_BATCH = 5
        os.write(go, b"r")
        run_pass(cfg, AS_OF, shop, FakeScoreClient(), sink=OneByOne(JsonlSink(sink_path(cfg))))
        code = 0
    finally:
        os._exit(code)


def _start(cfg, shop) -> int:
    """Fork a child process running one pass (fork: the parent's imports are reused, so a kill costs
    milliseconds instead of a fresh interpreter); returns its pid once it is about to start the pass."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _child(cfg, shop, w)
    os.close(w)
    assert os.read(r, 1) == b"r"
    os.close(r)
    return pid


def test_sigkill_at_random_points_twenty_times(tmp_path: Path, reference) -> None:
    rng = random.Random(20251123)
    shop = make_shop(N, SEED)
    cfg = config_for(tmp_path / "calibrate")
    t0 = time.perf_counter()
    pid = _start(cfg, shop)
    assert os.waitpid(pid, 0)[1] == 0
    duration = time.perf_counter() - t0
    _check(cfg, reference)
    kills, attempts, landed = 0, 0, []
    while kills < 20:
        attempts += 1
        assert attempts <= 60, f"only {kills} kills landed in {attempts} attempts"
        cfg = config_for(tmp_path / f"run{attempts}")
        pid = _start(cfg, shop)
        delay = rng.uniform(0, duration)
        time.sleep(delay)
        if os.waitpid(pid, os.WNOHANG)[0] == 0:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            kills += 1
            landed.append(_phase(cfg))
        run_pass(cfg, AS_OF, shop, FakeScoreClient())  # the rerun repairs whatever the kill left
        _check(cfg, reference)
    # the kills did not all land in the same phase (they are spread over the pass by the random delays)
    assert len(set(landed)) >= 2, landed


def _phase(cfg) -> str:
    """Where a kill left the pass: nothing logged, logged but nothing sent, part sent, all sent."""
    if cfg.decision_log_url.startswith("sqlite") and not (cfg.paths.data_dir / "decisions.db").exists():
        return "before_log"  # opening the log would create it
    eng = dl.engine_for(cfg.decision_log_url)
    with eng.connect() as conn:
        d, o = dl.read_decisions(conn), dl.read_outbox(conn)
    eng.dispose()
    if not len(d):
        return "before_log"
    sent = (o["status"] == "sent").sum()
    return "logged" if sent == 0 else ("delivering" if sent < len(o) else "sent")


def test_rerun_after_kill_keeps_small_delivery_batches_consistent(
    tmp_path: Path, reference, monkeypatch
) -> None:
    # The same repair path in-process with many tiny delivery batches: fail at the 3rd mark-sent.
    monkeypatch.setattr(orchestrator, "DELIVERY_BATCH", 3)
    cfg = config_for(tmp_path)
    shop = make_shop(N, SEED)
    seen = {"n": 0}

    def fail(at: str) -> None:
        if at == "before_mark_sent":
            seen["n"] += 1
            if seen["n"] == 3:
                raise Boom(at)

    with pytest.raises(Boom):
        run_pass(cfg, AS_OF, shop, FakeScoreClient(), checkpoint=fail)
    run_pass(cfg, AS_OF, shop, FakeScoreClient())
    _check(cfg, reference)
