"""The BentoML service: a thin HTTP shell over `serving.scorer.Scorer`.

Start it with `rebuy serve` (or `bentoml serve serving.service:RebuyService` with the REBUY_*
variables below). The worker reads its config from the environment because BentoML constructs
the class without arguments in each worker process:

- REBUY_CONFIG: path of rebuy.toml (optional), REBUY_DATA_DIR: overrides paths.data_dir.

What it serves is fixed in code: `scorer_factory` (the registry's @champion models and their online
readers) and `versions_fn` (where @champion points now). No environment variable can swap them; tests and
benchmarks serve synthetic champions through a subclass that lives outside the shipped packages
(tests/support/synthetic_service.py).

Reload: a watcher thread polls the versions function (REBUY_RELOAD_POLL_SECONDS, default 30) and
swaps in a new Scorer when they differ from the served ones; POST /admin/reload does the same at once.
Requests take one Scorer reference each, so none is dropped and each response names the versions
that served it.

Latency choices (see DESIGN.md, measured facts; benchmarks/serve.py measures them): endpoints are
`async` and score inline (a one-customer request is ~0.5 ms of CPU in process, less than a thread hop
under load); one-row predictions go through LightGBM's prebuilt single-row predictor
(serving.fastpredict); every FeatureService is read with one SQL statement for all feature views
(features.online.OnlineStoreReader.read_all); responses are serialised with `json.dumps` from plain lists;
the prediction log only keeps references on the request path; the scoring routes skip OpenTelemetry spans
(no exporter is configured); the endpoints are bound once, not per request (`_bind_apis`); and the cyclic
GC is frozen after warm-up (and its gen-0 threshold raised), because gen-2 passes over BentoML's heap are
what cause the periodic 50-350 ms stalls.
"""

from __future__ import annotations

import gc
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http import HTTPStatus
from typing import Any, cast

import bentoml
import pandas as pd
from bentoml.exceptions import BentoMLException, InvalidArgument
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.responses import Response

from rebuy.config import Config, load_config
from serving.schemas import (
    ErrorResponse,
    FeatureRow,
    ReloadResponse,
    ScoreFeaturesRequest,
    ScoreRequest,
    ScoreResponse,
)
from serving.scorer import RequestError, ScoreBatch, Scorer, StartupError

log = logging.getLogger(__name__)
ENV_CONFIG = "REBUY_CONFIG"
ENV_DATA_DIR = "REBUY_DATA_DIR"
# Requests after start-up before the heap is frozen a second time (lazy imports, first-request caches).
REFREEZE_AFTER = 200
MAX_BODY_BYTES = 8 * 1024 * 1024


def config_from_env() -> Config:
    from pathlib import Path

    path = os.environ.get(ENV_CONFIG) or None
    data_dir = os.environ.get(ENV_DATA_DIR) or None
    return load_config(Path(path) if path else None, data_dir=Path(data_dir) if data_dir else None)


def registry_scorer(cfg: Config) -> Scorer:
    """The production factory: the registry's @champion models and their FeatureServices' online readers."""
    from serving.champions import scorer_from_registry

    return scorer_from_registry(cfg)


def registry_versions(cfg: Config) -> dict[str, str]:
    """Where @champion points now in the registry (what the watcher compares with the served versions)."""
    from serving.champions import champion_versions

    return champion_versions(cfg)


