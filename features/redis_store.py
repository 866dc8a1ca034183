"""The Redis online store behind rebuy's interface (features.online_store.OnlineRows), in Feast's own layout.

Feast's RedisOnlineStore keeps one hash per entity: key = serialized entity key + project name; per feature
view a field `_ts:<view>` (a protobuf Timestamp) and per feature a field `mmh3("<view>:<feature>")` (4 bytes)
holding a serialized ValueProto. rebuy writes exactly that, so `FeatureStore.get_online_features`, Feast's
push path and this reader all see the same values (tests/infra/test_redis_store.py checks it against
Feast's reader on a real server). Only the encoding work is rebuy's own:

- **write**: a customer's views go into one HSET (Feast sends one per view, after a read of the old
  timestamps); the commands are built as Redis protocol bytes with numpy — every value is the fixed
  9-byte ValueProto `0x29 + float64` (double_val), a missing value the empty ValueProto (null) — and sent
  in pipelined batches. The latest write wins, as in rebuy's SQLite store.
- **read**: one HMGET per customer of every requested view's fields, all pipelined in one round trip,
  decoded back to the packed float64 rows the SQLite store returns.
- **delete**: the views' fields of each customer (Redis drops a hash when its last field goes).
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import mmh3
import numpy as np
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from google.protobuf.timestamp_pb2 import Timestamp

from features.online_store import OnlineRows, Row, ViewLayout, value_to_float
from rebuy.errors import RebuyError

if TYPE_CHECKING:
    import redis
    from feast.repo_config import RepoConfig

_DOUBLE_TAG = 0x29  # ValueProto field 5 (double_val), wire type 1 (64-bit)
_NAN = struct.pack("<d", float("nan"))
_SEGMENT = 25  # "$4\r\n" field(4) "\r\n" "$9\r\n" 0x29 float64(8) "\r\n"
# per-customer HSETs sent per pipelined batch (bounds the buffer: ~1.5 kB per customer with 52 features)
WRITE_BATCH = 2000
READ_BATCH = 5000


def field_key(view: str, feature: str) -> bytes:
    """Feast's hash field of a feature: murmur3_32 (unsigned) of "<view>:<feature>", 4 bytes little-endian."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def parse_connection_string(conn: str) -> dict[str, Any]:
    """redis.Redis keyword arguments from Feast's "host:port,db=0,ssl=true,password=..." string."""
    kwargs: dict[str, Any] = {"host": "127.0.0.1", "port": 6379}
    for i, part in enumerate(p.strip() for p in conn.split(",")):
        if "=" in part:
            k, v = part.split("=", 1)
            if k == "db":
                kwargs["db"] = int(v)
            elif k == "ssl":
                kwargs["ssl"] = v.lower() == "true"
            elif k in ("password", "username"):
                kwargs[k] = v
        elif i == 0 and part:
            host, _, port = part.rpartition(":")
            kwargs["host"], kwargs["port"] = (host or "127.0.0.1"), int(port or 6379)
    return kwargs


