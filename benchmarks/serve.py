"""Serving benchmark: latency and throughput of a real `rebuy serve`, where the time goes, GC stalls, batch rate.

Run on demand (not in tests):
    .venv/bin/python benchmarks/serve.py                      # synthetic champions (serving.synthetic)
    .venv/bin/python benchmarks/serve.py --data-dir DATA      # the real @champions + Feast online store
Options: --seconds (per latency run), --workers 1|2, --quick.

Bars (issue 7, this 2-core machine, load client on the same machine, <= 2 service workers):
/score 1 customer with reasons at concurrency 1: p50 <= 3 ms, p99 <= 8 ms; concurrency 8: >= 400 rps with
0 errors; 100-customer batches: per-customer cost; p99.9 and max reported; breakdown feature read / models /
serialization / framework; the periodic GC stalls gone (the run is repeated with REBUY_GC_FREEZE=0 to show
them); `rebuy score` model part >= 100k customers/s, and end to end including feature retrieval.
Results: printed, and saved to benchmarks/results/serve.json + serve.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

RESULTS = Path(__file__).parent / "results"
console = Console(stderr=True)
NOW = pd.Timestamp("2025-06-30T12:00:00Z")


def pct(ms: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(ms, dtype=float)
    return {
        "n": int(a.size),
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "p99_9_ms": round(float(np.percentile(a, 99.9)), 3),
        "max_ms": round(float(a.max()), 3),
        "over_20ms": int((a > 20).sum()),
        "over_50ms": int((a > 50).sum()),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- in process: where the time goes, and the batch rate ------------------------------------------------------


def load_scorer(data_dir: Path | None) -> Any:
    if data_dir is None:
        from serving.synthetic import synthetic_scorer

        return synthetic_scorer(n_customers=20_000, rounds=100)[0]
    from rebuy.config import load_config
    from serving.champions import scorer_from_registry

    return scorer_from_registry(load_config(None, data_dir=data_dir))


def some_ids(scorer: Any, data_dir: Path | None, n: int) -> list[str]:
    if data_dir is None:
        return [f"c{i:06d}" for i in range(n)]
    from rebuy.config import load_config
    from serving.batch import all_customer_ids

    return all_customer_ids(load_config(None, data_dir=data_dir))[:n]


def breakdown(scorer: Any, ids: list[str], batch: int, reps: int) -> dict[str, float]:
    """Median ms of each stage for one request of `batch` customers, run in this process."""
    from serving.service import json_response

    rng = np.random.default_rng(0)
    read, model, ser = [], [], []
    offers = scorer.eligible(None)
    for _ in range(reps):
        pick = [ids[i] for i in rng.integers(0, len(ids), batch)]
        t0 = time.perf_counter()
        mats, cold, age = scorer.read(pick, NOW)
        t1 = time.perf_counter()
        b = scorer.score_matrices(pick, mats, cold, age, offers)
        t2 = time.perf_counter()
        json_response(b)
        t3 = time.perf_counter()
        read.append(t1 - t0)
        model.append(t2 - t1)
        ser.append(t3 - t2)
    return {
        "feature_read_ms": round(1e3 * float(np.median(read)), 3),
        "models_and_reasons_ms": round(1e3 * float(np.median(model)), 3),
        "serialization_ms": round(1e3 * float(np.median(ser)), 3),
    }


def batch_rate(scorer: Any, ids: list[str], n: int) -> dict[str, float]:
    """`rebuy score`'s path on n customers: the model part alone, with reasons, and end to end."""
    from serving.batch import score_frame

    reps = int(np.ceil(n / len(ids)))
    many = (ids * reps)[:n]
    mats, cold, age = scorer.read(many, NOW)
    offers = scorer.eligible(None)
    t0 = time.perf_counter()
    scorer.score_matrices(many, mats, cold, age, offers, reasons=False)
    t_models = time.perf_counter() - t0
    from concurrent.futures import ThreadPoolExecutor

    half = n // 2
    parts = [
        (many[:half], {k: v[:half] for k, v in mats.items()}, cold[:half], age[:half]),
        (many[half:], {k: v[half:] for k, v in mats.items()}, cold[half:], age[half:]),
    ]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda p: scorer.score_matrices(p[0], p[1], p[2], p[3], offers, reasons=False), parts))
    t_models2 = time.perf_counter() - t0
    sub = many[: min(n, 50_000)]
    m2, c2, a2 = scorer.read(sub, NOW)
    t0 = time.perf_counter()
    scorer.score_matrices(sub, m2, c2, a2, offers, reasons=True)
    t_reasons = time.perf_counter() - t0
    uniq = list(dict.fromkeys(ids))[: min(n, len(set(ids)))]
    t0 = time.perf_counter()
    frame, t_read, _ = score_frame(scorer, uniq, NOW, reasons=False)
    t_e2e = time.perf_counter() - t0
    return {
        "model_part_customers": n,
        "model_part_customers_per_s_1_thread": round(n / t_models),
        "model_part_customers_per_s_2_threads": round(n / t_models2),
        "with_reasons_customers_per_s": round(len(sub) / t_reasons),
        "end_to_end_customers": len(frame),
        "end_to_end_customers_per_s": round(len(frame) / t_e2e),
        "end_to_end_feature_read_share": round(t_read / t_e2e, 3),
    }


