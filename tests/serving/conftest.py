"""The BentoML service over the synthetic scorer, in process (Starlette TestClient over its ASGI app).

One app per test session: BentoML registers its Prometheus metrics in the process-global registry when
an app is built, so a second app in the same process fails. Tests that need another scorer start a
real server (subprocess) instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ADMIN_TOKEN = "test-admin-token"
MAX_BATCH = 50


def write_config(folder: Path) -> Path:
    path = folder / "rebuy.toml"
    path.write_text(f'[serving]\nadmin_token = "{ADMIN_TOKEN}"\nmax_batch = {MAX_BATCH}\n', encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    mp = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("serve")
    prom = folder / "prometheus"
    prom.mkdir()
    mp.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom))  # the real server sets this; /metrics needs it
    mp.setenv("REBUY_CONFIG", str(write_config(folder)))
    mp.setenv("REBUY_DATA_DIR", str(folder / "data"))
    mp.setenv("REBUY_SYNTHETIC_VERSION", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient
    from tests.support.synthetic_service import SyntheticService

    with TestClient(SyntheticService.to_asgi(), raise_server_exceptions=False) as c:
        c.monkeypatch = mp  # type: ignore[attr-defined]
        c.admin_token = ADMIN_TOKEN  # type: ignore[attr-defined]
        c.max_batch = MAX_BATCH  # type: ignore[attr-defined]
        yield c
    mp.undo()


@pytest.fixture
def rebuy_serve(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Starts a real server on the synthetic scorer (tests.support.synthetic_service) in a subprocess on a free 127.0.0.1 port; always killed.

    `start(serving_toml, **env)` writes `[serving]` with the port plus `serving_toml`, and returns the
    process and its base URL; the server's output goes to tmp_path/server.log.
    """
    from serving.server import stop_process_group
    from tests.support.synthetic_service import ROOT, serve_command

    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []

    def start(serving_toml: str = "", **env: str) -> tuple[subprocess.Popen[bytes], str]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        cfg = tmp_path / "rebuy.toml"
        cfg.write_text(f"[serving]\nport = {port}\n{serving_toml}", encoding="utf-8")
        full_env = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "True",
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            **env,
        }
        log = (tmp_path / "server.log").open("wb")
        proc = subprocess.Popen(
            serve_command("--config", str(cfg), "--data-dir", str(tmp_path / "data")),
            cwd=ROOT,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append((proc, log))
        return proc, f"http://127.0.0.1:{port}"

    yield start
    for proc, log in started:
        stop_process_group(proc)
        log.close()
