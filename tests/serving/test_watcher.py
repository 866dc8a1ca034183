"""The champion-poll watcher: when @champion moves, a running server picks the new version up by itself.

A real `rebuy serve` (subprocess, 127.0.0.1) on the synthetic scorer, whose "registry" is a file the test
rewrites (tests.support.synthetic.champion_versions), polled every 0.5 s. Requests run the whole time: none may
fail, the versions in the responses only ever go from the old set to the new one, and the service counts
exactly one reload.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.server import stop_process_group
from serving.service import RebuyService

pytestmark = pytest.mark.server

MODELS = ("churn", "days_to_next", "offer", "repurchase", "value")


def test_champion_move_is_picked_up_without_a_failed_request(tmp_path: Path, rebuy_serve) -> None:
    version_file = tmp_path / "champion"
    version_file.write_text("7", encoding="utf-8")
    proc, base = rebuy_serve(
        REBUY_SYNTHETIC_VERSION_FILE=str(version_file),
        REBUY_RELOAD_POLL_SECONDS="0.5",
    )
    seen: list[tuple[int, dict[str, str] | None]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post("/score", json={"customer_ids": ["c000001"]})
                    body: Any = r.json() if r.status_code == 200 else None
                    seen.append((r.status_code, body["results"][0]["model_versions"] if body else None))
                except httpx.HTTPError:
                    seen.append((0, None))

    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError((tmp_path / "server.log").read_text(errors="replace")[-3000:])
        worker = threading.Thread(target=hammer)
        worker.start()
        try:
            time.sleep(1.5)  # several polls that find nothing new
            assert seen and all(v == dict.fromkeys(MODELS, "7") for _, v in seen)
            version_file.write_text("8", encoding="utf-8")  # "promote" a new champion
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and not (seen and seen[-1][1] == dict.fromkeys(MODELS, "8")):
                time.sleep(0.2)
            n_switched = len(seen)
            time.sleep(1.0)  # and it stays on the new version
        finally:
            stop.set()
            worker.join(timeout=60)
        assert [s for s, _ in seen if s != 200] == [], "a request failed during the switch"
        versions = [v["churn"] for _, v in seen if v]
        assert versions[-1] == "8" and len(seen) > n_switched, (tmp_path / "server.log").read_text()[-3000:]
        first_new = versions.index("8")
        assert set(versions[:first_new]) == {"7"} and set(versions[first_new:]) == {"8"}
        metrics = httpx.get(f"{base}/metrics", timeout=10).text
        assert "rebuy_model_reloads_total 1" in metrics
        assert 'rebuy_model_info{model="churn",version="8"} 1' in metrics
    finally:
        stop_process_group(proc)


def test_poll_reloads_only_when_the_champions_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One watcher step in process: same versions -> nothing; moved -> reload; a failing registry -> logged,
    the old scorer keeps serving."""
    from tests.support.synthetic import synthetic_scorer

    svc = RebuyService.inner.__new__(RebuyService.inner)  # the class without BentoML's start-up
    svc.cfg = None
    svc.scorer = synthetic_scorer(n_customers=200, rounds=5, version="3")[0]
    calls: list[str] = []

    def fake_reload() -> bool:
        calls.append("reload")
        return True

    svc._reload = fake_reload
    assert svc.poll_champions(lambda _cfg: svc.scorer.model_versions) is False and calls == []
    moved = {**svc.scorer.model_versions, "churn": "4"}
    assert svc.poll_champions(lambda _cfg: moved) is True and calls == ["reload"]

    def broken(_cfg: Any) -> dict[str, str]:
        raise ConnectionError("registry down")

    assert svc.poll_champions(broken) is False and calls == ["reload"]
