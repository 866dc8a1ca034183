"""`rebuy train` / `rebuy models` parse arguments and call the stage (no logic in the CLI)."""

from __future__ import annotations

from typer.testing import CliRunner

from cli.app import app
from rebuy.errors import RebuyError


def test_models_list_shows_every_registered_model_with_aliases(trained_models):
    cfg, runs = trained_models
    res = CliRunner().invoke(
        app, ["models", "list", "--data-dir", str(cfg.paths.data_dir)], env={"COLUMNS": "250"}
    )
    assert res.exit_code == 0, res.output
    for run in runs.values():
        assert run.outcome.registered_name in res.output
    assert "champion" in res.output


def test_train_refuses_an_unknown_model_group(tmp_path):
    res = CliRunner().invoke(app, ["train", "lifetime", "--data-dir", str(tmp_path)])
    assert isinstance(res.exception, RebuyError) and "unknown model group" in str(res.exception)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_rollback_needs_a_champion(tmp_path):
    res = CliRunner().invoke(
        app, ["models", "rollback", "churn", "--reason", "x", "--data-dir", str(tmp_path)]
    )
    assert isinstance(res.exception, RebuyError) and "no @champion" in str(res.exception)
