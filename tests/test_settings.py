"""hub.yaml loading: every problem is reported as path:line:col, secrets never leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.plugins import ConnectorRegistry
from hub.settings import load_settings
from rules.durations import parse_duration
from rules.yamlfile import load_yaml

REGISTRY = ConnectorRegistry.discover()


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hub.yaml"
    path.write_text(text)
    return str(path)


def _problems(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> list[str]:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, REGISTRY.settings_model, environ=environ or {})
    return [problem.replace(path, "hub.yaml") for problem in caught.value.problems]


def test_example_config_is_valid() -> None:
    settings = load_settings("config/hub.yaml", REGISTRY.settings_model, environ={})
    assert settings.server.port == 8080
    assert settings.channels[0].type == "webchat"
    assert settings.agents[0].id == "demo"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("server:\n  port: eighty\n", "hub.yaml:2:9: server.port: Input should be a valid integer"),
        ("server:\n  prot: 80\n", "hub.yaml:2:3: server.prot: Extra inputs are not permitted"),
        ("storage:\n  url: [1\n", "hub.yaml:3:1: YAML syntax error"),
        (
            "dispatch:\n  offer_timeout: soon\n",
            "hub.yaml:2:18: dispatch.offer_timeout: Value error, a duration like 30s",
        ),
        ("queues:\n  - name: Bad Name\n", "hub.yaml:2:11: queues.0.name: String should match"),
        ("default_queue: nowhere\n", "hub.yaml:1:1: (top level): Value error, default_queue"),
        ("server:\n  port: 1\nserver:\n  port: 2\n", "hub.yaml:3:1: duplicate key 'server'"),
        ("a: !!python/object:os.system x\n", "hub.yaml:1:4: could not determine a constructor"),
    ],
)
def test_errors_point_at_the_line(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(tmp_path, text)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_connector_settings_are_validated_by_the_connector(tmp_path: Path) -> None:
    text = (
        "channels:\n"
        "  - name: chat\n"
        "    type: webchat\n"
        "    settings:\n"
        "      burst: -3\n"
        "      colour: blue\n"
        "  - name: fax\n"
        "    type: telefax-9000\n"
    )
    problems = _problems(tmp_path, text)
    assert problems == [
        "hub.yaml:5:14: channels.0.settings.burst: Input should be greater than or equal to 1",
        "hub.yaml:6:7: channels.0.settings.colour: Extra inputs are not permitted",
        "hub.yaml:8:11: no connector of type 'telefax-9000' is installed "
        "(entry-point group channelhub.connectors)",
    ]


def test_environment_references(tmp_path: Path) -> None:
    text = "server:\n  secret_key: ${HUB_SECRET}\n  host: ${HUB_HOST:-0.0.0.0}\n"
    path = _write(tmp_path, text)
    settings = load_settings(path, environ={"HUB_SECRET": "s3cr3t-value-long-enough"})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.secret_key is not None
    assert settings.server.secret_key.get_secret_value() == "s3cr3t-value-long-enough"
    # a secret never shows in the settings' text form (logs, tracebacks)
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())
    problems = _problems(tmp_path, text)
    assert problems == ["hub.yaml:2:15: environment variable HUB_SECRET is not set"]


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for index in range(1, 10):
        previous = f"*a{index - 1}"
        lines.append(f"a{index}: &a{index} [{', '.join([previous] * 9)}]")
    with pytest.raises(ConfigError, match="more than 200000 values"):
        load_yaml("\n".join(lines), "bomb.yaml")


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="more than the limit"):
        load_yaml("x: " + "a" * (3 * 1024 * 1024), "big.yaml")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_settings(str(tmp_path / "nope.yaml"), environ={})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800), ("250ms", 0.25), (5, 5)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-1s", True, "1w", None])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


_AGENT = "agents:\n  - id: ann\n    name: Ann\n    password_hash: x\n"


def test_roles_and_the_deprecated_supervisor_flag(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.permissions import Role

    assert load_settings(_write(tmp_path, _AGENT), environ={}).agents[0].role is Role.AGENT
    admin = load_settings(_write(tmp_path, _AGENT + "    role: admin\n"), environ={})
    assert admin.agents[0].role is Role.ADMIN
    with caplog.at_level("WARNING"):
        path = _write(tmp_path, _AGENT + "    supervisor: true\n")
        old = load_settings(path, environ={})
    assert old.agents[0].role is Role.SUPERVISOR
    assert f"{path}:5:5: agents.0.supervisor is deprecated; write `role: supervisor`" in (
        caplog.text
    )
    both = _problems(tmp_path, _AGENT + "    supervisor: true\n    role: admin\n")
    assert any("keep only role" in problem for problem in both), both
    assert any(
        "agents.0.role" in problem for problem in _problems(tmp_path, _AGENT + "    role: root\n")
    )


def test_server_security_settings(tmp_path: Path) -> None:
    text = (
        "server:\n  secret_key: ${KEY:-}\n  trusted_proxies: [10.0.0.0/8, '::1']\n"
        "  metrics_port: 9100\n  metrics_token: ${TOKEN:-}\n"
    )
    server = load_settings(_write(tmp_path, text), environ={}).server
    assert server.secret_key is None and server.metrics_token is None  # empty means unset
    assert [str(network) for network in server.trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    problems = _problems(tmp_path, "server:\n  trusted_proxies: [10.0.0.1/8]\n")
    assert problems and problems[0].startswith("hub.yaml:2:"), problems
    problems = _problems(tmp_path, "server:\n  port: 9000\n  metrics_port: 9000\n")
    assert any("metrics_port must differ" in problem for problem in problems)
