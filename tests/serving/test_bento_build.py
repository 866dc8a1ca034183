"""`bentoml build` of serving/bentofile.yaml, built for real (not only parsed), and what the Bento carries.

The build runs with `lock_packages: false`: locking asks the package index to resolve the pins, which is
the only part of a build that needs the network; everything else is the shipped file as it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bento(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("bento")
    spec = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text(encoding="utf-8"))
    spec["python"]["lock_packages"] = False
    bentofile = tmp / "bentofile.yaml"
    bentofile.write_text(yaml.safe_dump(spec), encoding="utf-8")
    env = {**os.environ, "BENTOML_HOME": str(tmp / "home"), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("BENTOML_CONTAINERIZED", None)
    bentoml = Path(sys.executable).with_name("bentoml")
    out = subprocess.run(
        [str(bentoml), "build", "-f", str(bentofile), "--output", "tag", str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    tag = out.stdout.strip().rsplit("__tag__:", 1)[-1].strip()
    name, version = tag.split(":")
    return tmp / "home" / "bentos" / name / version


def test_the_bento_carries_the_service_code_and_nothing_else(bento: Path) -> None:
    meta = yaml.safe_load((bento / "bento.yaml").read_text(encoding="utf-8"))
    assert meta["service"] == "serving.service:RebuyService" and meta["name"] == "rebuy"
    src = bento / "src"
    for module in ("serving/service.py", "serving/scorer.py", "training/registry.py", "rebuy/config.py"):
        assert (src / module).is_file(), module
    assert any((src / "features" / "feature_repo").iterdir())
    shipped = {p.relative_to(src).parts[0] for p in src.rglob("*") if p.is_file()}
    assert shipped <= {"rebuy", "features", "training", "serving", "bentofile.yaml"}, shipped
    assert not list(src.rglob("__pycache__"))
    # no test doubles or pickles ship
    assert not list(src.rglob("synthetic*.py")) and not list(src.rglob("*.pkl"))
    # the project's pins, and telemetry off in the image
    reqs = (bento / "env" / "python" / "requirements.txt").read_text(encoding="utf-8")
    assert "lightgbm>=4.3,<5" in reqs and "bentoml>=1.4.37,<1.4.40" in reqs
    envs = {e["name"]: e["value"] for e in meta["envs"]}
    assert envs["BENTOML_DO_NOT_TRACK"] == "True" and envs["FEAST_USAGE"] == "False"


def test_the_bento_image_listens_on_all_interfaces_only_with_a_key(bento: Path) -> None:
    """The image's Dockerfile marks the container; the Bento's own code then binds all interfaces (a
    mapped port needs it) and refuses to start without an API key."""
    dockerfile = (bento / "env" / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert "BENTOML_CONTAINERIZED=true" in dockerfile
    probe = (
        "import serving.service as s\n"
        "from serving.scorer import StartupError\n"
        "print(s.__file__)\n"
        "print(s.RebuyService.config['http']['host'])\n"
        "try:\n    s.check_exposure(None)\nexcept StartupError as e:\n    print('refused:', e)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("REBUY_API_KEY", "PYTHONPATH")}
    env["BENTOML_CONTAINERIZED"] = "true"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=bento / "src", env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    where, host, refused = out.stdout.strip().splitlines()[-3:]
    assert Path(where).resolve() == (bento / "src" / "serving" / "service.py").resolve()  # the Bento's code
    assert host == "0.0.0.0"
    assert refused.startswith("refused:") and "REBUY_API_KEY" in refused
