"""`rebuy serve`: start the BentoML service on 127.0.0.1 with the REBUY_* environment set.

The scorer is built once in this process before any worker starts, so a missing registry or
online store is one clear error at the prompt instead of workers that crash-loop or a server
that answers every call with a 5xx.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from rebuy.config import Config
from rebuy.errors import RebuyError

MAX_WORKERS = 2  # a 2-core machine: more workers only fight over the cores


def stop_process_group(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    """Stop a server started with `start_new_session=True`: SIGTERM to its whole group, SIGKILL if it lingers
    (BentoML runs workers as children, so killing only the parent would leave them serving)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def serve_env(config_path: Path | None, data_dir: Path) -> dict[str, str]:
    """The variables a worker needs to rebuild the same Config (see serving.service)."""
    from serving.service import ENV_CONFIG, ENV_DATA_DIR

    env = {ENV_DATA_DIR: str(Path(data_dir).resolve())}
    if config_path is not None:
        env[ENV_CONFIG] = str(Path(config_path).resolve())
    return env


def serve(
    cfg: Config,
    config_path: Path | None,
    *,
    workers: int | None = None,
    preflight: bool = True,
    service: Any = None,
) -> None:
    """Run the service until interrupted (blocks).

    `service`: the Bento service to run, `serving.service.RebuyService` unless a test or benchmark passes
    its own subclass in process (tests/support/synthetic_service.py); the command line never does.
    """
    if cfg.serving.host not in ("127.0.0.1", "localhost", "::1"):
        raise RebuyError(
            f"serving.host={cfg.serving.host!r}: rebuy serves on 127.0.0.1 only; put a proxy in front"
        )
    n = workers if workers is not None else cfg.serving.workers
    if not 1 <= n <= MAX_WORKERS:
        raise RebuyError(f"workers={n}: use 1..{MAX_WORKERS} on this machine")
    os.environ.update(serve_env(config_path, cfg.paths.data_dir))
    from serving.service import bento_service

    service = service if service is not None else bento_service()
    if preflight:
        service.inner.build_scorer(cfg)  # raises StartupError with what to run
    service.config["workers"] = n
    service.serve_http(host=cfg.serving.host, port=cfg.serving.port)
