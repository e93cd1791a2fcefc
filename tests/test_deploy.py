"""The compose file of the distributed deployment (deploy/compose.yaml) cannot run here (no
container runtime): what can be checked is that every command it runs exists and that its
environment is a valid configuration of this version."""

from __future__ import annotations

from pathlib import Path

import yaml

from jobs.config import load_settings
from tests.conftest import run_cli

COMPOSE = Path(__file__).resolve().parent.parent / "deploy" / "compose.yaml"


def test_the_compose_file_runs_real_commands_with_valid_settings(
    tmp_path: Path, monkeypatch
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"postgres", "redis", "minio", "scheduler", "worker", "migrate"} <= set(services)
    ours = {n: s for n, s in services.items() if s.get("command", [""])[0] == "evidence"}
    assert set(ours) == {"migrate", "scheduler", "worker"}
    for name, service in ours.items():
        proc = run_cli(*service["command"][1:], "--help")
        assert proc.returncode == 0, (name, proc.stderr)
        for key, value in service["environment"].items():
            value = value.replace("${POSTGRES_PASSWORD}", "pw").replace("${MINIO_ROOT_USER}", "u")
            monkeypatch.setenv(key, value.replace("${MINIO_ROOT_PASSWORD}", "p"))
        settings = load_settings(data_dir=tmp_path)
        assert settings.workers.redis_url == "redis://redis:6379/0"
        assert settings.schedule.distributed and settings.object_store_url.startswith("s3://")
