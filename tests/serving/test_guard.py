"""Issue #22 items 9-14: the request guard (API key, streamed body limit, one error model, one WARNING line
per rejection), the prediction log's received_at/as_of, loopback binding, secrets out of rebuy.toml."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from serving.service import RejectLog, RequestGuard, public_openapi, service_options

from .test_api import post


async def _ok_app(scope: Any, receive: Any, send: Any) -> None:
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    out = json.dumps({"got": len(body)}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": out})


def _call(guard: Any, path: str, chunks: list[bytes], headers: dict[str, str]) -> tuple[int, Any, int]:
    """Drive the ASGI guard with a chunked body; returns (status, body, chunks it pulled)."""
    sent: list[dict[str, Any]] = []
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if pulled <= len(chunks):
            return {"type": "http.request", "body": chunks[pulled - 1], "more_body": pulled < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(m: dict[str, Any]) -> None:
        sent.append(m)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(guard(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body), pulled


def test_a_chunked_body_over_the_limit_is_413_after_reading_only_the_limit(monkeypatch) -> None:
    monkeypatch.delenv("REBUY_API_KEY", raising=False)
    from serving.service import MAX_BODY_BYTES

    chunk = b"x" * 65536
    n = (100 * 1024 * 1024) // len(chunk)  # a 100 MB body without Content-Length
    status, body, pulled = _call(
        RequestGuard(_ok_app), "/score", [chunk] * n, {"content-type": "application/json"}
    )
    assert status == 413 and "larger than" in body["error"] and body["detail"] == []
    assert pulled <= MAX_BODY_BYTES // len(chunk) + 2  # stopped at the limit, never read the 100 MB
    status, body, _ = _call(
        RequestGuard(_ok_app), "/score", [b"{}", b"  "], {"content-type": "application/json"}
    )
    assert status == 200 and body == {"got": 4}


def test_api_key_guards_scoring_and_metrics_when_configured(monkeypatch) -> None:
    monkeypatch.setenv("REBUY_API_KEY", "k3y")
    guard = RequestGuard(_ok_app)
    for path in ("/score", "/score_features", "/metrics"):
        status, body, _ = _call(guard, path, [b"{}"], {"content-type": "application/json"})
        assert status == 401 and "API key" in body["error"]
    ok = {"content-type": "application/json", "authorization": "Bearer k3y"}
    assert _call(guard, "/score", [b"{}"], ok)[0] == 200
    assert _call(guard, "/score", [b"{}"], {"content-type": "application/json", "x-api-key": "k3y"})[0] == 200
    assert _call(guard, "/score", [b"{}"], {**ok, "authorization": "Bearer k3"})[0] == 401
    assert _call(guard, "/livez", [b""], {})[0] == 200  # probes stay open


def test_every_error_has_the_one_error_model(client: Any) -> None:
    cases = [
        post(client, "/score", {"customer_ids": ["c1"], "offers": ["wake_up_gift"]}),  # was a JSON array
        post(client, "/score", {"customer_ids": ["c1"], "surprise": 1}),  # detail was a list vs string
        client.post("/admin/reload", json={}),  # 401, undeclared before
        client.post("/score", content=b"x", headers={"content-type": "text/plain"}),  # 415
    ]
    for r in cases:
        body = r.json()
        assert isinstance(body, dict) and isinstance(body["error"], str) and body["error"], r.text
        assert all(isinstance(d["loc"], list) and isinstance(d["msg"], str) for d in body["detail"])
    assert "surprise" in cases[1].json()["error"]
    spec = client.get("/docs.json").json()
    for path in ("/score", "/score_features", "/admin/reload"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"400", "401", "413", "415", "500"} <= set(responses)
        assert all(
            v["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
            for k, v in responses.items()
            if k != "200"
        )
    assert "401" in spec["paths"]["/metrics"]["get"]["responses"]
    # the served limits: what the schema allows, the service accepts
    assert (
        spec["components"]["schemas"]["ScoreRequestIODescriptor"]["properties"]["customer_ids"]["maxItems"]
        == 50
    )


def test_public_openapi_is_pure() -> None:
    spec = {"paths": {"/score": {"post": {"responses": {200: {"description": "ok"}, 400: {}}}}}}
    out = public_openapi(spec, served={})
    assert set(out["paths"]["/score"]["post"]["responses"]) == {
        "200",
        "400",
        "401",
        "404",
        "413",
        "415",
        "500",
        "503",
    }
    assert spec["paths"]["/score"]["post"]["responses"] == {200: {"description": "ok"}, 400: {}}


def test_rejections_log_one_warning_line_without_ids_and_no_traceback(client: Any, caplog) -> None:
    RequestGuard.reject_log = RejectLog(burst=1000)
    with caplog.at_level(logging.INFO):
        post(client, "/score", {"customer_ids": ["SECRET-ID-42"], "offers": ["wake_up_gift"]})
        post(client, "/score", {"customer_ids": [""] * 3})
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 2, [r.getMessage() for r in lines]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in lines)
    assert not any("SECRET-ID-42" in r.getMessage() for r in caplog.records)


def test_reject_log_is_rate_limited(caplog) -> None:
    t = [0.0]
    rl = RejectLog(burst=3, period=60.0, clock=lambda: t[0])
    with caplog.at_level(logging.WARNING):
        logged = [rl("POST", "/score", 400, []) for _ in range(10)]
        t[0] = 61.0
        logged.append(rl("POST", "/score", 400, []))
    assert logged == [True] * 3 + [False] * 7 + [True]
    assert "7 more rejected requests" in caplog.records[-1].getMessage()


def test_drift_trusts_as_of_only_from_keyed_callers() -> None:
    import numpy as np
    import pandas as pd

    # a keyed caller's as_of dates the row; an unkeyed one's is recorded but not trusted
    from serving.service import RebuyService

    class Fake:
        api_key: str | None = None
        rows: list[Any]

    fake = Fake()
    fake.rows = []

    class Log:
        def add(self, scorer, batch, mats, scored_at, *, received_at, as_of):
            fake.rows.append((scored_at, received_at, as_of))

    fake.pred_log = Log()  # type: ignore[attr-defined]
    fake._requests = fake._customers = fake._cold = 0  # type: ignore[attr-defined]

    class B:
        matrices: dict[str, Any] = {}  # noqa: RUF012
        cold_start = np.zeros(1, dtype=bool)

        def __len__(self) -> int:
            return 1

    recv, asof = pd.Timestamp("2026-12-05T10:00Z"), pd.Timestamp("2020-01-01T00:00Z")
    count = RebuyService.inner._count
    count(fake, None, B(), recv, asof)
    fake.api_key = "k"
    count(fake, None, B(), recv, asof)
    assert fake.rows == [(recv, recv, asof), (asof, recv, asof)]


def test_loopback_outside_a_container_and_no_start_without_key_inside(monkeypatch) -> None:
    from serving.scorer import StartupError
    from serving.service import check_exposure

    monkeypatch.delenv("BENTOML_CONTAINERIZED", raising=False)
    assert service_options()["http"]["host"] == "127.0.0.1"
    check_exposure(None)
    monkeypatch.setenv("BENTOML_CONTAINERIZED", "true")
    assert service_options()["http"]["host"] == "0.0.0.0"
    with pytest.raises(StartupError, match="REBUY_API_KEY"):
        check_exposure(None)
    check_exposure("k")


def test_admin_token_and_api_key_are_refused_in_the_toml(tmp_path) -> None:
    from rebuy.config import ConfigError, load_config

    for key in ("admin_token", "api_key"):
        p = tmp_path / "rebuy.toml"
        p.write_text(f'[serving]\n{key} = "x"\n', encoding="utf-8")
        with pytest.raises(ConfigError, match=f"REBUY_{key.upper()}"):
            load_config(p)


def test_demo_secrets_are_owner_only(tmp_path) -> None:
    import stat

    from pipelines.demo import write_demo_secrets

    keys = write_demo_secrets(tmp_path / "secrets")
    assert set(keys) == {"admin_token", "api_key"}
    for name in keys:
        assert stat.S_IMODE((tmp_path / "secrets" / name).stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
