"""[stores] settings and the secrets mechanism (no servers needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rebuy.config import ConfigError, load_config
from rebuy.secrets import SecretError, database_env, require_secret, secret


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ADMIN_TOKEN", "FORGET_KEY", "DATABASE_PASSWORD", "WEBHOOK_SECRET", "REDIS_PASSWORD"):
        monkeypatch.delenv(f"REBUY_{name}", raising=False)
        monkeypatch.delenv(f"REBUY_{name}_FILE", raising=False)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.delenv("PGPASSFILE", raising=False)


def _write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_embedded_defaults(tmp_path: Path) -> None:
    cfg = load_config(data_dir=tmp_path)
    assert cfg.mlflow_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    assert cfg.mlflow_registry_uri == cfg.mlflow_uri
    assert cfg.mlflow_artifact_root == (tmp_path.resolve() / "mlflow" / "artifacts").as_uri()
    assert cfg.optuna_storage_url == f"sqlite:///{tmp_path.resolve() / 'optuna' / 'studies.db'}"
    assert cfg.stores.online_store == "sqlite" and cfg.stores.prediction_log == "parquet"
    assert cfg.feast_project == "rebuy"


def test_shared_settings_load_and_resolve(tmp_path: Path) -> None:
    (tmp_path / "rebuy.toml").write_text(
        "[stores]\n"
        'mlflow_tracking_uri = "postgresql+psycopg://rebuy@db:5432/mlflow"\n'
        'mlflow_artifact_root = "artifacts"\n'
        'decision_log_url = "postgresql+psycopg://rebuy@db:5432/rebuy"\n'
        'optuna_storage = "postgresql+psycopg://rebuy@db:5432/optuna"\n'
        'online_store = "redis://cache:6379/0"\n'
        'prediction_log = "postgresql+psycopg://rebuy@db:5432/rebuy"\n'
        'namespace = "shop1"\n'
        'secrets_dir = "secrets"\n'
    )
    cfg = load_config(tmp_path / "rebuy.toml")
    assert cfg.mlflow_registry_uri == "postgresql+psycopg://rebuy@db:5432/mlflow"
    assert cfg.mlflow_artifact_root == (tmp_path / "artifacts").resolve().as_uri()
    assert cfg.optuna_storage_url.endswith("/optuna")
    assert cfg.feast_project == "rebuy_shop1"
    assert cfg.stores.secrets_dir == (tmp_path / "secrets").resolve()


@pytest.mark.parametrize(
    "line, needle",
    [
        ('decision_log_url = "postgresql://rebuy:hunter2@db/rebuy"', "holds a password"),
        ('online_store = "redis://:hunter2@cache:6379/0"', "holds a password"),
        ('online_store = "memcached://x"', "redis://"),
        ('prediction_log = "postgres"', "SQLAlchemy URL"),
        ('namespace = "Bad-Name"', "namespace"),
    ],
)
def test_bad_store_settings_are_refused(tmp_path: Path, line: str, needle: str) -> None:
    (tmp_path / "rebuy.toml").write_text(f"[stores]\n{line}\n")
    with pytest.raises(ConfigError, match=needle) as err:
        load_config(tmp_path / "rebuy.toml")
    assert "hunter2" not in str(err.value)


def test_secret_from_env_file_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    _write(folder / "forget_key", "from-folder\n", 0o600)
    (tmp_path / "rebuy.toml").write_text('[stores]\nsecrets_dir = "secrets"\n')
    cfg = load_config(tmp_path / "rebuy.toml")
    assert secret(cfg, "admin_token") is None
    got = secret(cfg, "forget_key")
    assert got is not None and got.get_secret_value() == "from-folder"  # one trailing newline stripped
    assert "from-folder" not in repr(got) and "from-folder" not in str(got)
    monkeypatch.setenv("REBUY_FORGET_KEY_FILE", str(_write(tmp_path / "k", "from-file", 0o400)))
    assert require_secret(cfg, "forget_key").get_secret_value() == "from-file"
    monkeypatch.setenv("REBUY_FORGET_KEY", "from-env")
    assert require_secret(cfg, "forget_key").get_secret_value() == "from-env"


def test_readable_secret_files_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path / "token", "s3cret", 0o644)
    monkeypatch.setenv("REBUY_ADMIN_TOKEN_FILE", str(path))
    with pytest.raises(SecretError, match=r"chmod 600") as err:
        secret(None, "admin_token")
    assert "s3cret" not in str(err.value)
    path.chmod(0o640)
    with pytest.raises(SecretError, match="group or others"):
        secret(None, "admin_token")


def test_missing_required_and_unknown_secrets(tmp_path: Path) -> None:
    cfg = load_config(data_dir=tmp_path)
    with pytest.raises(SecretError, match="REBUY_WEBHOOK_SECRET"):
        require_secret(cfg, "webhook_secret")
    with pytest.raises(SecretError, match="unknown secret"):
        secret(cfg, "admin_tokn")


def test_database_password_reaches_libpq_not_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REBUY_DATABASE_PASSWORD", "pw-1")
    cfg = load_config(data_dir=tmp_path)
    assert os.environ["PGPASSWORD"] == "pw-1"
    assert "pw-1" not in cfg.model_dump_json()
    monkeypatch.setenv("PGPASSWORD", "explicit")  # an explicit libpq setting wins
    database_env(cfg)
    assert os.environ["PGPASSWORD"] == "explicit"


def test_study_storage_follows_the_setting(tmp_path: Path) -> None:
    from training.tuning import study_storage

    cfg = load_config(data_dir=tmp_path)
    assert study_storage(cfg) == cfg.optuna_storage_url and (tmp_path / "optuna").is_dir()
    shared = cfg.model_copy(
        update={"stores": cfg.stores.model_copy(update={"optuna_storage": "postgresql+psycopg://x@h/o"})}
    )
    assert study_storage(shared) == "postgresql+psycopg://x@h/o"
