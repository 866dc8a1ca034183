"""A pass end to end on a small shop with the in-process scorer: log, outbox, sinks, dry run, lock, forget."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest
import sqlalchemy as sa

from pipelines import decision_log as dl
from pipelines.orchestrator import LockedError, forget, pass_lock, run_pass
from pipelines.score_client import HttpScoreClient, ScoringError
from pipelines.sinks import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, JsonlSink, WebhookSink, sink_path, verify
from tests.support.fake_client import FakeScoreClient

from .conftest import AS_OF, config_for


def _state(cfg) -> tuple[pd.DataFrame, pd.DataFrame, bytes]:
    eng = dl.engine_for(cfg.decision_log_url)
    with eng.connect() as conn:
        d, o = dl.read_decisions(conn), dl.read_outbox(conn)
    eng.dispose()
    path = sink_path(cfg)
    return d, o, path.read_bytes() if path.exists() else b""


def test_pass_logs_every_message_once_and_rerun_changes_nothing(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path)
    first = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    assert len(first.decisions) > 50 and first.sent == first.queued > 0
    d, o, sink = _state(cfg)
    lines = [json.loads(x) for x in sink.splitlines()]
    messaged = d.loc[(d["group"] == "treatment") & (d["offer"] != "none")]
    assert (
        sorted(r["decision_id"] for r in lines) == sorted(messaged["decision_id"]) == sorted(o["decision_id"])
    )
    assert (o["status"] == "sent").all()
    assert d["customer_id"].is_unique  # one decision per customer per run
    row = d.iloc[0]
    assert row["model_versions"] == {"churn": "1", "repurchase": "1", "value": "1", "offer": "1"}
    assert {"churn_probability", "offer_estimates"} <= set(row["scores"])

    again = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    assert len(again.decisions) == 0 and again.already_decided == len(first.decisions)
    d2, o2, sink2 = _state(cfg)
    pd.testing.assert_frame_equal(d, d2)
    pd.testing.assert_frame_equal(o, o2)
    assert sink2 == sink


def test_dry_run_decides_the_same_and_writes_nothing(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path)
    dry = run_pass(cfg, AS_OF, shop, FakeScoreClient(), dry_run=True)
    assert not any(tmp_path.iterdir())
    real = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    cols = ["decision_id", "offer", "group", "propensity"]
    pd.testing.assert_frame_equal(dry.decisions[cols], real.decisions[cols])
    assert dry.queued == real.queued


def test_second_pass_is_refused_while_one_holds_the_lock(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path)
    with pass_lock(cfg), pytest.raises(LockedError, match="another rebuy pass"):
        run_pass(cfg, AS_OF, shop, FakeScoreClient())
    run_pass(cfg, AS_OF, shop, FakeScoreClient())  # released afterwards


def test_later_pass_respects_caps_against_the_log(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path)
    run_pass(cfg, AS_OF, shop, FakeScoreClient())
    run_pass(cfg, AS_OF + pd.Timedelta(days=1), shop, FakeScoreClient())
    d, _, _ = _state(cfg)
    sent = d.loc[(d["group"] == "treatment") & (d["offer"] != "none") & (d["channel"] == "email")]
    gaps = sent.sort_values("decided_at").groupby("customer_id")["decided_at"].diff().dropna()
    assert (gaps >= pd.Timedelta(days=3)).all()  # <= 1 email per 3 days


def test_forget_pseudonymises_and_the_customer_is_never_scored_or_messaged_again(
    tmp_path: Path, shop
) -> None:
    cfg = config_for(tmp_path)
    run_pass(cfg, AS_OF, shop, FakeScoreClient())
    d, _, _ = _state(cfg)
    victim = d.loc[(d["group"] == "treatment") & (d["offer"] != "none"), "customer_id"].iloc[0]
    out = forget(cfg, victim, AS_OF)
    assert out["decisions_pseudonymised"] >= 1 and out["sink_messages_pseudonymised"] >= 1
    assert out["online_store"].startswith("no online store")  # no Feast store in this test
    d2, o2, sink = _state(cfg)
    assert victim not in set(d2["customer_id"]) and victim.encode() not in sink
    assert victim not in "".join(o2["payload"])
    client = FakeScoreClient()
    later = run_pass(cfg, AS_OF + pd.Timedelta(days=40), shop, client)
    assert victim not in client.scored and victim not in set(later.decisions["customer_id"])
    assert victim.encode() not in sink_path(cfg).read_bytes()
    assert forget(cfg, victim, AS_OF)["decisions_pseudonymised"] == 0  # idempotent: nothing left to rename


def test_jsonl_sink_never_holds_a_message_twice_and_repairs_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(path)
    sink.send([("a", {"x": 1}), ("b", {"x": 2}), ("a", {"x": 1})])
    with open(path, "ab") as fh:
        fh.write(b'{"decision_id": "c", "x"')  # a kill in the middle of an append
    fresh = JsonlSink(path)
    fresh.send([("b", {"x": 2}), ("c", {"x": 3})])
    ids = [json.loads(x)["decision_id"] for x in path.read_bytes().splitlines()]
    assert ids == ["a", "b", "c"]


def test_webhook_signs_with_hmac_and_sends_the_idempotency_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200 if len(seen) < 3 else 400)

    sink = WebhookSink(
        "http://127.0.0.1:9/hook", "s3cret", client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert sink.send([("k1", {"offer": "coupon_10pct"}), ("k2", {"offer": "points_x2"})]) == ["k1", "k2"]
    req = seen[0]
    assert req.headers[IDEMPOTENCY_HEADER] == "k1"
    assert verify("s3cret", req.content, req.headers[SIGNATURE_HEADER])
    from pipelines.sinks import DeliveryError

    with pytest.raises(DeliveryError, match="400"):
        sink.send([("k3", {})])


def test_http_score_client_posts_the_contract_and_reports_a_bad_service() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body == {"customer_ids": ["a"], "offers": None, "as_of": "2025-06-10T12:00:00+00:00"}
        return httpx.Response(200, json={"results": FakeScoreClient().score(["a"], None, None)})

    client = HttpScoreClient(
        "http://127.0.0.1:1", client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    assert client.score(["a"], None, AS_OF)[0]["customer_id"] == "a"
    down = HttpScoreClient(
        "http://127.0.0.1:1",
        client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500, text="boom"))),
    )
    with pytest.raises(ScoringError, match="500"):
        down.score(["a"], None, AS_OF)


def test_pending_messages_from_a_failed_delivery_go_out_on_the_next_pass(tmp_path: Path, shop) -> None:
    cfg = config_for(tmp_path)

    class Broken:
        def send(self, messages):
            raise RuntimeError("channel down")

    with pytest.raises(RuntimeError):
        run_pass(cfg, AS_OF, shop, FakeScoreClient(), sink=Broken())
    d, o, _ = _state(cfg)
    assert len(o) and (o["status"] == "pending").all()
    assert set(o["decision_id"]) <= set(d["decision_id"])
    nxt = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    assert nxt.sent == len(o)
    eng = dl.engine_for(cfg.decision_log_url)
    with eng.connect() as conn:
        assert (
            conn.execute(
                sa.select(sa.func.count()).select_from(dl.OUTBOX).where(dl.OUTBOX.c.status == "pending")
            ).scalar_one()
            == 0
        )
    eng.dispose()


def test_pass_with_servings_own_scorer_in_process(tmp_path: Path) -> None:
    # serving's synthetic scorer answers in the real /score record shape (null feature ages, cold starts,
    # its own offer catalogue): the pass must digest it as it is.
    from pipelines.score_client import InProcessScoreClient
    from tests.support.synthetic import synthetic_scorer

    from .conftest import make_shop

    scorer, _features = synthetic_scorer(n_customers=200, seed=0, rounds=5)
    shop = make_shop(150, seed=5)
    cfg = config_for(tmp_path)
    res = run_pass(cfg, AS_OF, shop, InProcessScoreClient(scorer))
    d = res.decisions
    assert len(d) > 10
    assert set(d.loc[d["group"] == "treatment", "offer"]) <= {
        "none",
        "care_message",
        "coupon_10pct",
        "free_shipping",
    }
    assert all(v for v in d["model_versions"])


def test_forget_asks_the_features_stage_to_delete_online_rows(tmp_path: Path, monkeypatch) -> None:
    import features.online
    from features.store import online_path

    calls: list[list[str]] = []
    monkeypatch.setattr(features.online, "forget_customers", lambda cfg, ids: calls.append(list(ids)) or 7)
    cfg = config_for(tmp_path)
    online_path(cfg).parent.mkdir(parents=True)
    online_path(cfg).touch()
    out = forget(cfg, "c-42", AS_OF)
    assert calls == [["c-42"]] and out["online_store"].startswith("removed 7 online rows")


def test_bulk_logged_decisions_read_back_exactly(tmp_path: Path) -> None:
    at = pd.Timestamp("2025-06-10 12:34:56.789", tz="UTC")
    d = pd.DataFrame(
        {
            "decision_id": ["d1", "d2"],
            "customer_id": ["a", "b"],
            "decided_at": [at, at],
            "trigger": ["t", "t"],
            "campaign": ["k", "k"],
            "episode": ["e1", "e2"],
            "offer": ["coupon_10pct", "none"],
            "channel": ["email", "email"],
            "group": ["treatment", "control"],
            "propensity": [0.8, 1.0],
            "distribution": [{"none": 0.2, "coupon_10pct": 0.8}, {"none": 1.0}],
            "model_versions": [{"churn": "3"}, {"churn": "3"}],
            "scores": [{"churn_probability": 0.25, "offer_estimates": {"coupon_10pct": 1.5}}, {}],
            "reasons": [[{"feature": "x", "contribution": -0.5}], []],
            "segment": ["potential", None],
            "note": ["", "cap:email"],
        }
    )
    eng = dl.engine_for(f"sqlite:///{tmp_path / 'log.db'}")
    with eng.begin() as conn:
        assert dl.log_decisions(conn, d) == 1  # only the treated coupon is a message
        assert dl.log_decisions(conn, d) == 0  # ids already present: nothing again
    with eng.connect() as conn:
        back, box = dl.read_decisions(conn), dl.read_outbox(conn)
    eng.dispose()
    assert back["decided_at"].tolist() == [at, at]
    for c in ("distribution", "model_versions", "scores", "reasons", "note", "offer", "propensity"):
        assert back[c].tolist() == d[c].tolist(), c
    assert back["segment"].tolist()[0] == "potential" and back["segment"].isna().tolist()[1]
    assert not back["pseudonymised"].any()
    assert box["decision_id"].tolist() == ["d1"] and box["status"].tolist() == ["pending"]
    assert json.loads(box["payload"][0])["decided_at"] == at.isoformat()


def test_concurrent_scoring_returns_the_same_frame_in_batch_order() -> None:
    from pipelines.score_client import score_frame

    ids = [f"c{i}" for i in range(23)]
    done: list[int] = []
    one = score_frame(FakeScoreClient(), ids, AS_OF, batch_size=5)
    two = score_frame(FakeScoreClient(), ids, AS_OF, batch_size=5, concurrency=3, progress=done.append)
    pd.testing.assert_frame_equal(one, two)
    assert two["customer_id"].tolist() == ids and done == [5, 5, 5, 5, 3]

    class Down:
        def score(self, batch, offers, as_of):  # type: ignore[no-untyped-def]
            raise ScoringError("service down")

    with pytest.raises(ScoringError, match="down"):
        score_frame(Down(), ids, AS_OF, batch_size=5, concurrency=2)


def test_http_score_client_asks_again_once_when_a_kept_alive_connection_was_dropped() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.Response(200, json={"results": FakeScoreClient().score(["a"], None, None)})

    ok = HttpScoreClient("http://127.0.0.1:1", client=httpx.Client(transport=httpx.MockTransport(flaky)))
    assert ok.score(["a"], None, AS_OF)[0]["customer_id"] == "a" and calls["n"] == 2

    def gone(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    bad = HttpScoreClient("http://127.0.0.1:1", client=httpx.Client(transport=httpx.MockTransport(gone)))
    with pytest.raises(ScoringError, match="twice"):
        bad.score(["a"], None, AS_OF)
