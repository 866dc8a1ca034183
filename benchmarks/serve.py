"""Serving benchmark: latency and throughput of a real `rebuy serve`, where the time goes, GC stalls, batch rate.

One command runs the whole benchmark for both kinds of champions, prints every bar as met / NOT met and
saves benchmarks/results/serve.json + serve.md:
    .venv/bin/python benchmarks/serve.py
  1. synthetic champions (tests/support/synthetic.py: 4 boosters x 100 trees + 3 offer boosters, features in memory);
  2. real champions: the @champion models of a data directory built by the real pipeline (simulate 5k
     customers -> past randomized campaign -> import -> features apply/materialize -> train all + offer, as
     `rebuy demo` does before its loop, 2 Optuna trials per model), read from MLflow, with features from
     the Feast SQLite online store (features.online.OnlineStoreReader). The directory is built once into
     --real-dir (default <tmp>/rebuy-serve-bench; ~10 min on a quiet machine) and reused by later runs;
     delete it to rebuild, or pass any pipeline-built data directory with --data-dir.
Options: --variant synthetic|real|both, --seconds (per latency run, default 12), --workers 2 (the throughput
run's workers), --quick (smoke test). About 4 minutes per variant on a quiet 2-core machine (plus the build).

Bars (issue 7, this 2-core machine, load client on the same machine, <= 2 service workers):
/score 1 customer with reasons at concurrency 1: p50 <= 3 ms, p99 <= 8 ms; concurrency 8: >= 400 rps with
0 errors; 100-customer batches: per-customer cost; p99.9 and max reported; breakdown feature read / models /
serialization / framework; the periodic GC stalls gone (the c=1 run is repeated with REBUY_GC_FREEZE=0 to
show them); `rebuy score` model part >= 100k customers/s, and end to end including feature retrieval.

The machine is shared, so beside every wall-clock number the CPU time is recorded: per request in the
server's process tree (from /proc, all its threads and workers), per customer in process, and the load
average at start and end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
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


# --- a data directory built by the real pipeline --------------------------------------------------------------


def build_real_data(data_dir: Path, customers: int = 5_000, trials: int = 2) -> Path:
    """simulate -> past randomized campaign -> import (+ its decisions) -> features apply/materialize -> train
    all + offer, into `data_dir` (what `rebuy demo` does before its closed loop, with a small tuning budget).

    Reused when `data_dir` already holds a registry (delete the folder to rebuild). ~5-10 min for 5k customers
    on a quiet 2-core machine, most of it training.
    """
    from features.jobs import apply_job, materialize_job
    from pipelines.decision_import import import_decisions
    from pipelines.demo import DemoOptions, demo_config_text, free_port, past_campaign, prepare_dir
    from rebuy.config import load_config
    from rebuy.ingest import Sources, import_inputs, validate_inputs
    from rebuy.simulator import ShopSimulator, SimConfig, write_tables
    from training.offer import train_offer
    from training.run import simulator_oracle, train_command

    data_dir = data_dir.resolve()
    done = data_dir / ".serve-bench-built"
    if done.is_file():
        console.print(f"reusing the pipeline-built data directory {data_dir}")
        return data_dir
    opts = DemoOptions(data_dir=data_dir, customers=customers, trials=trials)
    prepare_dir(data_dir, console)
    config_path = data_dir / "rebuy.toml"
    config_path.write_text(demo_config_text(opts, free_port(), "bench-token"), encoding="utf-8")
    cfg = load_config(config_path)
    console.print(f"[bold]building a data directory with the real pipeline[/] in {data_dir}")
    sim = ShopSimulator(SimConfig(customers=opts.customers, months=opts.months, seed=opts.seed))
    tables = sim.run_history()
    tables = past_campaign(sim, tables, cfg, opts, data_dir / "raw" / "past_decisions.parquet")
    raw = write_tables(tables, data_dir / "raw")
    as_of = sim.now
    sources = Sources(
        customers=raw / "customers.parquet",
        orders=raw / "orders.parquet",
        events=raw / "events.parquet",
        consent_updates=raw / "consent_updates.parquet",
    )
    validate_inputs(cfg, sources, as_of)
    import_inputs(cfg, sources, as_of, progress=True)
    import_decisions(cfg, data_dir / "raw" / "past_decisions.parquet", as_of)
    apply_job(cfg)
    materialize_job(cfg, as_of, incremental=False)
    train_command(cfg, "all", as_of, oracle=simulator_oracle(sim), show_progress=True)
    train_offer(cfg, as_of)
    done.write_text(f"as_of={as_of.isoformat()}\n", encoding="utf-8")
    return data_dir


# --- in process: where the time goes, and the batch rate ------------------------------------------------------


def bench_config(data_dir: Path) -> Any:
    """The data directory's own rebuy.toml when it has one (the pipeline wrote it), else the defaults."""
    from rebuy.config import load_config

    toml = data_dir / "rebuy.toml"
    return load_config(toml, data_dir=data_dir) if toml.is_file() else load_config(None, data_dir=data_dir)