def freeze_heap() -> None:
    """Move everything alive now out of the collector's reach, and make young collections rarer.

    Frozen objects are still freed by reference counting; only the cycle detector skips them, so
    gen-2 passes no longer walk BentoML's and LightGBM's long-lived heap on the request path.
    REBUY_GC_FREEZE=0 turns this off (the serving benchmark uses it to show the stalls it removes).
    """
    if os.environ.get("REBUY_GC_FREEZE", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


def json_response(batch: ScoreBatch) -> Response:
    body = json.dumps({"results": batch.records()}, allow_nan=False, separators=(",", ":"))
    return Response(body, media_type="application/json")


def _utc(ts: datetime | None) -> pd.Timestamp:
    if ts is None:
        return pd.Timestamp.now(tz="UTC")
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


class GcWatch:
    """Counts the cyclic collector's passes per generation and their pause times (for /metrics).

    This is how the benchmark shows the stalls are gone: gen-2 passes over the big heap are the
    50-350 ms pauses; after the freeze they become rare and short.
    """

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.total = [0.0, 0.0, 0.0]
        self.max = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = info.get("generation", 0)
        dt = time.perf_counter() - self._t0
        self.count[g] += 1
        self.total[g] += dt
        self.max[g] = max(self.max[g], dt)

    def reset(self) -> None:
        """Forget the passes so far (called after our own deliberate full collection in freeze_heap)."""
        self.count, self.total, self.max = [0, 0, 0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]

    def families(self) -> list[Metric]:
        def family(
            kind: type[CounterMetricFamily | GaugeMetricFamily], name: str, doc: str, values: list
        ) -> Metric:
            f = kind(name, doc, labels=["generation"])
            for g in range(3):
                f.add_metric([str(g)], values[g])
            return f

        return [
            family(
                CounterMetricFamily,
                "rebuy_gc_collections",
                "Cyclic GC passes in this worker, by generation.",
                self.count,
            ),
            family(
                CounterMetricFamily,
                "rebuy_gc_pause_seconds",
                "Time spent in cyclic GC passes, by generation.",
                self.total,
            ),
            family(
                GaugeMetricFamily,
                "rebuy_gc_pause_seconds_max",
                "Longest cyclic GC pass, by generation.",
                self.max,
            ),
        ]


# --- the request guard: auth, media type, body size, one error model, one log line per rejection ------------

# Scoring and metrics need the API key when one is configured (the secret `api_key`); /admin/reload has its
# own token; health probes and the OpenAPI page stay open.
KEYED_PATHS = frozenset({"/score", "/score_features", "/metrics"})
# Every status the service answers with besides 200, per route (what /docs.json declares).
ERROR_STATUSES = {
    "post": (400, 401, 404, 413, 415, 500, 503),
    "/metrics": (401, 500),
    "probe": (500, 503),
}
_HTTP_LOG = "bentoml._internal.server.http_app"


def _in_container() -> bool:
    """In the Bento's container: BentoML's Dockerfile sets BENTOML_CONTAINERIZED=true. (Not /.dockerenv:
    a development container is still a machine where loopback is the right default.)"""
    return os.environ.get("BENTOML_CONTAINERIZED", "").lower() == "true"


def bind_host() -> str:
    """Loopback outside a container; all interfaces inside one (a mapped port needs it), where the service
    refuses to start without an API key (`check_exposure`)."""
    return "0.0.0.0" if _in_container() else "127.0.0.1"


def check_exposure(api_key: str | None) -> None:
    if _in_container() and not api_key:
        raise StartupError(
            "refusing to start: inside a container the service listens on all interfaces, so /score, "
            "/score_features and /metrics need an API key: set REBUY_API_KEY (or REBUY_API_KEY_FILE)"
        )


def api_key_of(cfg: Config) -> str | None:
    from rebuy.secrets import secret

    key = secret(cfg, "api_key")
    return key.get_secret_value() if key is not None and key.get_secret_value() else None


def admin_token_of(cfg: Config) -> str | None:
    from rebuy.secrets import secret

    tok = secret(cfg, "admin_token")
    return tok.get_secret_value() if tok is not None and tok.get_secret_value() else None


def bearer(headers: Any, extra: str) -> str:
    """The credential of a request: `Authorization: Bearer …` or the route's own header."""
    return headers.get(extra) or headers.get("authorization", "").removeprefix("Bearer ").strip()


def same_secret(given: str, expected: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(given.encode(), str(expected).encode())


def error_body(status: int, raw: bytes) -> dict[str, Any]:
    """Any error answer (BentoML's dict, its one-element list, Starlette's plain text) as ErrorResponse."""
    if status >= 500:
        return {"error": "internal error; the server log has the details", "detail": []}
    try:
        got: Any = json.loads(raw or b"null")
    except ValueError:
        got = raw.decode("utf-8", "replace").strip()
    if isinstance(got, list) and len(got) == 1:
        got = got[0]
    detail: list[dict[str, Any]] = []
    if isinstance(got, dict):
        items = got.get("detail")
        if isinstance(items, list):
            for d in items:
                if isinstance(d, dict):
                    loc = [x if isinstance(x, int) else str(x) for x in d.get("loc", [])]
                    detail.append({"loc": loc, "msg": str(d.get("msg", ""))})
        message = str(got.get("error") or "")
    else:
        message = str(got or "")
    if detail:
        message = "invalid request: " + "; ".join(
            f"{'.'.join(map(str, d['loc'])) or 'body'}: {d['msg']}" for d in detail[:10]
        )
    if status == 401 and message in ("", "Authorization error"):
        message = "credentials missing or wrong"
    return {"error": message or HTTPStatus(status).phrase, "detail": detail}


class RejectLog:
    """One WARNING line per rejected request (method, path, status, error kinds; never ids or values),
    at most `burst` lines per `period` seconds; the next line says how many were left out."""

    def __init__(self, burst: int = 20, period: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.burst, self.period, self.clock = burst, period, clock
        self._start, self._lines, self._dropped = -float("inf"), 0, 0
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, status: int, kinds: list[str]) -> bool:
        with self._lock:
            now = self.clock()
            if now - self._start >= self.period:
                self._start, self._lines = now, 0
            if self._lines >= self.burst:
                self._dropped += 1
                return False
            self._lines += 1
            dropped, self._dropped = self._dropped, 0
        what = f" ({', '.join(sorted(set(kinds))[:5])})" if kinds else ""
        more = f" [{dropped} more rejected requests not logged]" if dropped else ""
        log.warning("rejected %s %s: %d %s%s%s", method, path, status, HTTPStatus(status).phrase, what, more)
        return True


class _QuietRejections(logging.Filter):
    """Drop BentoML's ERROR traceback for requests it rejects with a 4xx (the guard logs one line instead);
    unexpected exceptions (5xx) keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            return False
        if isinstance(exc, BentoMLException):
            return int(exc.error_code) >= 500
        return True


def quiet_rejections() -> None:
    logger = logging.getLogger(_HTTP_LOG)
    if not any(isinstance(f, _QuietRejections) for f in logger.filters):
        logger.addFilter(_QuietRejections())


# What this worker serves, for /docs.json: the static schema narrowed to the configured batch size, offer
# catalogue and feature names, so a request the schema allows is a request the service accepts.
_SERVED: dict[str, Any] = {}


def public_openapi(spec: dict[str, Any], served: dict[str, Any] | None = None) -> dict[str, Any]:
    """BentoML's OpenAPI document with ErrorResponse declared for every status each route answers with,
    and (when known) the served limits: max batch, offer catalogue, feature names."""
    import copy

    from serving.schemas import ErrorResponse

    spec = copy.deepcopy(spec)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    err = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(err.pop("$defs", {}))
    schemas["ErrorResponse"] = err
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    ref = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            kind = "post" if method == "post" else path if path in ERROR_STATUSES else "probe"
            responses = {str(k): v for k, v in op.get("responses", {}).items() if str(k).startswith("2")}
            for status in ERROR_STATUSES[kind]:
                responses[str(status)] = {"description": HTTPStatus(status).phrase, **ref}
            op["responses"] = responses
            if "requestBody" in op:
                op["requestBody"]["required"] = True  # an absent body is a 400 (missing fields)
    served = _SERVED if served is None else served
    if served:
        _narrow(spec, served)
    return spec


def _narrow(spec: dict[str, Any], served: dict[str, Any]) -> None:
    comps = spec["components"]["schemas"]

    def bodies(path: str) -> list[dict[str, Any]]:
        """The request schema inline in the operation and its copy under components (both are served)."""
        op = spec["paths"].get(path, {}).get("post", {})
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        if "$ref" in schema:
            schema = comps.get(schema["$ref"].rsplit("/", 1)[1], {})
        out = [schema]
        if schema.get("title") in comps and comps[schema["title"]] is not schema:
            out.append(comps[schema["title"]])
        return out

    for path, field in (("/score", "customer_ids"), ("/score_features", "rows")):
        for b in bodies(path):
            props = b.get("properties", {})
            prop = props.get(field)
            if prop is not None:
                prop["maxItems"] = min(int(prop.get("maxItems", served["max_batch"])), served["max_batch"])
            offers = props.get("offers")
            if offers is not None:
                for alt in offers.get("anyOf", [offers]):
                    if alt.get("type") == "array":
                        alt["items"] = {"type": "string", "enum": list(served["catalogue"])}
    row = spec["components"]["schemas"].get("FeatureRow", {}).get("properties", {}).get("features")
    if row is not None and served.get("features"):
        value = row.get("additionalProperties") or {"type": "number", "nullable": True}
        row.pop("additionalProperties", None)
        row["properties"] = {f: copy_of(value) for f in served["features"]}
        row["additionalProperties"] = False


def copy_of(x: Any) -> Any:
    return json.loads(json.dumps(x))


class RequestGuard:
    """ASGI middleware in front of every route.

    - 401 for /score, /score_features, /metrics without the API key, when one is configured;
    - 415 for a POST body that is not JSON (BentoML would otherwise pick a deserializer from the
      Content-Type header, pickle among them); 413 for a body over MAX_BODY_BYTES, counted as it streams,
      so a chunked body (no Content-Length) is cut off at the limit instead of being read into memory;
    - every non-2xx answer rewritten to the one ErrorResponse, and logged as one rate-limited WARNING line;
    - /docs.json declares those answers (`public_openapi`).
    """

    reject_log = RejectLog()

    def __init__(self, app: Any) -> None:
        self.app = app
        self._key: tuple[str | None] | None = None

    def api_key(self) -> str | None:
        if self._key is None:
            self._key = (api_key_of(config_from_env()),)
        return self._key[0]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        if path == "/docs.json" and method == "GET":
            await self._docs(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        key = self.api_key()
        if key and path in KEYED_PATHS and not same_secret(bearer(headers, "x-api-key"), key):
            await self._answer(
                send, method, path, 401, "API key missing or wrong (Authorization: Bearer KEY)"
            )
            return
        if method == "POST":
            ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if ctype != "application/json":
                await self._answer(
                    send, method, path, 415, f"Content-Type {ctype!r} is not accepted; send application/json"
                )
                return
            declared = headers.get("content-length", "0") or "0"
            if not declared.isdigit():
                await self._answer(send, method, path, 400, "Content-Length is not a number")
                return
            too_big = f"request body larger than {MAX_BODY_BYTES} bytes; send smaller batches"
            if int(declared) > MAX_BODY_BYTES:
                await self._answer(send, method, path, 413, too_big)
                return
            body, over = await read_body(receive, MAX_BODY_BYTES)
            if over:
                await self._answer(send, method, path, 413, too_big)
                return
            receive = replay(body, receive)
        await self.app(scope, receive, self._errors(send, method, path))

    async def _answer(self, send: Any, method: str, path: str, status: int, message: str) -> None:
        self.reject_log(method, path, status, [])
        await _send_json(send, status, {"error": message, "detail": []})

    def _errors(self, send: Any, method: str, path: str) -> Any:
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def wrapped(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held["start"] = message
                return
            if message["type"] == "http.response.body" and "start" in held:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                status = int(held["start"]["status"])
                doc = error_body(status, b"".join(chunks))
                if status < 500:
                    self.reject_log(method, path, status, [_kind(d) for d in doc["detail"]])
                keep = [
                    (k, v)
                    for k, v in held["start"].get("headers", [])
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                await _send_json(send, status, doc, keep)
                return
            await send(message)

        return wrapped

    async def _docs(self, scope: Any, receive: Any, send: Any) -> None:
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def grab(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, grab)
        if start.get("status") != 200:
            await _send_json(send, 500, error_body(500, b""))
            return
        await _send_json(send, 200, public_openapi(json.loads(b"".join(chunks))))


def _kind(d: dict[str, Any]) -> str:
    """A field error's kind without its value: the field's name only when it is one of ours."""
    loc = [x for x in d["loc"] if isinstance(x, str)]
    known = {"customer_ids", "offers", "as_of", "rows", "features", "customer_id"}
    return next((x for x in reversed(loc) if x in known), "body")


async def _send_json(
    send: Any, status: int, doc: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(doc, separators=(",", ":")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers or []),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Any, limit: int) -> tuple[bytes, bool]:
    """The whole request body, or (what was read, True) as soon as it passes `limit` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        parts.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(parts), False


def replay(body: bytes, receive: Any) -> Any:
    """A `receive` that hands the already-read body to the app once, then waits on the real one."""
    done = False

    async def again() -> Any:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


JsonOnly = RequestGuard  # the name tests/support used before the guard did more than refuse non-JSON


def service_options() -> dict[str, Any]:
    """RebuyService's `bentoml.service` options, fresh each call (a test subclass is decorated with the same)."""
    return {
        "name": "rebuy",
        "workers": 1,
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": False}},
        # `bentoml serve` binds this unless --host says otherwise: loopback outside a container
        "http": {"host": bind_host()},
        # No tracing exporter is configured, yet BentoML's OpenTelemetry middleware still builds four spans
        # per request (~10-15% of a scoring request's CPU); the scoring routes skip it. To trace them,
        # configure an exporter and drop this entry.
        "tracing": {"excluded_urls": ["/score", "/score_features"]},
    }


@bentoml.service(**service_options())
class RebuyService:
    """Scores customers for the orchestrator; see serving.schemas for the contract."""

    def __init__(self) -> None:
        from rebuy.timeutil import telemetry_off

        telemetry_off()
        self.cfg = config_from_env()
        self.api_key = api_key_of(self.cfg)
        check_exposure(self.api_key)
        self.admin_token = admin_token_of(self.cfg)
        quiet_rejections()
        # A missing registry or store raises here: the worker does not start (no server failing every call).
        self.scorer: Scorer = self.build_scorer(self.cfg)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        from serving.prediction_log import open_log

        self.pred_log = open_log(self.cfg)  # Parquet files, or a table with [stores] prediction_log
        self.gc_watch = GcWatch()
        gc.callbacks.append(self.gc_watch)
        self._requests = 0
        self._customers = 0
        self._cold = 0
        self._reloads = 0
        self._bind_apis()
        self._warm_up()
        _SERVED.update(
            max_batch=self.cfg.serving.max_batch,
            catalogue=self.scorer.catalogue,
            features=self.scorer.feature_names,
        )

    # The injection point. A subclass may override these two (tests/support/synthetic_service.py does, from
    # outside the shipped packages); nothing read at run time can, so production serves the registry only.
    watch_champions: bool = True  # False: no watcher thread (only /admin/reload reloads)

    @staticmethod
    def build_scorer(cfg: Config) -> Scorer:
        """The Scorer to serve: the registry's @champion models (also what /admin/reload rebuilds)."""
        return registry_scorer(cfg)

    @staticmethod
    def champion_versions(cfg: Config) -> dict[str, str]:
        """Where @champion points now; the watcher reloads when it differs from the served versions."""
        return registry_versions(cfg)

    def _bind_apis(self) -> None:
        """Bind the scoring endpoints once instead of on every request.

        BentoML looks the endpoint up on the instance per request (`getattr(instance, name).local`), and its
        API descriptor then rebuilds the method's `inspect.signature` each time (~5% of a one-customer
        request). The descriptor has no __set__, so the bound method kept on the instance is what it finds.
        """
        for name in ("score", "score_features"):
            api = getattr(type(self), name, None)
            if api is not None and hasattr(api, "__get__") and not hasattr(api, "__set__"):
                self.__dict__[name] = api.__get__(self, type(self))

    def _warm_up(self) -> None:
        """Exercise every code path once (lazy imports, LightGBM buffers) before freezing the heap."""
        s = self.scorer
        for _ in range(3):
            json_response(s.score_ids(["__warmup__"], pd.Timestamp.now(tz="UTC")))
            json_response(s.score_rows([{}], offers=None))

    @bentoml.on_startup
    def _freeze(self) -> None:
        freeze_heap()
        self.gc_watch.reset()
        self.pred_log.start()
        self._start_champion_watch()

    def _start_champion_watch(self) -> None:
        """Poll where @champion points and reload when it moves (see the module docstring).

        Every REBUY_RELOAD_POLL_SECONDS (default 30; 0 = off, then only /admin/reload reloads).
        """
        every = float(os.environ.get("REBUY_RELOAD_POLL_SECONDS", "30"))
        versions = self.champion_versions
        if every <= 0 or not self.watch_champions:
            return

        def watch() -> None:
            while not self._stop.wait(every):
                self.poll_champions(versions)

        threading.Thread(target=watch, name="rebuy-champion-watch", daemon=True).start()

    def poll_champions(self, versions: Callable[[Config], dict[str, str]]) -> bool:
        """One watcher step: reload when the champions differ from what is served; True if it reloaded.

        A flaky registry must not kill the watcher: the error is logged and the old models keep serving.
        """
        try:
            if versions(self.cfg) != self.scorer.model_versions:
                return self._reload()
        except Exception:
            log.exception("champion watch: reload failed; still serving %s", self.scorer.model_versions)
        return False

    @bentoml.on_shutdown
    def _stop_watch(self) -> None:
        self._stop.set()
        self.pred_log.stop()
        if self.gc_watch in gc.callbacks:
            gc.callbacks.remove(self.gc_watch)

    def _count(
        self,
        scorer: Scorer,
        batch: ScoreBatch,
        received_at: pd.Timestamp,
        as_of: pd.Timestamp | None = None,
    ) -> None:
        # drift dates rows by `as_of` only when the caller holds the API key (the demo and the simulated
        # loop do); anyone else's as_of is kept but the row is dated when the server received it
        trusted = as_of if (as_of is not None and self.api_key) else None
        self.pred_log.add(
            scorer, batch, dict(batch.matrices), trusted or received_at, received_at=received_at, as_of=as_of
        )
        self._requests += 1
        self._customers += len(batch)
        self._cold += int(batch.cold_start.sum())
        if self._requests == REFREEZE_AFTER:
            freeze_heap()
            self.gc_watch.reset()

    def _check_batch(self, field: str, n: int) -> None:
        if n > self.cfg.serving.max_batch:
            raise InvalidArgument(
                f"{field}: {n} items, more than serving.max_batch={self.cfg.serving.max_batch}"
            )

    @bentoml.api(route="/score", input_spec=ScoreRequest, output_spec=ScoreResponse)
    async def score(
        self, customer_ids: list[str], offers: list[str] | None = None, as_of: datetime | None = None
    ) -> Response:
        """Scores, offer estimates and reasons for customers by id (features from the online store)."""
        self._check_batch("customer_ids", len(customer_ids))
        scorer = self.scorer  # one snapshot per request: a concurrent reload cannot mix versions
        received_at = pd.Timestamp.now(tz="UTC")
        now = _utc(as_of) if as_of is not None else received_at
        try:
            batch = scorer.score_ids(customer_ids, now, offers)
        except RequestError as exc:
            raise InvalidArgument(str(exc)) from exc
        self._count(scorer, batch, received_at, now if as_of is not None else None)
        return json_response(batch)

    @bentoml.api(route="/score_features", input_spec=ScoreFeaturesRequest, output_spec=ScoreResponse)
    async def score_features(self, rows: list[FeatureRow], offers: list[str] | None = None) -> Response:
        """The same scores for feature rows given by the caller (no store read; freshness is null)."""
        self._check_batch("rows", len(rows))
        scorer = self.scorer
        try:
            batch = scorer.score_rows([r.features for r in rows], [r.customer_id for r in rows], offers)
        except RequestError as exc:
            raise InvalidArgument(str(exc)) from exc
        self._count(scorer, batch, pd.Timestamp.now(tz="UTC"))
        return json_response(batch)

    @bentoml.api(route="/admin/reload")
    async def admin_reload(self, ctx: bentoml.Context) -> ReloadResponse:
        """Load the current @champion versions and swap them in; in-flight requests finish on the old set.

        Requires `Authorization: Bearer <admin token>` (or `X-Admin-Token`), the secret `admin_token`
        (REBUY_ADMIN_TOKEN, …); 401 otherwise, and always 401 when no token is configured.
        """
        if not same_secret(bearer(ctx.request.headers, "x-admin-token"), self.admin_token):
            raise BentoMLException("admin token missing or wrong", error_code=HTTPStatus.UNAUTHORIZED)
        import anyio.to_thread

        reloaded = await anyio.to_thread.run_sync(self._reload)
        return ReloadResponse(reloaded=reloaded, model_versions=self.scorer.model_versions)

    def _reload(self) -> bool:
        with self._reload_lock:
            new = self.build_scorer(self.cfg)
            json_response(new.score_ids(["__warmup__"], pd.Timestamp.now(tz="UTC")))
            changed = new.model_versions != self.scorer.model_versions
            self.scorer = new  # atomic reference swap
            self._reloads += int(changed)
        freeze_heap()
        self.gc_watch.reset()
        return changed

    def __is_ready__(self) -> bool:
        """Ready once every model and every feature reader is loaded (construction guarantees both)."""
        s = getattr(self, "scorer", None)
        return s is not None and all(getattr(r, "ready", lambda: True)() for r in s.readers.values())

    def collect(self) -> Iterator[Metric]:
        """This worker's own metrics, read at scrape time (the request path only bumps plain counters)."""
        yield CounterMetricFamily("rebuy_requests", "Scoring requests served by this worker.", self._requests)
        yield CounterMetricFamily(
            "rebuy_customers_scored", "Customers scored by this worker.", self._customers
        )
        yield CounterMetricFamily("rebuy_cold_start", "Customers scored on cold-start defaults.", self._cold)
        yield CounterMetricFamily(
            "rebuy_model_reloads", "Reloads that changed a model version.", self._reloads
        )
        info = GaugeMetricFamily(
            "rebuy_model_info", "Model versions currently serving (value 1).", labels=["model", "version"]
        )
        for name, version in self.scorer.model_versions.items():
            info.add_metric([name, str(version)], 1)
        yield info
        yield from self.gc_watch.families()
        yield GaugeMetricFamily(
            "rebuy_gc_frozen_objects", "Objects moved out of the cyclic GC's reach.", gc.get_freeze_count()
        )

    def __metrics__(self, content: str) -> str:
        """BentoML's metrics text plus ours, rendered by prometheus-client from `collect`."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(cast("Collector", self))
        return content + generate_latest(registry).decode()


def bento_service() -> bentoml.Service[Any]:
    """RebuyService as the `bentoml.Service` the decorator made of it (mypy does not apply class decorators)."""
    return cast("bentoml.Service[Any]", RebuyService)


bento_service().add_asgi_middleware(RequestGuard)

__all__ = [
    "ErrorResponse",
    "RebuyService",
    "RequestGuard",
    "bento_service",
    "config_from_env",
    "freeze_heap",
    "public_openapi",
    "registry_scorer",
    "registry_versions",
]
