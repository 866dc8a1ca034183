"""The CLI commands parse, call one stage function and report plainly (no server needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from pipelines.orchestrator import run_pass
from pipelines.score_client import ScoringError
from rebuy.ingest import write_canonical
from tests.support.fake_client import FakeScoreClient

from .conftest import AS_OF, config_for, make_shop


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    write_canonical(make_shop(80, seed=9), tmp_path)
    return tmp_path


def test_run_without_a_service_says_how_to_start_it(data_dir: Path) -> None:
    toml = data_dir / "rebuy.toml"
    toml.write_text('[serving]\nurl = "http://127.0.0.1:9"\n')  # the discard port: nothing listens there
    res = CliRunner().invoke(
        app, ["run", "-c", str(toml), "--data-dir", str(data_dir), "--as-of", AS_OF.isoformat(), "--dry-run"]
    )
    assert isinstance(res.exception, ScoringError)
    assert "rebuy serve" in str(res.exception)
    assert not (data_dir / "decisions.db").exists()


def test_forget_and_report_uplift_commands(data_dir: Path) -> None:
    cfg = config_for(data_dir)
    shop = make_shop(80, seed=9)
    res = run_pass(cfg, AS_OF, shop, FakeScoreClient())
    victim = res.decisions["customer_id"].iloc[0]
    out = CliRunner().invoke(app, ["forget", victim, "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    assert "decisions_pseudonymised: 1" in out.output
    rep = CliRunner().invoke(
        app, ["report", "uplift", "--data-dir", str(data_dir), "--as-of", "2025-07-30", "--no-mlflow"]
    )
    assert rep.exit_code == 0, rep.output
    assert (data_dir / "reports" / "uplift" / "uplift.html").exists()