def load_scorer(data_dir: Path | None) -> Any:
    if data_dir is None:
        from tests.support.synthetic import synthetic_scorer

        return synthetic_scorer(n_customers=20_000, rounds=100)[0]
    from serving.champions import scorer_from_registry

    return scorer_from_registry(bench_config(data_dir))


def some_ids(scorer: Any, data_dir: Path | None, n: int) -> list[str]:
    if data_dir is None:
        return [f"c{i:06d}" for i in range(n)]
    from serving.batch import all_customer_ids

    return all_customer_ids(bench_config(data_dir))[:n]


def bench_now(data_dir: Path | None) -> pd.Timestamp:
    """The as-of of the data: the simulated shop's last day for a pipeline-built directory."""
    marker = data_dir / ".serve-bench-built" if data_dir is not None else None
    if marker is not None and marker.is_file():
        return pd.Timestamp(marker.read_text(encoding="utf-8").strip().split("=", 1)[1])
    return NOW


def breakdown(
    scorer: Any, ids: list[str], batch: int, reps: int, now: pd.Timestamp = NOW
) -> dict[str, float]:
    """Median wall ms and mean CPU ms of each stage for one request of `batch` customers, in this process."""
    from serving.service import json_response

    rng = np.random.default_rng(0)
    stages = ("feature_read", "models_and_reasons", "serialization")
    wall: dict[str, list[float]] = {k: [] for k in stages}
    cpu: dict[str, list[float]] = {k: [] for k in stages}
    offers = scorer.eligible(None)
    for _ in range(reps):
        pick = [ids[i] for i in rng.integers(0, len(ids), batch)]
        t0, c0 = time.perf_counter(), time.thread_time()
        mats, cold, age = scorer.read(pick, now)
        t1, c1 = time.perf_counter(), time.thread_time()
        b = scorer.score_matrices(pick, mats, cold, age, offers)
        t2, c2 = time.perf_counter(), time.thread_time()
        json_response(b)
        t3, c3 = time.perf_counter(), time.thread_time()
        for k, (a, z, ca, cz) in zip(
            stages, ((t0, t1, c0, c1), (t1, t2, c1, c2), (t2, t3, c2, c3)), strict=True
        ):
            wall[k].append(z - a)
            cpu[k].append(cz - ca)
    out = {f"{k}_ms": round(1e3 * float(np.median(wall[k])), 3) for k in stages}
    out |= {f"{k}_cpu_ms": round(1e3 * float(np.mean(cpu[k])), 3) for k in stages}
    out["total_cpu_ms"] = round(sum(out[f"{k}_cpu_ms"] for k in stages), 3)
    out["cpu_ms_per_customer"] = round(out["total_cpu_ms"] / batch, 4)
    return out


