"""The webhook sink: timestamped signature, retries within the pass, no unsigned or plaintext sends,
no URL (with its token) in error text."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx
import pytest

from pipelines.sinks import (
    IDEMPOTENCY_HEADER,
    REPLAY_WINDOW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryError,
    WebhookSink,
    make_sink,
    redact_url,
    sign,
    verify,
)
from rebuy.config import Config
from rebuy.errors import RebuyError

NOW = 1_780_000_000


def _sink(handler, url: str = "http://127.0.0.1:9/hook", **kw) -> WebhookSink:
    kw.setdefault("backoff", 0.0)
    return WebhookSink(
        url, kw.pop("secret", "s3cret"), client=httpx.Client(transport=httpx.MockTransport(handler)), **kw
    )


def test_signature_covers_the_timestamp_and_a_replay_outside_the_window_fails() -> None:
    seen: list[httpx.Request] = []
    sink = _sink(lambda r: seen.append(r) or httpx.Response(200), clock=lambda: NOW)
    sink.send([("k1", {"offer": "coupon_10pct"})])
    req = seen[0]
    header = req.headers[SIGNATURE_HEADER]
    assert req.headers[TIMESTAMP_HEADER] == str(NOW)
    assert req.headers[IDEMPOTENCY_HEADER] == "k1"
    # a receiver can recompute it from the documented recipe
    mac = hmac.new(b"s3cret", f"{NOW}.".encode() + req.content, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={mac}"
    assert verify("s3cret", req.content, header, now=NOW + REPLAY_WINDOW_SECONDS)
    assert not verify("s3cret", req.content, header, now=NOW + REPLAY_WINDOW_SECONDS + 1)
    assert not verify("other", req.content, header, now=NOW)
    assert not verify("s3cret", req.content + b" ", header, now=NOW)
    # moving the timestamp forward without the secret breaks the MAC
    forged = header.replace(f"t={NOW}", f"t={NOW + 600}")
    assert not verify("s3cret", req.content, forged, now=NOW + 600)
    assert sign("s3cret", b"{}", 5) != sign("s3cret", b"{}", 6)


def test_transient_failures_are_retried_within_the_pass_with_backoff() -> None:
    answers = iter([503, 429, 200, 200])
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["decision_id"])
        return httpx.Response(next(answers))

    assert _sink(handler).send([("a", {}), ("b", {})]) == ["a", "b"]
    assert calls == ["a", "a", "a", "b"]


def test_connection_errors_are_retried_then_reported_without_the_url() -> None:
    secret_url = "https://hooks.example.com/services/T0K3N-abc?key=hunter2"
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    with pytest.raises(DeliveryError) as err:
        _sink(handler, url=secret_url, attempts=3).send([("a", {})])
    assert calls == 3
    text = str(err.value)
    assert "T0K3N" not in text and "hunter2" not in text and "hooks.example.com" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_a_client_error_is_not_retried() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(400, text="bad")

    with pytest.raises(DeliveryError, match="400"):
        _sink(handler, url="https://h.example/x/SECRET").send([("a", {})])
    assert calls == 1


def test_unsigned_sends_are_refused_unless_allowed(monkeypatch) -> None:
    monkeypatch.delenv("REBUY_WEBHOOK_SECRET", raising=False)
    with pytest.raises(RebuyError, match="allow_unsigned"):
        _sink(lambda r: httpx.Response(200), secret=None)
    seen: list[httpx.Request] = []
    sink = _sink(lambda r: seen.append(r) or httpx.Response(200), secret=None, allow_unsigned=True)
    sink.send([("a", {})])
    assert SIGNATURE_HEADER not in seen[0].headers
    cfg = Config.model_validate({"sink": {"kind": "webhook", "url": "https://h.example/hook"}})
    with pytest.raises(RebuyError, match="allow_unsigned"):
        make_sink(cfg)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://hooks.example.com/x", True),
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/x", True),
        ("http://[::1]:9/x", True),
        ("http://hooks.example.com/x", False),
        ("http://10.0.0.5/x", False),
        ("ftp://127.0.0.1/x", False),
    ],
)
def test_https_is_required_except_to_loopback(url: str, ok: bool) -> None:
    if ok:
        _sink(lambda r: httpx.Response(200), url=url)
    else:
        with pytest.raises(RebuyError, match="https") as err:
            _sink(lambda r: httpx.Response(200), url=url + "/T0K3N")
        assert "T0K3N" not in str(err.value)


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url("https://u:pw@h.example:8443/a/b?token=x") == "https://h.example:8443/…"


def test_the_signing_key_is_the_webhook_secret_never_the_toml(tmp_path, monkeypatch) -> None:
    from rebuy.config import ConfigError, load_config

    toml = tmp_path / "rebuy.toml"
    toml.write_text('[sink]\nkind = "webhook"\nurl = "https://h.example/x"\nhmac_secret = "s"\n')
    with pytest.raises(ConfigError, match="REBUY_WEBHOOK_SECRET"):
        load_config(toml)
    monkeypatch.setenv("REBUY_WEBHOOK_SECRET", "from-env")
    cfg = Config.model_validate({"sink": {"kind": "webhook", "url": "https://h.example/x"}})
    sink = make_sink(cfg)
    assert isinstance(sink, WebhookSink) and sink.secret == "from-env"
