"""Every endpoint and every kind of bad input, through the service's ASGI app in process."""

from __future__ import annotations

import json
import pickle
import threading
from typing import Any

import pandas as pd
import pytest

from serving.schemas import ScoreResponse
from tests.support.synthetic import synthetic_scorer

JSON = {"content-type": "application/json"}


def post(client: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(path, content=raw, headers=headers or JSON)


def error_locs(resp: Any) -> list[list[Any]]:
    return [d["loc"] for d in resp.json()["detail"]]


def test_score_contract_and_values(client: Any) -> None:
    r = post(
        client,
        "/score",
        {
            "customer_ids": ["c000001", "c000002"],
            "offers": ["none", "coupon_10pct"],
            "as_of": "2025-06-30T06:00:00Z",
        },
    )
    assert r.status_code == 200
    body = ScoreResponse.model_validate(r.json())
    assert [x.customer_id for x in body.results] == ["c000001", "c000002"]
    first = body.results[0]
    assert set(first.offers) == {"none", "coupon_10pct"}
    assert first.feature_age_seconds == pytest.approx(6 * 3600.0)
    assert first.cold_start is False and first.model_versions["churn"] == "1"
    # the same numbers as the Scorer in this process (the service adds nothing to the scores)
    scorer, _ = synthetic_scorer()
    direct = scorer.score_ids(
        ["c000001", "c000002"], pd.Timestamp("2025-06-30T06:00:00Z"), ["none", "coupon_10pct"]
    ).records()
    assert r.json()["results"] == json.loads(json.dumps(direct))


def test_unknown_customer_is_200_with_cold_start(client: Any) -> None:
    r = post(client, "/score", {"customer_ids": ["never-seen"]})
    assert r.status_code == 200
    res = r.json()["results"][0]
    assert res["cold_start"] is True and res["feature_age_seconds"] is None
    assert 0.0 <= res["churn_probability"] <= 1.0


def test_score_features(client: Any) -> None:
    r = post(
        client,
        "/score_features",
        {
            "rows": [
                {
                    "customer_id": "x1",
                    "features": {"days_since_last_order": 3.0, "orders_90d": 4.0, "views_24h": None},
                },
                {"features": {}},
            ]
        },
    )
    assert r.status_code == 200
    res = r.json()["results"]
    assert res[0]["customer_id"] == "x1" and res[0]["cold_start"] is False
    assert res[1]["customer_id"] is None and res[1]["cold_start"] is True
    assert res[0]["feature_age_seconds"] is None


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/score", {"customer_ids": []}, ["customer_ids"]),
        ("/score", {}, ["customer_ids"]),
        ("/score", {"customer_ids": "c1"}, ["customer_ids"]),
        ("/score", {"customer_ids": [1]}, ["customer_ids", 0]),
        ("/score", {"customer_ids": [""]}, ["customer_ids", 0]),
        ("/score", {"customer_ids": ["c1"], "surprise": 1}, ["surprise"]),
        ("/score", {"customer_ids": ["c1"], "offers": ["free_lunch"]}, ["offers", 0]),
        ("/score", {"customer_ids": ["c1"], "as_of": "yesterday"}, ["as_of"]),
        (
            "/score",
            {"customer_ids": ["c1"], "as_of": "5925-01-05T01:05:01-23:47"},
            ["as_of"],
        ),  # found by schemathesis
        ("/score", [1, 2], []),
        (
            "/score_features",
            {"rows": [{"features": {"orders_90d": "many"}}]},
            ["rows", 0, "features", "orders_90d"],
        ),
        ("/score_features", {"rows": [{"features": {"orders_90d": 1}, "extra": 1}]}, ["rows", 0, "extra"]),
        ("/score_features", {"rows": []}, ["rows"]),
    ],
)
def test_bad_input_is_400_naming_the_field(client: Any, path: str, body: Any, loc: list[Any]) -> None:
    r = post(client, path, body)
    assert r.status_code == 400, r.text
    if loc:
        assert loc in error_locs(r)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"customer_ids": ["c1"]',  # truncated
        b"{'customer_ids': ['c1']}",  # not JSON quotes
        b"",  # empty body -> {} -> missing field
        b'{"rows": [{"features": {"orders_90d": NaN}}]}',
        b'{"rows": [{"features": {"orders_90d": Infinity}}]}',
        b'{"rows": [{"features": {"orders_90d": 1e999}}]}',
        b"\xff\xfe\x00garbage",
    ],
)
def test_malformed_or_non_finite_json_is_400(client: Any, raw: bytes) -> None:
    path = "/score_features" if b"rows" in raw else "/score"
    assert post(client, path, raw).status_code == 400