# --- a real server ---------------------------------------------------------------------------------------------


class Server:
    """`rebuy serve` in a subprocess on a free port; always killed (process group)."""

    def __init__(self, data_dir: Path | None, workers: int, freeze: bool, tmp: Path) -> None:
        self.port = free_port()
        cfg = tmp / f"rebuy-{self.port}.toml"
        cfg.write_text(
            f"[serving]\nport = {self.port}\nworkers = {workers}\nmax_batch = 1000\n", encoding="utf-8"
        )
        env = {
            **os.environ,
            "REBUY_GC_FREEZE": "1" if freeze else "0",
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(tmp / "bentoml"),
        }
        if data_dir is None:
            env["REBUY_SCORER_FACTORY"] = "serving.synthetic:bench_scorer"
        self.log = (tmp / f"server-{self.port}.log").open("wb")
        args = [sys.executable, "-c", "from rebuy.cli import main; main()", "serve", "--config", str(cfg)]
        if data_dir is not None:
            args += ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(
            args, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log.name}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready in {timeout}s: see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


def gc_metrics(port: int) -> dict[str, float]:
    """The service's own count and pause times of cyclic GC passes (serving.service.GcWatch)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("rebuy_gc_"):
            key, value = line.rsplit(" ", 1)
            out[key.replace('{generation="', "_gen").replace('"}', "")] = float(value)
    return out


def gc_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        "gen2_passes": after.get("rebuy_gc_collections_total_gen2", 0)
        - before.get("rebuy_gc_collections_total_gen2", 0),
        "gen2_pause_ms_total": round(
            1e3
            * (
                after.get("rebuy_gc_pause_seconds_total_gen2", 0)
                - before.get("rebuy_gc_pause_seconds_total_gen2", 0)
            ),
            2,
        ),
        "gc_pause_ms_max_since_freeze": round(
            1e3 * max(after.get(f"rebuy_gc_pause_seconds_max_gen{g}", 0) for g in range(3)), 2
        ),
        "frozen_objects": after.get("rebuy_gc_frozen_objects", 0),
    }


def bodies(ids: list[str], batch: int, n: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [
        json.dumps({"customer_ids": [ids[i] for i in rng.integers(0, len(ids), batch)]}).encode()
        for _ in range(n)
    ]


def run_sequential(
    port: int, payloads: list[bytes], seconds: float, max_requests: int | None = None
) -> tuple[list[float], int, float]:
    """Concurrency 1 on one keep-alive connection -> (latencies ms, errors, elapsed s)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    lat, errors, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds and (max_requests is None or i < max_requests):
        body = payloads[i % len(payloads)]
        i += 1
        t0 = time.perf_counter()
        conn.request("POST", "/score", body=body, headers={"content-type": "application/json"})
        r = conn.getresponse()
        r.read()
        lat.append(1e3 * (time.perf_counter() - t0))
        errors += r.status != 200
    return lat, errors, time.perf_counter() - start


def run_concurrent(port: int, payloads: list[bytes], seconds: float, concurrency: int) -> dict[str, Any]:
    lats: list[list[float]] = [[] for _ in range(concurrency)]
    errs = [0] * concurrency

    def worker(k: int) -> None:
        try:
            lat, e, _ = run_sequential(port, payloads[k::concurrency] or payloads, seconds)
        except OSError:
            lat, e = [], 1
        lats[k], errs[k] = lat, e

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    every = [x for lat in lats for x in lat]
    return {
        "concurrency": concurrency,
        "rps": round(len(every) / elapsed, 1),
        "errors": sum(errs),
        **pct(every),
    }


