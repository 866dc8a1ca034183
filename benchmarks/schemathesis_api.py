"""Property-based API run: schemathesis cases from the service's own OpenAPI schema; no 5xx allowed.

Run on demand (CI can call it too):  .venv/bin/python benchmarks/schemathesis_api.py [--cases 1000] [--max-seconds 900]
For every POST endpoint it sends >= `--cases` schema-valid cases and as many schema-violating ones
(schemathesis positive + negative generation: wrong types, missing/extra fields, non-JSON bytes) to the
service's ASGI app in process (synthetic scorer), and checks: no 5xx ever; a 2xx body of /score and
/score_features matches ScoreResponse; a 4xx carries a JSON error. Time-bounded: it stops generating at
--max-seconds and reports how many cases ran. Saves benchmarks/results/schemathesis_api.json + .md.
Machine: 2 cores (shared).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def send_case(
    client: Any,
    path: str,
    model: Any,
    mode: str,
    stats: Counter[str],
    failures: list[dict[str, Any]],
    deadline: float,
    case: Any,
) -> None:
    """One generated case through the app; any 5xx, contract-breaking 2xx or non-JSON 4xx is a failure."""
    if time.monotonic() > deadline:
        stats["skipped_time_budget"] += 1
        return
    kw = case.as_transport_kwargs(base_url="http://testserver")
    if path == "/admin/reload" and stats["cases"] % 2:
        kw["headers"] = {**kw.get("headers", {}), "X-Admin-Token": "st-token"}
    if "data" in kw:
        kw["content"] = kw.pop("data")
    kw.pop("cookies", None)
    resp = client.request(**kw)
    stats["cases"] += 1
    stats[f"{mode}_{resp.status_code}"] += 1
    problem = None
    if resp.status_code >= 500:
        problem = "5xx"
    elif resp.status_code < 300:
        try:
            model.model_validate(resp.json())
        except Exception as exc:  # a 200 that breaks the contract is a failure too
            problem = f"2xx body breaks the contract: {exc}"[:300]
    elif not resp.headers.get("content-type", "").startswith("application/json"):
        problem = "4xx without a JSON error"
    if problem:
        failures.append(
            {
                "path": path,
                "mode": mode,
                "status": resp.status_code,
                "problem": problem,
                "request": repr(kw)[:500],
                "response": resp.text[:300],
            }
        )


def hypothesis_run(strategy: Any, send: Any, cases: int) -> None:
    from hypothesis import HealthCheck, Phase, given, settings

    # generation only: no shrinking (a failure is recorded with its request, not minimised) keeps it bounded
    @settings(
        max_examples=cases,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(case: Any) -> None:
        send(case)

    run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--cases",
        type=int,
        default=500,
        help="cases per endpoint and generation mode (positive + negative: 2x per endpoint)",
    )
    ap.add_argument("--max-seconds", type=float, default=900.0)
    ap.add_argument("--name", default="schemathesis_api")
    args = ap.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic service is test support

    from rebuy.timeutil import telemetry_off

    telemetry_off()
    tmp = Path(tempfile.mkdtemp(prefix="rebuy-st-"))
    (tmp / "prom").mkdir()
    (tmp / "rebuy.toml").write_text(
        '[serving]\nadmin_token = "st-token"\nmax_batch = 200\n', encoding="utf-8"
    )
    os.environ.update(
        {
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom"),
            "REBUY_CONFIG": str(tmp / "rebuy.toml"),
            "REBUY_DATA_DIR": str(tmp / "data"),
        }
    )
    import logging

    import schemathesis
    from schemathesis.generation.modes import GenerationMode

    from serving.schemas import ReloadResponse, ScoreResponse
    from tests.support.synthetic_service import SyntheticService as RebuyService

    logging.getLogger("bentoml").setLevel(logging.CRITICAL)  # every 4xx logs a traceback otherwise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient

    schema = schemathesis.openapi.from_dict(RebuyService.openapi_spec.asdict())
    deadline = time.monotonic() + args.max_seconds
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores (shared), {platform.platform()}",
        "cases_per_mode": args.cases,
        "endpoints": {},
    }
    failures: list[dict[str, Any]] = []
    with TestClient(RebuyService.to_asgi(), raise_server_exceptions=False) as client:
        for path, model in (
            ("/score", ScoreResponse),
            ("/score_features", ScoreResponse),
            ("/admin/reload", ReloadResponse),
        ):
            op = schema[path]["POST"]
            stats: Counter[str] = Counter()
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                send = partial(send_case, client, path, model, mode.value, stats, failures, deadline)
                hypothesis_run(op.as_strategy(mode), send, args.cases)
            report["endpoints"][path] = dict(stats)
            print(path, dict(stats), flush=True)
    report["failures"] = failures[:50]
    report["n_failures"] = len(failures)
    report["ok"] = not failures and all(
        v.get("cases", 0) >= 2 * args.cases for v in report["endpoints"].values()
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    lines = [
        "# schemathesis API run",
        "",
        f"Machine: {report['machine']}. In-process ASGI app, synthetic scorer; "
        f"{args.cases} positive + {args.cases} negative cases requested per endpoint (hypothesis may stop "
        "early when an endpoint's input space is exhausted).",
        "",
        "| endpoint | cases | status counts |",
        "|---|---|---|",
    ]
    for path, st in report["endpoints"].items():
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(st.items()) if k != "cases")
        lines.append(f"| {path} | {st.get('cases', 0)} | {counts} |")
    lines += ["", f"5xx or contract failures: {len(failures)}", ""]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    raise SystemExit(0 if not failures else 1)


if __name__ == "__main__":
    main()
