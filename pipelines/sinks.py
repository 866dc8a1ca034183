"""Channel sinks: where outbox messages go. rebuy itself never emails anyone.

Delivery is at-least-once (a crash between "sink has it" and "outbox says sent" resends), so each
sink makes redelivery harmless: the JSONL file sink checks the ids it already holds and skips them
(and repairs a torn last line left by a kill mid-write); the webhook sends the decision id as
`Idempotency-Key` and signs timestamp + body with HMAC-SHA256 so the receiver can dedupe,
authenticate and refuse replays.

Webhook receivers: `X-Rebuy-Signature: t=<unix seconds>,v1=<hex>` where
`hex = HMAC-SHA256(secret, "<t>." + raw body)`. Accept a request only if the MAC matches and `t` is
within REPLAY_WINDOW_SECONDS (5 minutes) of your clock, and dedupe on `Idempotency-Key` (a retry
is a resend of the same decision). `verify` below is the reference check.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from rebuy.config import Config
from rebuy.errors import RebuyError
from rebuy.secrets import secret

SIGNATURE_HEADER = "X-Rebuy-Signature"
TIMESTAMP_HEADER = "X-Rebuy-Timestamp"
# receivers refuse a signature whose timestamp is further than this from their clock
REPLAY_WINDOW_SECONDS = 300
IDEMPOTENCY_HEADER = "Idempotency-Key"


class Sink(Protocol):
    def send(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        """Deliver (idempotency key, payload) pairs; return the keys the sink now holds."""
        ...


class DeliveryError(RebuyError):
    """The sink refused or could not be reached; the messages stay pending for the next pass."""


def _dumps(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


class JsonlSink:
    """One JSON object per line, appended and fsynced; never holds the same decision id twice."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        # ids known to be in the file; read once per sink (one writer: passes hold the pass lock)
        self._cache: set[str] | None = None

    def _held(self) -> set[str]:
        """Ids in the file, after cutting a torn trailing line (a kill mid-append) back off."""
        if not self.path.exists():
            return set()
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())
            data = data[:keep]
        return {json.loads(line)["decision_id"] for line in data.splitlines() if line.strip()}

    def send(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._cache is None:
            self._cache = self._held()
        held = self._cache
        new = list({k: (k, p) for k, p in messages if k not in held}.values())
        if new:
            blob = b"".join(_dumps({**p, "decision_id": k}) + b"\n" for k, p in new)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, blob)
                os.fsync(fd)
            finally:
                os.close(fd)
            held.update(k for k, _ in new)
        return [k for k, _ in messages]

    def rewrite(self, transform: Any) -> int:
        """Apply `transform(record) -> record | None` to every line atomically (temp file + rename);
        returns how many records changed. Used to pseudonymise a forgotten customer."""
        if not self.path.exists():
            return 0
        self._held()
        changed, out = 0, []
        for line in self.path.read_bytes().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            new = transform(rec)
            if new != rec:
                changed += 1
            out.append(_dumps(new) + b"\n")
        self._cache = None
        if changed:
            tmp = self.path.with_suffix(self.path.suffix + ".tmp")
            with open(tmp, "wb") as fh:
                fh.write(b"".join(out))
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        return changed


def redact_url(url: str) -> str:
    """`scheme://host[:port]/…`: the path, query and user info of a webhook URL often carry a token,
    so error text and logs never show them."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str) -> None:
    """https, except to a loopback receiver (a local relay or a test): the body names customers."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise RebuyError(f"sink.url is not a URL ({redact_url(url)})") from None
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and _is_loopback(host):
        return
    raise RebuyError(
        f"sink.url {redact_url(url)}: the webhook needs https (plain http only to a loopback address "
        "such as 127.0.0.1)"
    )


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>`: the timestamp is inside the MAC, so
    a captured request cannot be replayed later than the receiver's window (see `verify`)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(
    secret: str, body: bytes, header: str, *, now: float | None = None, window: int = REPLAY_WINDOW_SECONDS
) -> bool:
    """What a receiver does: recompute the MAC over `"<t>." + body` and refuse a timestamp more than
    `window` seconds from its own clock (then dedupe on `Idempotency-Key`, since a retry within
    the window is a legitimate resend)."""
    fields = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > window:
        return False
    return hmac.compare_digest(sign(secret, body, ts), f"t={ts},v1={fields.get('v1', '')}")


class _Retryable(Exception):
    """A 5xx/408/429 answer or a transport error: worth another attempt within this pass."""


class WebhookSink:
    """POST each message as JSON, signed with a timestamped HMAC. Transport errors and 408/429/5xx
    answers are retried with exponential backoff within the pass (tenacity); when the attempts run
    out, or on any other non-2xx answer, delivery stops and the rest stays pending for the next
    pass. Refuses to send unsigned unless `allow_unsigned`; plain http only to loopback."""

    def __init__(
        self,
        url: str,
        secret: str | None,
        *,
        allow_unsigned: bool = False,
        client: Any | None = None,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        clock: Any = time.time,
    ) -> None:
        import httpx

        check_webhook_url(url)
        if not secret and not allow_unsigned:
            raise RebuyError(
                "the webhook sink has no signing secret: set REBUY_WEBHOOK_SECRET (or REBUY_WEBHOOK_SECRET_FILE, "
                "or the file webhook_secret in [stores] secrets_dir), or sink.allow_unsigned = true if the "
                "receiver really authenticates otherwise"
            )
        self.url = url
        self.secret = secret
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clock = clock
        self._client = client or httpx.Client(timeout=timeout)

    def _post_once(self, key: str, body: bytes) -> Any:
        import httpx

        headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
        if self.secret:
            ts = int(self._clock())
            headers[TIMESTAMP_HEADER] = str(ts)
            headers[SIGNATURE_HEADER] = sign(self.secret, body, ts)
        try:
            resp = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _Retryable(f"unreachable ({type(exc).__name__})") from None
        if resp.status_code in (408, 429) or resp.status_code >= 500:
            raise _Retryable(f"answered {resp.status_code}")
        return resp

    def send(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        where = redact_url(self.url)
        done: list[str] = []
        for key, payload in messages:
            body = _dumps({**payload, "decision_id": key})
            retrying = Retrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=self.backoff, max=self.max_backoff),
                retry=retry_if_exception_type(_Retryable),
                reraise=True,
            )
            try:
                resp = retrying(self._post_once, key, body)
            except _Retryable as exc:
                raise DeliveryError(
                    f"webhook {where} {exc} after {self.attempts} attempts; {len(done)} of "
                    f"{len(messages)} messages delivered, the rest stay pending for the next pass"
                ) from None
            if not 200 <= resp.status_code < 300:
                raise DeliveryError(
                    f"webhook {where} answered {resp.status_code} for {key}: {resp.text[:200]}"
                )
            done.append(key)
        return done


def sink_path(cfg: Config) -> Path:
    return cfg.sink.path or cfg.paths.runtime_dir / "outbox.jsonl"


def make_sink(cfg: Config) -> Sink:
    """The configured sink: JSONL under the runtime directory by default, or the webhook."""
    if cfg.sink.kind == "webhook":
        if not cfg.sink.url:
            raise RebuyError("sink.kind = 'webhook' needs sink.url in rebuy.toml")
        key = secret(cfg, "webhook_secret")
        return WebhookSink(
            cfg.sink.url,
            key.get_secret_value() if key is not None else None,
            allow_unsigned=cfg.sink.allow_unsigned,
        )
    return JsonlSink(sink_path(cfg))
