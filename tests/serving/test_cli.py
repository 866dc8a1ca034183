"""`rebuy serve` guards and the Bento build file (checked, not built: no network here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebuy.config import Config, ServingConfig
from rebuy.errors import RebuyError
from serving.server import serve, serve_env

ROOT = Path(__file__).resolve().parents[2]


def test_serve_refuses_public_host_and_too_many_workers() -> None:
    with pytest.raises(RebuyError, match=r"127\.0\.0\.1"):
        serve(Config(serving=ServingConfig(host="0.0.0.0")), None)
    with pytest.raises(RebuyError, match="workers=3"):
        serve(Config(), None, workers=3)


def test_serve_env_passes_absolute_paths(tmp_path: Path) -> None:
    env = serve_env(Path("rebuy.toml"), Path("data"))
    assert Path(env["REBUY_CONFIG"]).is_absolute() and Path(env["REBUY_DATA_DIR"]).is_absolute()
    assert "REBUY_SCORER_FACTORY" not in env


def test_bentofile_names_the_service_and_its_code() -> None:
    from bentoml._internal.bento.build_config import BentoBuildConfig

    with (ROOT / "serving" / "bentofile.yaml").open() as f:
        build = BentoBuildConfig.from_yaml(f)
    module, _, attr = build.service.partition(":")
    import importlib

    assert getattr(importlib.import_module(module), attr).name == "rebuy"
    assert {"serving/**/*.py", "training/**/*.py", "features/**/*.py", "rebuy/**/*.py"} <= set(
        build.include or []
    )
