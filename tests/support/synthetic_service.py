"""The Bento service over synthetic champions, for tests and benchmarks only (never shipped).

`serving.service.RebuyService` serves the registry's @champion models and nothing else; its only injection
point is a subclass overriding `build_scorer` / `champion_versions`, and these subclasses live here, outside
the installed packages, so a deployed service cannot be pointed at them by any setting.

- `SyntheticService`: `synthetic.scorer_from_config` (2,000 customers), watcher on `synthetic.champion_versions`
  (REBUY_SYNTHETIC_VERSION_FILE / REBUY_SYNTHETIC_VERSION say where the synthetic "@champion" points);
- `BenchService`: `synthetic.bench_scorer` (20k customers, 100 trees per booster), no watcher.

A real server on one of them: `python -c "from tests.support.synthetic_service import main; main()" [bench]
--config rebuy.toml --data-dir data`, run from the repository root (BentoML's workers import this module by
its dotted name from the working directory). `serve_command` builds that command line.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import bentoml

from rebuy.config import Config, load_config
from serving.scorer import Scorer
from serving.service import JsonOnly, bento_service, service_options
from tests.support import synthetic

ROOT = Path(__file__).resolve().parents[2]
_Base: Any = bento_service().inner


class _Synthetic(_Base):  # type: ignore[misc]
    @staticmethod
    def build_scorer(cfg: Config) -> Scorer:
        return synthetic.scorer_from_config(cfg)

    @staticmethod
    def champion_versions(cfg: Config) -> dict[str, str]:
        return synthetic.champion_versions(cfg)


class _Bench(_Base):  # type: ignore[misc]
    watch_champions = False

    @staticmethod
    def build_scorer(cfg: Config) -> Scorer:
        return synthetic.bench_scorer(cfg)


SyntheticService = bentoml.service(**service_options())(_Synthetic)
SyntheticService.add_asgi_middleware(JsonOnly)
BenchService = bentoml.service(**service_options())(_Bench)
BenchService.add_asgi_middleware(JsonOnly)


def serve_command(*args: str, bench: bool = False) -> list[str]:
    """argv for a subprocess serving SyntheticService (or BenchService); run it with cwd=ROOT."""
    entry = "from tests.support.synthetic_service import main; main()"
    return [sys.executable, "-c", entry, *(["bench"] if bench else []), *args]


def main(argv: list[str] | None = None) -> None:
    """`[bench] --config PATH --data-dir DIR [--workers N]`: serve until interrupted (like `rebuy serve`)."""
    import argparse

    from serving.server import serve

    args = list(sys.argv[1:] if argv is None else argv)
    bench = bool(args) and args[0] == "bench"
    ap = argparse.ArgumentParser(prog="synthetic_service")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--data-dir", type=Path)
    ap.add_argument("--workers", type=int)
    ns = ap.parse_args(args[1:] if bench else args)
    cfg = load_config(ns.config, data_dir=ns.data_dir)
    serve(cfg, ns.config, workers=ns.workers, service=BenchService if bench else SyntheticService)
