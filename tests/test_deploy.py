"""The deployment files stay valid: deploy/hub.yaml loads as a cluster config, the HAProxy
configs that ``make cluster`` and the fault suite write pass ``haproxy -c``, and compose.yaml
mounts files that exist."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from hub.cli.config import load_config
from tests.cluster import HAPROXY, haproxy_config, require_haproxy

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_cluster", DEPLOY / "cluster.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_deploy_hub_yaml_is_a_distributed_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(DEPLOY.parent)  # rules.path is relative to the working directory
    monkeypatch.setenv("CHANNELHUB_SECRET_KEY", "0123456789abcdef0123456789abcdef")
    monkeypatch.setenv("CHANNELHUB_STORAGE_URL", "postgresql+asyncpg://u@db:5432/channelhub")
    monkeypatch.setenv("CHANNELHUB_BUS_URL", "redis://redis:6379/0")
    settings = load_config(str(DEPLOY / "hub.yaml"))
    assert settings.distributed
    assert settings.bus.prefix == "channelhub"


@pytest.mark.parametrize("render", ["fault suite", "make cluster"])
def test_haproxy_configs_are_valid(tmp_path: Path, render: str) -> None:
    require_haproxy()
    if render == "fault suite":
        text = haproxy_config(18080, [18081, 18082, 18083])
    else:
        text = _runner().haproxy_config(18080, [18081, 18082, 18083])
    assert "timeout tunnel 1h" in text and "balance roundrobin" in text
    directives = [line.split("#")[0] for line in text.splitlines()]
    assert not [d for d in directives if "cookie" in d or "stick" in d]  # no sticky sessions
    config = tmp_path / "haproxy.cfg"
    config.write_text(text)
    checked = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_compose_runs_three_nodes_on_the_deploy_files() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "node1", "node2", "node3", "haproxy"} <= set(services)
    node = services["node1"]
    assert node["command"][-1] == "/app/deploy/hub.yaml"
    assert "./hub.yaml:/app/deploy/hub.yaml:ro" in node["volumes"]
    assert node["environment"]["CHANNELHUB_BUS_URL"].startswith("redis://redis:")
    for service in ("node2", "node3"):  # node1 migrates the database alone first
        assert services[service]["depends_on"]["node1"]["condition"] == "service_healthy"
    for volume in [*services["haproxy"]["volumes"], *node["volumes"]]:
        source = volume.split(":")[0]
        if source.startswith("./"):
            assert os.path.exists(DEPLOY / source), source
    servers = [line.split()[2] for line in (DEPLOY / "haproxy.cfg").read_text().splitlines()
               if line.strip().startswith("server ")]  # fmt: skip
    assert servers == ["node1:8080", "node2:8080", "node3:8080"]
