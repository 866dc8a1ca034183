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
    FeatureRow,
    ReloadResponse,
    ScoreFeaturesRequest,
    ScoreRequest,
    ScoreResponse,
)
from serving.scorer import RequestError, ScoreBatch, Scorer

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


class JsonOnly:
    """Refuse non-JSON POST bodies (pickles included) with 415, and oversize bodies with 413.

    BentoML would otherwise pick a deserializer from the Content-Type header, pickle among them.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            ctype = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
            status, msg = 0, ""
            if ctype != b"application/json":
                status, msg = (
                    415,
                    f"Content-Type {ctype.decode('latin-1')!r} is not accepted; send application/json",
                )
            elif int(headers.get(b"content-length", b"0") or 0) > MAX_BODY_BYTES:
                status, msg = 413, f"request body larger than {MAX_BODY_BYTES} bytes; send smaller batches"
            if status:
                body = json.dumps({"error": msg}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": status,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def service_options() -> dict[str, Any]:
    """RebuyService's `bentoml.service` options, fresh each call (a test subclass is decorated with the same)."""
    return {
        "name": "rebuy",
        "workers": 1,
        "traffic": {"timeout": 60},
        "logging": {"access": {"enabled": False}},
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
        # A missing registry or store raises here: the worker does not start (no server failing every call).
        self.scorer: Scorer = self.build_scorer(self.cfg)
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        from serving.prediction_log import PredictionLog, folder

        self.pred_log = PredictionLog(
            folder(self.cfg), self.cfg.serving.prediction_log_sample, self.cfg.serving.prediction_log_max_rows
        )
        self.gc_watch = GcWatch()
        gc.callbacks.append(self.gc_watch)
        self._requests = 0
        self._customers = 0
        self._cold = 0
        self._reloads = 0
        self._bind_apis()
        self._warm_up()

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

    def _count(self, scorer: Scorer, batch: ScoreBatch, scored_at: pd.Timestamp) -> None:
        self.pred_log.add(scorer, batch, dict(batch.matrices), scored_at)
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
        now = _utc(as_of)
        try:
            batch = scorer.score_ids(customer_ids, now, offers)
        except RequestError as exc:
            raise InvalidArgument(str(exc)) from exc
        self._count(scorer, batch, now)
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

        Requires `Authorization: Bearer <serving.admin_token>` (or `X-Admin-Token`); 401 otherwise,
        and always 401 when no token is configured.
        """
        headers = ctx.request.headers
        given = (
            headers.get("x-admin-token") or headers.get("authorization", "").removeprefix("Bearer ").strip()
        )
        token = self.cfg.serving.admin_token
        if not token or not given or not hmac.compare_digest(given.encode(), token.encode()):
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


bento_service().add_asgi_middleware(JsonOnly)

__all__ = [
    "RebuyService",
    "bento_service",
    "config_from_env",
    "freeze_heap",
    "registry_scorer",
    "registry_versions",
]
