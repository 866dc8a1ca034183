"""Tests against a real server on 127.0.0.1: subprocess, free port, bounded wait, always killed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving.server import stop_process_group

pytestmark = pytest.mark.server


def test_rebuy_serve_answers_on_localhost(tmp_path: Path, rebuy_serve) -> None:
    proc, base = rebuy_serve('admin_token = "t0k"\nmax_batch = 20\n')
    try:
        deadline = time.monotonic() + 120
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                ready = False
            if ready:
                break
            time.sleep(0.5)
        assert ready, (tmp_path / "server.log").read_text(errors="replace")[-3000:]
        with httpx.Client(base_url=base, timeout=10) as c:
            r = c.post("/score", json={"customer_ids": ["c000001", "stranger"]})
            assert r.status_code == 200
            res = r.json()["results"]
            assert [x["cold_start"] for x in res] == [False, True]
            assert c.post("/score", json={"customer_ids": ["c"] * 21}).status_code == 400
            assert (
                c.post(
                    "/score",
                    content=b"\x80\x04N.",
                    headers={"content-type": "application/vnd.bentoml+pickle"},
                ).status_code
                == 415
            )
            assert c.post("/admin/reload", json={}).status_code == 401
            assert c.post("/admin/reload", json={}, headers={"x-admin-token": "t0k"}).status_code == 200
            assert "rebuy_model_info" in c.get("/metrics").text
    finally:
        stop_process_group(proc)


def test_missing_registry_is_a_clear_startup_error(tmp_path: Path) -> None:
    """No trained models: `rebuy serve` exits at once with what to run, instead of serving 5xx.

    The variables that used to import any `module:function` into the service are set to the synthetic
    test doubles: production must ignore them (only the registry's champions are served)."""
    env = {
        **os.environ,
        "REBUY_SCORER_FACTORY": "tests.support.synthetic:scorer_from_config",
        "REBUY_VERSIONS_FN": "tests.support.synthetic:champion_versions",
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "BENTOML_HOME": str(tmp_path / "bentoml"),
    }
    cfg = tmp_path / "rebuy.toml"
    cfg.write_text("[serving]\nport = 1\n", encoding="utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.app import main; main()",
            "serve",
            "--config",
            str(cfg),
            "--data-dir",
            str(tmp_path / "empty"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "cannot start serving" in out.stderr and "rebuy train" in out.stderr