def test_oversize_batch_is_400(client: Any) -> None:
    n = client.max_batch + 1
    r = post(client, "/score", {"customer_ids": [f"c{i:06d}" for i in range(n)]})
    assert r.status_code == 400 and "customer_ids" in r.text and "max_batch" in r.text
    r = post(client, "/score_features", {"rows": [{"features": {}}] * n})
    assert r.status_code == 400 and "rows" in r.text
    assert post(client, "/score", {"customer_ids": ["c000001"] * client.max_batch}).status_code == 200


def test_unknown_feature_and_offer_outside_catalogue_are_400(client: Any) -> None:
    r = post(client, "/score_features", {"rows": [{"features": {"shoe_size": 42.0}}]})
    assert r.status_code == 400 and "shoe_size" in r.text
    r = post(client, "/score", {"customer_ids": ["c1"], "offers": ["wake_up_gift"]})  # not in this catalogue
    assert r.status_code == 400 and "offers" in r.text


@pytest.mark.parametrize(
    "ctype",
    [
        "application/vnd.bentoml+pickle",
        "application/octet-stream",
        "text/plain",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ],
)
def test_non_json_payloads_are_415(client: Any, ctype: str) -> None:
    payload = pickle.dumps({"customer_ids": ["c1"]})
    r = client.post("/score", content=payload, headers={"content-type": ctype})
    assert r.status_code == 415 and "application/json" in r.json()["error"]


def test_health_readiness_metrics_and_docs(client: Any) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200
    post(client, "/score", {"customer_ids": ["c000003"]})
    m = client.get("/metrics")
    assert m.status_code == 200
    assert 'rebuy_model_info{model="churn",version="1"} 1' in m.text
    assert "rebuy_customers_scored_total" in m.text
    assert 'rebuy_gc_collections_total{generation="2"}' in m.text
    frozen = next(line for line in m.text.splitlines() if line.startswith("rebuy_gc_frozen_objects "))
    assert float(frozen.split()[1]) > 10_000  # the heap was frozen after warm-up
    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    for name in (
        "ScoreRequestIODescriptor",
        "ScoreFeaturesRequestIODescriptor",
        "FeatureRow",
        "ScoreResponseIODescriptor",
        "CustomerScore",
        "OfferEstimate",
        "Reason",
        "ReloadResponseIODescriptor",
    ):
        props = schemas[name]["properties"]
        undocumented = [p for p, v in props.items() if not v.get("description")]
        assert not undocumented, (name, undocumented)
        no_example = [p for p, v in props.items() if "examples" not in v]
        assert not no_example, (name, no_example)
    assert {"/score", "/score_features", "/admin/reload"} <= set(spec["paths"])


def test_admin_reload_needs_the_token(client: Any) -> None:
    assert client.post("/admin/reload", json={}).status_code == 401
    assert client.post("/admin/reload", json={}, headers={"authorization": "Bearer wrong"}).status_code == 401
    r = client.post("/admin/reload", json={}, headers={"authorization": f"Bearer {client.admin_token}"})
    assert r.status_code == 200 and r.json()["model_versions"]["churn"] == "1"
    assert r.json()["reloaded"] is False  # same versions: nothing swapped in


def test_reload_to_a_new_champion_drops_no_request(client: Any) -> None:
    """Requests keep flowing while the new version loads; each response names the versions that served it."""
    seen: list[tuple[int, set[str]]] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            r = post(client, "/score", {"customer_ids": ["c000001", "c000002"]})
            versions = {v for res in r.json().get("results", []) for v in res["model_versions"].values()}
            seen.append((r.status_code, versions))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        client.monkeypatch.setenv("REBUY_SYNTHETIC_VERSION", "2")
        r = client.post("/admin/reload", json={}, headers={"x-admin-token": client.admin_token})
    finally:
        client.monkeypatch.setenv("REBUY_SYNTHETIC_VERSION", "1")
    after = post(client, "/score", {"customer_ids": ["c000001"]}).json()["results"][0]["model_versions"]
    stop.set()
    worker.join(timeout=30)
    assert r.status_code == 200 and r.json()["reloaded"] is True
    assert set(after.values()) == {"2"}
    assert seen and all(code == 200 for code, _ in seen)
    assert all(v in ({"1"}, {"2"}) for _, v in seen)  # never a mix of versions inside one response
    client.post("/admin/reload", json={}, headers={"x-admin-token": client.admin_token})  # back to v1