def _timed(fn: Any) -> tuple[float, float]:
    """(wall s, CPU s of the whole process, all threads) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def batch_rate(scorer: Any, ids: list[str], n: int, now: pd.Timestamp = NOW) -> dict[str, float]:
    """`rebuy score`'s path on n customers, in chunks of serving.batch.CHUNK as it scores them: the model part
    alone (1 and 2 threads; after a first chunk that also builds the look-up tables, timed apart), with
    reasons, and end to end from the online store."""
    from concurrent.futures import ThreadPoolExecutor

    from serving.batch import CHUNK, score_frame

    reps = int(np.ceil(n / len(ids)))
    many = (ids * reps)[:n]
    mats, cold, age = scorer.read(many, now)
    offers = scorer.eligible(None)
    parts = [
        (
            many[i : i + CHUNK],
            {k: v[i : i + CHUNK] for k, v in mats.items()},
            cold[i : i + CHUNK],
            age[i : i + CHUNK],
        )
        for i in range(0, n, CHUNK)
    ]

    def score(p: Any) -> None:
        scorer.score_matrices(*p, offers, reasons=False)

    wf, cf = _timed(lambda: score(parts[0]))  # builds serving.treetables' tables (once per process)
    w1, c1 = _timed(lambda: [score(p) for p in parts])

    def two() -> None:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(score, parts))

    w2, c2 = _timed(two)
    sub = many[: min(n, 10_000)]
    m2, cd2, a2 = scorer.read(sub, now)
    wr, cr = _timed(lambda: scorer.score_matrices(sub, m2, cd2, a2, offers, reasons=True))
    uniq = list(dict.fromkeys(ids))
    got: dict[str, Any] = {}

    def e2e(reasons: bool) -> None:
        got["frame"], got["read"], _ = score_frame(scorer, uniq, now, reasons=reasons)

    we, ce = _timed(lambda: e2e(False))
    t_read = got["read"]
    return {
        "model_part_customers": n,
        "first_chunk_with_table_build_s": round(wf, 3),
        "first_chunk_with_table_build_cpu_s": round(cf, 3),
        "model_part_customers_per_s_1_thread": round(n / w1),
        "model_part_customers_per_cpu_s": round(n / c1),
        "model_part_customers_per_s_2_threads": round(n / w2),
        "model_part_2_threads_cpu_s": round(c2, 3),
        "with_reasons_customers": len(sub),
        "with_reasons_customers_per_s": round(len(sub) / wr),
        "with_reasons_customers_per_cpu_s": round(len(sub) / cr),
        "end_to_end_customers": len(got["frame"]),
        "end_to_end_customers_per_s": round(len(got["frame"]) / we),
        "end_to_end_customers_per_cpu_s": round(len(got["frame"]) / ce),
        "end_to_end_feature_read_share": round(t_read / we, 3),
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
        self.log = (tmp / f"server-{self.port}.log").open("wb")
        folder = ["--data-dir", str(data_dir if data_dir is not None else tmp / f"data-{self.port}")]
        if data_dir is None:  # the synthetic champions: test support's BenchService, never the shipped one
            from tests.support.synthetic_service import ROOT, serve_command

            args, cwd = serve_command("--config", str(cfg), *folder, bench=True), ROOT
        else:
            args = [sys.executable, "-c", "from cli.app import main; main()", "serve", "--config", str(cfg)]
            args, cwd = args + folder, None
        self.proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
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

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and every process under it (BentoML's workers run in their
        own sessions, so they are found by parent, not by process group)."""
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        from serving.server import stop_process_group

        stop_process_group(self.proc)
        self.log.close()


def tree_cpu_seconds(root: int) -> float:
    """user + system CPU seconds of `root` and all its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        ticks[int(entry)] = int(fields[11]) + int(fields[12])
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


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


def measured(srv: Server, run: Any, customers_per_request: int = 1) -> dict[str, Any]:
    """Run `run()` -> (latencies ms, errors, elapsed s); add percentiles, rps and the server's CPU per request."""
    c0 = srv.cpu_seconds()
    lat, err, elapsed = run()
    cpu = srv.cpu_seconds() - c0
    n = max(len(lat), 1)
    return {
        **pct(lat),
        "rps": round(len(lat) / elapsed, 1),
        "errors": err,
        "server_cpu_ms_per_request": round(1e3 * cpu / n, 3),
        "server_cpu_ms_per_customer": round(1e3 * cpu / n / customers_per_request, 4),
    }


def run_concurrent_lat(
    port: int, payloads: list[bytes], seconds: float, concurrency: int
) -> tuple[list[float], int, float]:
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
    return [x for lat in lats for x in lat], sum(errs), time.perf_counter() - t0


