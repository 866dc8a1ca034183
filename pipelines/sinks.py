"""Channel sinks: where outbox messages go. rebuy itself never emails anyone.

Delivery is at-least-once (a crash between "sink has it" and "outbox says sent" resends), so each
sink makes redelivery harmless: the JSONL file sink checks the ids it already holds and skips them
(and repairs a torn last line left by a kill mid-write); the webhook sends the decision id as
`Idempotency-Key` and signs the body with HMAC-SHA256 so the receiver can dedupe and authenticate.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rebuy.config import Config
from rebuy.errors import RebuyError
from rebuy.files import write_bytes

SIGNATURE_HEADER = "X-Rebuy-Signature"
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
            write_bytes(self.path, b"".join(out), fsync=True)
        return changed


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSink:
    """POST each message as JSON, signed; any non-2xx answer stops delivery (retried next pass)."""

    def __init__(
        self, url: str, secret: str | None, *, client: Any | None = None, timeout: float = 10.0
    ) -> None:
        import httpx

        self.url = url
        self.secret = secret
        self._client = client or httpx.Client(timeout=timeout)

    def send(self, messages: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        import httpx

        done: list[str] = []
        for key, payload in messages:
            body = _dumps({**payload, "decision_id": key})
            headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, body)
            try:
                resp = self._client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise DeliveryError(
                    f"webhook {self.url} unreachable after {len(done)} messages: {exc}"
                ) from exc
            if not 200 <= resp.status_code < 300:
                raise DeliveryError(
                    f"webhook {self.url} answered {resp.status_code} for {key}: {resp.text[:200]}"
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
        return WebhookSink(cfg.sink.url, cfg.sink.hmac_secret)
    return JsonlSink(sink_path(cfg))