class RedisRows(OnlineRows):
    """rebuy's online-store interface over a Redis server (see the module docstring)."""

    def __init__(self, client: redis.Redis, project: str) -> None:
        self.client = client
        self.project = project.encode("utf-8")
        self._lock = threading.Lock()
        self._plans: dict[tuple[ViewLayout, ...], _Plan] = {}

    @classmethod
    def from_repo_config(cls, config: RepoConfig) -> RedisRows:
        import redis

        kwargs = parse_connection_string(str(config.online_store.connection_string))
        if str(kwargs.get("password", "")).startswith("${"):
            raise RebuyError(
                "the Redis online store needs the secret redis_password, which is not set in this process: "
                "set REBUY_REDIS_PASSWORD or REBUY_REDIS_PASSWORD_FILE (see rebuy.secrets)"
            )
        return cls(redis.Redis(socket_timeout=30, **kwargs), config.project)

    def close(self) -> None:
        self.client.close()

    def _plan(self, views: Sequence[ViewLayout]) -> _Plan:
        key = tuple(views)
        plan = self._plans.get(key)
        if plan is None:
            plan = _Plan(key)
            with self._lock:
                if len(self._plans) < 64:
                    self._plans[key] = plan
        return plan

    def _roundtrip(self, buf: bytes, n: int) -> list[Any]:
        """Send `n` packed commands at once (one pipelined round trip) and read their `n` replies."""
        import redis

        pool = self.client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([buf], check_health=False)
            replies = [conn.read_response() for _ in range(n)]
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        for r in replies:
            if isinstance(r, redis.ResponseError):
                raise r
        return replies

    def prepare(self, views: Sequence[ViewLayout]) -> None:
        """Hashes need no schema: Feast's layout is self-describing."""

    def write(
        self,
        views: Sequence[ViewLayout],
        keys: Sequence[bytes],
        blocks: Sequence[np.ndarray],
        event_ts: Sequence[int],
        created: int,
    ) -> None:
        plan = self._plan(views)
        n = len(keys)
        if not n:
            return
        matrix = np.concatenate([np.asarray(b, dtype="<f8").reshape(n, -1) for b in blocks], axis=1)
        ts_cache: dict[int, bytes] = {}
        for start in range(0, n, WRITE_BATCH):
            stop = min(start + WRITE_BATCH, n)
            flat, ends = plan.value_segments(matrix[start:stop])
            parts: list[bytes] = []
            begin = 0
            for i, key in enumerate(keys[start:stop], start=start):
                full = key + self.project
                stamp = int(event_ts[i])
                tss = ts_cache.get(stamp)
                if tss is None:
                    tss = ts_cache[stamp] = plan.ts_segments(stamp)
                end = int(ends[i - start])
                parts += (plan.hset_head, _bulk(full), flat[begin:end], tss)
                begin = end
            self._roundtrip(b"".join(parts), stop - start)

    def read(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> list[Row]:
        plan = self._plan(views)
        out: list[Row] = []
        for start in range(0, len(keys), READ_BATCH):
            part = keys[start : start + READ_BATCH]
            buf = b"".join(plan.hmget_head + _bulk(k + self.project) + plan.hmget_fields for k in part)
            for key, reply in zip(part, self._roundtrip(buf, len(part)), strict=True):
                out.extend(plan.decode(key, reply))
        return out

    def delete(self, views: Sequence[ViewLayout], keys: Sequence[bytes]) -> int:
        if not keys or not views:
            return 0
        ts_fields = [ts_field(v.name) for v in views]
        fields = [f for v in views for f in (*(field_key(v.name, n) for n in v.names), ts_field(v.name))]
        removed = 0
        with self.client.pipeline(transaction=True) as pipe:
            for k in keys:
                pipe.hmget(k + self.project, ts_fields)
                pipe.hdel(k + self.project, *fields)
            replies = pipe.execute()
        for stamps in replies[0::2]:
            removed += sum(s is not None for s in stamps)
        return removed


class _Plan:
    """The fixed protocol bytes of a set of views: field names, command heads, the value template."""

    def __init__(self, views: tuple[ViewLayout, ...]) -> None:
        self.views = views
        fields = [field_key(v.name, n) for v in views for n in v.names]
        self.width = len(fields)
        self.ts_fields = [ts_field(v.name) for v in views]
        argc = 2 + 2 * (self.width + len(views))
        self.hset_head = b"*%d\r\n$4\r\nHSET\r\n" % argc
        tmpl = np.empty((self.width, _SEGMENT), dtype=np.uint8)
        for j, f in enumerate(fields):
            tmpl[j] = np.frombuffer(b"$4\r\n" + f + b"\r\n$9\r\n)" + b"\0" * 8 + b"\r\n", dtype=np.uint8)
        self.template = tmpl
        # a missing value: the same field, then the empty bulk string (the null ValueProto)
        self.null_tail = np.frombuffer(b"$0\r\n\r\n", dtype=np.uint8)
        # HMGET: every view's features then its timestamp field
        order: list[bytes] = []
        self.slices: list[tuple[int, int]] = []
        for v in views:
            a = len(order)
            order += [field_key(v.name, n) for n in v.names]
            self.slices.append((a, len(order)))
            order.append(ts_field(v.name))
        self.hmget_head = b"*%d\r\n$5\r\nHMGET\r\n" % (2 + len(order))
        self.hmget_fields = b"".join(_bulk(f) for f in order)

    def value_segments(self, mat: np.ndarray) -> tuple[bytes, np.ndarray]:
        """Every row's field/value pairs as protocol bytes, rows back to back, and each row's end offset."""
        n = len(mat)
        seg = np.broadcast_to(self.template, (n, self.width, _SEGMENT)).copy()
        seg[:, :, 15:23] = np.ascontiguousarray(mat, dtype="<f8").view(np.uint8).reshape(n, self.width, 8)
        nan = np.isnan(mat)
        keep = np.ones((n, self.width, _SEGMENT), dtype=bool)
        if nan.any():
            seg[nan, 10:16] = self.null_tail
            keep[nan, 16:] = False
        lengths = keep.reshape(n, -1).sum(axis=1)
        return seg[keep].tobytes(), np.cumsum(lengths)

    def ts_segments(self, seconds: int) -> bytes:
        proto = Timestamp(seconds=seconds).SerializeToString()
        return b"".join(_bulk(f) + _bulk(proto) for f in self.ts_fields)

    def decode(self, key: bytes, reply: list[bytes | None]) -> list[Row]:
        rows: list[Row] = []
        for t, (a, b) in enumerate(self.slices):
            stamp = reply[b]
            if stamp is None:
                continue
            parts = [
                v[1:] if v is not None and len(v) == 9 and v[0] == _DOUBLE_TAG else _slow_value(v)
                for v in reply[a:b]
            ]
            ts = Timestamp.FromString(stamp)
            rows.append((t, key, b"".join(parts), ts.seconds + ts.nanos / 1e9))
        return rows


def _slow_value(v: bytes | None) -> bytes:
    """A value not in rebuy's fixed encoding (null, or written by Feast's own writer as another type)."""
    if not v:
        return _NAN
    return struct.pack("<d", value_to_float(ValueProto.FromString(v)))
