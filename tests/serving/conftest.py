"""The BentoML service over the synthetic scorer, in process (Starlette TestClient over its ASGI app).

One app per test session: BentoML registers its Prometheus metrics in the process-global registry when
an app is built, so a second app in the same process fails. Tests that need another scorer start a
real server (subprocess) instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

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
    mp.setenv("REBUY_SCORER_FACTORY", "serving.synthetic:scorer_from_config")
    mp.setenv("REBUY_CONFIG", str(write_config(folder)))
    mp.setenv("REBUY_DATA_DIR", str(folder / "data"))
    mp.setenv("REBUY_SYNTHETIC_VERSION", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from starlette.testclient import TestClient
    from serving.service import RebuyService

    with TestClient(RebuyService.to_asgi(), raise_server_exceptions=False) as c:
        c.monkeypatch = mp  # type: ignore[attr-defined]
        c.admin_token = ADMIN_TOKEN  # type: ignore[attr-defined]
        c.max_batch = MAX_BATCH  # type: ignore[attr-defined]
        yield c
    mp.undo()