def serve_runs(
    data_dir: Path | None, ids: list[str], workers: int, seconds: float, tmp: Path
) -> dict[str, Any]:
    """Three servers: 1 worker with the default GC (the stalls), 1 worker frozen (latency, batches),
    `workers` workers frozen (throughput at concurrency 8, and c=1 for comparison)."""
    out: dict[str, Any] = {}
    one = bodies(ids, 1, 5000, 1)
    hundred = bodies(ids, 100, 300, 2)
    plan = [("gc_default", 1, False), ("gc_frozen", 1, True)]
    if workers > 1:
        plan.append((f"workers{workers}", workers, True))
    for label, n_workers, freeze in plan:
        console.print(f"[bold]server ({label}, {n_workers} worker(s))[/] starting")
        srv = Server(data_dir, n_workers, freeze, tmp)
        try:
            srv.wait_ready()
            # warm-up past every worker's re-freeze point (serving.service.REFREEZE_AFTER requests)
            if n_workers == 1:
                run_sequential(srv.port, one[:300], 60.0, max_requests=300)
            else:
                run_concurrent_lat(srv.port, one[:2000], 6.0, 4)
            if n_workers == 1:
                before = gc_metrics(srv.port)
                r = measured(srv, partial(run_sequential, srv.port, one, seconds))
                out[f"single_c1_{label}"] = {**r, "gc": gc_delta(before, gc_metrics(srv.port))}
                console.print(f"  c=1 single: {out[f'single_c1_{label}']}")
            if freeze and n_workers == 1:
                out["single_c8"] = {
                    "concurrency": 8,
                    **measured(srv, partial(run_concurrent_lat, srv.port, one, seconds, 8)),
                }
                console.print(f"  c=8 single: {out['single_c8']}")
                r = measured(srv, partial(run_sequential, srv.port, hundred, seconds), 100)
                out["batch100_c1"] = {**r, "per_customer_ms": round(r["p50_ms"] / 100, 4)}
                console.print(f"  c=1 batch 100: {out['batch100_c1']}")
            if n_workers > 1:
                out[f"single_c8_{label}"] = {
                    "concurrency": 8,
                    "workers": n_workers,
                    **measured(srv, partial(run_concurrent_lat, srv.port, one, seconds, 8)),
                }
                console.print(f"  c=8 single: {out[f'single_c8_{label}']}")
                out[f"single_c1_{label}"] = {
                    "workers": n_workers,
                    **measured(srv, partial(run_sequential, srv.port, one, seconds)),
                }
                console.print(f"  c=1 single: {out[f'single_c1_{label}']}")
        finally:
            srv.stop()
    return out