def serve_runs(
    data_dir: Path | None, ids: list[str], workers: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    one = bodies(ids, 1, 5000, 1)
    hundred = bodies(ids, 100, 300, 2)
    for freeze in (False, True):
        label = "gc_frozen" if freeze else "gc_default"
        console.print(f"[bold]server ({label}, {workers} worker(s))[/] starting")
        srv = Server(data_dir, workers, freeze, tmp)
        try:
            srv.wait_ready()
            run_sequential(srv.port, one[:300], 60.0, max_requests=300)  # warm-up, past the re-freeze point
            before = gc_metrics(srv.port)
            lat, err, _ = run_sequential(srv.port, one, seconds)
            out[f"single_c1_{label}"] = {
                **pct(lat),
                "errors": err,
                "gc": gc_delta(before, gc_metrics(srv.port)),
            }
            console.print(f"  c=1 single: {out[f'single_c1_{label}']}")
            if freeze:
                out["single_c8"] = run_concurrent(srv.port, one, seconds, 8)
                console.print(f"  c=8 single: {out['single_c8']}")
                lat, err, _ = run_sequential(srv.port, hundred, seconds)
                p = pct(lat)
                out["batch100_c1"] = {**p, "errors": err, "per_customer_ms": round(p["p50_ms"] / 100, 4)}
                console.print(f"  c=1 batch 100: {out['batch100_c1']}")
        finally:
            srv.stop()
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# serving benchmark",
        "",
        f"Machine: {res['machine']}. Service workers: {res['workers']} "
        f"(load client on the same machine). Models: {res['models']}. Load average at start: {res['load']}.",
        "",
        "| run | p50 ms | p99 ms | p99.9 ms | max ms | >50 ms | rps | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key in ("single_c1_gc_default", "single_c1_gc_frozen", "single_c8", "batch100_c1"):
        r = res["server"].get(key)
        if r:
            lines.append(
                f"| {key} | {r['p50_ms']} | {r['p99_ms']} | {r['p99_9_ms']} | {r['max_ms']} | "
                f"{r['over_50ms']} | {r.get('rps', '')} | {r['errors']} |"
            )
    b1, b100 = res["breakdown_1"], res["breakdown_100"]
    p50 = res["server"].get("single_c1_gc_frozen", {}).get("p50_ms")
    lines += [
        "",
        "Where the time goes (median ms, in process; framework = served p50 - the rest):",
        "",
        "| batch | feature read | models + reasons | serialization | framework + client |",
        "|---|---|---|---|---|",
        f"| 1 | {b1['feature_read_ms']} | {b1['models_and_reasons_ms']} | {b1['serialization_ms']} | "
        f"{res.get('framework_ms_1', '')} |",
        f"| 100 | {b100['feature_read_ms']} | {b100['models_and_reasons_ms']} | {b100['serialization_ms']} | "
        f"{res.get('framework_ms_100', '')} |",
        "",
        "Batch scoring (`rebuy score` path):",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in res["batch"].items()]
    lines += [
        "",
        "Cyclic GC inside the service during the c=1 run (GcWatch, /metrics):",
        "",
        "| run | gen-2 passes | gen-2 pause total ms | longest GC pause (any gen) ms | frozen objects |",
        "|---|---|---|---|---|",
    ]
    for key in ("single_c1_gc_default", "single_c1_gc_frozen"):
        g = res["server"].get(key, {}).get("gc")
        if g:
            lines.append(
                f"| {key} | {g['gen2_passes']:.0f} | {g['gen2_pause_ms_total']} | "
                f"{g['gc_pause_ms_max_since_freeze']} | {g['frozen_objects']:.0f} |"
            )
    lines += [
        "",
        f"Bars: c=1 p50 <= 3 ms (got {p50}), p99 <= 8 ms; c=8 >= 400 rps with 0 errors; "
        "model part >= 100k customers/s.",
        "",
    ]
    if res.get("note"):
        lines += [res["note"], ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=1, choices=[1, 2])
    ap.add_argument("--batch-customers", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test of the benchmark itself)")
    ap.add_argument("--name", default="serve")
    args = ap.parse_args()
    from rebuy.timeutil import telemetry_off

    telemetry_off()
    if args.quick:
        args.seconds, args.batch_customers = 3.0, 20_000
    res: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "workers": args.workers,
        "models": "real @champions + Feast online store"
        if args.data_dir
        else "synthetic (serving.synthetic: 4 boosters x 100 trees + 3 offer boosters, in-memory features)",
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    console.print("[bold]in-process breakdown and batch rate[/]")
    scorer = load_scorer(args.data_dir)
    ids = some_ids(scorer, args.data_dir, 20_000)
    res["breakdown_1"] = breakdown(scorer, ids, 1, 2000)
    res["breakdown_100"] = breakdown(scorer, ids, 100, 200)
    console.print(res["breakdown_1"], res["breakdown_100"])
    res["batch"] = batch_rate(scorer, ids, args.batch_customers)
    console.print(res["batch"])
    with tempfile.TemporaryDirectory() as tmp:
        res["server"] = serve_runs(args.data_dir, ids, args.workers, args.seconds, Path(tmp))
    for b, key in ((1, "single_c1_gc_frozen"), (100, "batch100_c1")):
        inner = sum(res[f"breakdown_{b}"].values())
        if key in res["server"]:
            res[f"framework_ms_{b}"] = round(res["server"][key]["p50_ms"] - inner, 3)
    if args.data_dir is None:
        res["note"] = (
            "Synthetic features are read from memory; the Feast SQLite online read adds about "
            "0.24 ms p50 per FeatureService for one customer (benchmarks/results/features-quick.md)."
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(res, indent=2), encoding="utf-8")
    md = markdown(res)
    (RESULTS / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
