from pathlib import Path

import pytest

from rebuy.config import ConfigError, load_config


def test_defaults_are_a_working_local_setup(tmp_path: Path) -> None:
    cfg = load_config(data_dir=tmp_path)
    assert cfg.paths.data_dir == tmp_path.resolve()
    assert cfg.mlflow_uri.startswith("sqlite:///")
    assert "none" in cfg.offers.catalogue


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "rebuy.toml").write_text('[paths]\ndata_dir = "shop"\n[horizons]\nchurn_days = 90\n')
    cfg = load_config(tmp_path / "rebuy.toml")
    assert cfg.paths.data_dir == (tmp_path / "shop").resolve()
    assert cfg.horizons.churn_days == 90


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[horizons]\nchurn_dayz = 3\n", "churn_dayz"),
        ("[offers.catalogue.free_beer]\ncost = 1\n", "free_beer"),
        ("[import]\nevent_type_map = { clicky = 'clack' }\n", "clack"),
        ("not toml = = =", "not valid TOML"),
    ],
)
def test_bad_config_names_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "rebuy.toml").write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path / "rebuy.toml")


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")


def test_import_paths_resolve_against_the_config_file_not_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "rebuy.toml").write_text(
        '[import.orders]\npath = "exports/orders.csv"\n[import.events]\npath = "/abs/events.csv"\n'
    )
    cfg = load_config(tmp_path / "cfg" / "rebuy.toml")
    assert cfg.import_.orders.path == tmp_path / "cfg" / "exports" / "orders.csv"
    assert cfg.import_.events.path == Path("/abs/events.csv")
    assert cfg.import_.customers.path is None