def markdown(res: dict[str, Any]) -> str:
    srv = res["server"]
    lines = [
        f"# serving benchmark ({res['name']})",
        "",
        f"Machine: {res['machine']}. Load client on the same machine. Models: {res['models']}.",
        f"Load average (1, 5, 15 min) at start: {res['load_start']}; at end: {res['load_end']}. "
        f"Wall time of the whole benchmark: {res['elapsed_s']} s.",
        "",
        "| run | workers | p50 ms | p99 ms | p99.9 ms | max ms | >50 ms | rps | errors | server CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in srv.items():
        if isinstance(r, dict) and "p50_ms" in r:
            lines.append(
                f"| {key} | {r.get('workers', 1)} | {r['p50_ms']} | {r['p99_ms']} | {r['p99_9_ms']} | "
                f"{r['max_ms']} | {r['over_50ms']} | {r['rps']} | {r['errors']} | {r['server_cpu_ms_per_request']} |"
            )
    b1, b100 = res["breakdown_1"], res["breakdown_100"]
    lines += [
        "",
        "Where the time goes for one request, in process (median wall ms / mean CPU ms); framework = served "
        "p50 minus the in-process stages (HTTP, BentoML, validation, client); framework CPU = the server's CPU "
        "per request minus the in-process CPU:",
        "",
        "| customers | feature read | models + reasons | serialization | in-process CPU | CPU per customer "
        "| framework + client (wall) | framework (CPU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, b in ((1, b1), (100, b100)):
        lines.append(
            f"| {n} | {b['feature_read_ms']} / {b['feature_read_cpu_ms']} | {b['models_and_reasons_ms']} / "
            f"{b['models_and_reasons_cpu_ms']} | {b['serialization_ms']} / {b['serialization_cpu_ms']} | "
            f"{b['total_cpu_ms']} | {b['cpu_ms_per_customer']} | {res.get(f'framework_ms_{n}', '')} | "
            f"{res.get(f'framework_cpu_ms_{n}', '')} |"
        )
    lines += ["", "Batch scoring (`rebuy score` path):", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in res["batch"].items()]
    lines += [
        "",
        "Cyclic GC inside the service during the c=1 run (GcWatch, /metrics):",
        "",
        "| run | gen-2 passes | gen-2 pause total ms | longest GC pause (any gen) ms | frozen objects |",
        "|---|---|---|---|---|",
    ]
    for key in ("single_c1_gc_default", "single_c1_gc_frozen"):
        g = srv.get(key, {}).get("gc")
        if g:
            lines.append(
                f"| {key} | {g['gen2_passes']:.0f} | {g['gen2_pause_ms_total']} | "
                f"{g['gc_pause_ms_max_since_freeze']} | {g['frozen_objects']:.0f} |"
            )
    lines += ["", "Bars:", ""]
    lines += [f"- {b}" for b in res["bars"]]
    lines += [""]
    if res.get("note"):
        lines += [res["note"], ""]
    return "\n".join(lines)


def bars(res: dict[str, Any]) -> list[str]:
    """Each bar with what was measured here (met / NOT met), so the table cannot be misread."""
    srv, out = res["server"], []
    c1 = srv.get("single_c1_gc_frozen")
    if c1:
        ok = c1["p50_ms"] <= 3 and c1["p99_ms"] <= 8
        out.append(
            f"/score 1 customer, c=1, 1 worker: p50 {c1['p50_ms']} ms (<= 3), p99 {c1['p99_ms']} ms (<= 8): "
            f"{'met' if ok else 'NOT met'}"
        )
    for key in [k for k in srv if k.startswith("single_c8")]:
        r = srv[key]
        ok = r["rps"] >= 400 and r["errors"] == 0
        out.append(
            f"c=8, {r.get('workers', 1)} worker(s): {r['rps']} rps (>= 400), {r['errors']} errors: "
            f"{'met' if ok else 'NOT met'}"
        )
    b = res["batch"]
    best = max(b["model_part_customers_per_s_1_thread"], b["model_part_customers_per_s_2_threads"])
    out.append(
        f"rebuy score model part: {best} customers/s wall (>= 100k; {b['model_part_customers_per_cpu_s']} per "
        f"CPU-second on one thread): {'met' if best >= 100_000 else 'NOT met'}"
    )
    d, f = srv.get("single_c1_gc_default", {}), srv.get("single_c1_gc_frozen", {})
    if d and f:
        out.append(
            f"GC stalls: >50 ms requests {d['over_50ms']} (GC default) vs {f['over_50ms']} (frozen); max "
            f"{d['max_ms']} vs {f['max_ms']} ms; gen-2 passes {d['gc']['gen2_passes']:.0f} vs "
            f"{f['gc']['gen2_passes']:.0f}"
        )
    return out


def run_variant(data_dir: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    """Everything for one kind of champions: in-process breakdown and batch rate, then the servers."""
    started = time.perf_counter()
    name = "real" if data_dir is not None else "synthetic"
    res: dict[str, Any] = {
        "name": f"{args.name} ({name} champions)",
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "workers": args.workers,
        "models": f"real @champions of {data_dir} (MLflow registry) + Feast SQLite online store"
        if data_dir is not None
        else "synthetic (tests/support/synthetic.py: 4 boosters x 100 trees + 3 offer boosters, in-memory features)",
        "load_start": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }
    console.print(f"[bold]{name}: in-process breakdown and batch rate[/]")
    now = bench_now(data_dir)
    c0 = time.process_time()
    scorer = load_scorer(data_dir)
    res["scorer_load_s"] = round(time.perf_counter() - started, 2)
    res["scorer_load_cpu_s"] = round(time.process_time() - c0, 2)
    ids = some_ids(scorer, data_dir, 20_000)
    res["customers_available"] = len(ids)
    res["breakdown_1"] = breakdown(scorer, ids, 1, 2000, now)
    res["breakdown_100"] = breakdown(scorer, ids, 100, 200, now)
    console.print(res["breakdown_1"], res["breakdown_100"])
    res["batch"] = batch_rate(scorer, ids, args.batch_customers, now)
    console.print(res["batch"])
    del scorer
    with tempfile.TemporaryDirectory() as tmp:
        res["server"] = serve_runs(data_dir, ids, args.workers, args.seconds, Path(tmp))
    for n, key in ((1, "single_c1_gc_frozen"), (100, "batch100_c1")):
        b = res[f"breakdown_{n}"]
        inner = b["feature_read_ms"] + b["models_and_reasons_ms"] + b["serialization_ms"]
        if key in res["server"]:
            res[f"framework_ms_{n}"] = round(res["server"][key]["p50_ms"] - inner, 3)
            res[f"framework_cpu_ms_{n}"] = round(
                res["server"][key]["server_cpu_ms_per_request"] - b["total_cpu_ms"], 3
            )
    res["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    res["bars"] = bars(res)
    if data_dir is None:
        res["note"] = (
            "Synthetic features are read from memory; the real variant below reads the Feast SQLite online "
            "store (features.online.OnlineStoreReader.read_all: one SQL statement for every feature view of "
            "every service)."
        )
    else:
        res["note"] = (
            f"Real champions: {len(ids):,} customers in the online store; the model part repeats them to "
            f"{args.batch_customers:,} rows. Scorer load (MLflow download + boosters): {res['scorer_load_s']} s."
        )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--variant", choices=["synthetic", "real", "both"], default="both")
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="a pipeline-built data directory (real variant)"
    )
    ap.add_argument(
        "--real-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "rebuy-serve-bench",
        help="where the real variant builds (once) its data directory when --data-dir is not given",
    )
    ap.add_argument("--customers", type=int, default=5_000, help="simulated customers of the built directory")
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--workers", type=int, default=2, choices=[1, 2], help="workers of the throughput run")
    ap.add_argument("--batch-customers", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test of the benchmark itself)")
    ap.add_argument("--name", default="serve")
    args = ap.parse_args()
    # run as a script, this folder is first on sys.path and its features.py would shadow the features package
    here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
    sys.path.insert(0, str(here.parent))  # the synthetic champions are test support (tests/support)
    from rebuy.timeutil import telemetry_off

    telemetry_off()
    if args.quick:
        args.seconds, args.batch_customers = 3.0, 40_000
    started = time.perf_counter()
    out: dict[str, Any] = {"load_start": " ".join(f"{x:.1f}" for x in os.getloadavg())}
    if args.variant in ("real", "both"):
        data_dir = args.data_dir
        if data_dir is None:
            t0, c0 = time.perf_counter(), time.process_time()
            data_dir = build_real_data(args.real_dir, customers=args.customers)
            out["real_build"] = {
                "dir": str(data_dir),
                "s": round(time.perf_counter() - t0, 1),
                "cpu_s": round(time.process_time() - c0, 1),
            }
    if args.variant in ("synthetic", "both"):
        out["synthetic"] = run_variant(None, args)
    if args.variant in ("real", "both"):
        out["real"] = run_variant(data_dir, args)
    out["load_end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    md = "\n".join(markdown(out[v]) for v in ("synthetic", "real") if v in out)
    md += "\n## All bars\n\n" + "\n".join(
        f"- {v}: {b}" for v in ("synthetic", "real") if v in out for b in out[v]["bars"]
    )
    md += (
        f"\n\nWhole run: {out['elapsed_s']} s wall; load average {out['load_start']} -> {out['load_end']}.\n"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    (RESULTS / f"{args.name}.md").write_text(md, encoding="utf-8")
    print(md)


if __name__ == "__main__":
    main()
