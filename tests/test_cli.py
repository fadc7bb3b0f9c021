"""The channelhub command as a user runs it: a real process, real signals."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from websockets.sync.client import connect

from hub.store.migrate import MIGRATIONS
from tests.helpers import free_port, wait_ready

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "hub.cli"]
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def run(
    *args: str, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd or ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_version() -> None:
    result = run("version")
    assert result.returncode == 0
    assert result.stdout.startswith("channelhub 0.")


def test_hash_password_makes_a_verifiable_argon2_hash() -> None:
    from argon2 import PasswordHasher

    result = run("agents", "hash-password", "--password-stdin", stdin="s3cret-pass\n")
    assert result.returncode == 0, result.stderr
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert PasswordHasher().verify(hashed, "s3cret-pass")
    short = run("agents", "hash-password", "--password-stdin", stdin="abc\n")
    assert short.returncode == 1 and "at least 8" in short.stderr


def test_bad_config_stops_startup_with_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text("server:\n  port: 8080\nagents:\n  - id: x\n    nmae: X\n")
    for command in (["serve", "--config", str(config)], ["config", "check", str(config)]):
        result = run(*command)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert f"{config}:5:5: agents.0.nmae: Extra inputs are not permitted" in lines
        assert f"{config}:4:5: agents.0.name: Field required" in lines or any(
            line.startswith(f"{config}:4:") and "agents.0.name: Field required" in line
            for line in lines
        )


def test_serve_migrates_serves_and_shuts_down_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    shutil.copytree(ROOT / "config", tmp_path / "config")
    process = subprocess.Popen(
        [*CLI, "serve", "--config", "config/hub.yaml", "--port", str(port)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            assert json.load(response) == {"status": "ok"}
        with connect(f"ws://127.0.0.1:{port}/ws/chat") as chat:
            chat.send(json.dumps({"type": "hello"}))
            assert json.loads(chat.recv(timeout=5))["type"] == "welcome"
            chat.send(json.dumps({"type": "message", "client_id": "1", "text": "hello"}))
            assert json.loads(chat.recv(timeout=5))["type"] == "ack"
        depth = 'channelhub_queue_depth{queue="general"} 1.0'
        for _ in range(50):  # dispatch queues the conversation just after the ack
            with urllib.request.urlopen(f"{url}/metrics", timeout=2) as response:
                metrics = response.read().decode()
            if depth in metrics:
                break
            time.sleep(0.1)
        assert 'channelhub_messages_in_total{channel="webchat"} 1.0' in metrics
        assert depth in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stdout = process.stdout.read() if process.stdout else ""
    assert f"agent console at http://127.0.0.1:{port}/console/" in stdout
    database = tmp_path / "data" / "channelhub.db"
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone() == (HEAD,)
        assert connection.execute(
            "SELECT count(*) FROM messages WHERE direction = 'inbound'"
        ).fetchone() == (1,)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o077 == 0


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_has_the_documented_targets() -> None:
    result = subprocess.run(
        ["make", "-n", "run", "test", "lint", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "channelhub serve" in result.stdout and "pytest" in result.stdout


def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("serve", "config", "rules", "envelope", "customers", "agents", "version"):
        assert f"\n    {command}" in result.stdout, command
    assert "``" not in result.stdout  # no reStructuredText leaking from docstrings


def test_envelope_and_rules_test_read_samples_through_the_connector(tmp_path: Path) -> None:
    mail = tmp_path / "mail.eml"
    mail.write_bytes(b"From: ann@example.org\r\nSubject: Ware\r\n\r\nReklamation: kaputt\r\n")
    shown = run("envelope", str(mail), "--type", "email", "--inbox", "support")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["inbox"] == "support"
    decided = run("rules", "test", "config/rules.yaml", "--sample", str(mail), "--type", "email")
    assert decided.returncode == 0, decided.stderr
    assert json.loads(decided.stdout)["decision"]["queue"] == "complaints"
    # a connector without a sample format, and one that is not installed, say so
    webchat = run("envelope", str(mail), "--type", "webchat")
    assert webchat.returncode == 1 and "cannot read samples" in webchat.stderr
    unknown = run("envelope", str(mail), "--type", "pigeon")
    assert unknown.returncode == 1 and "pigeon" in unknown.stderr
    empty = tmp_path / "empty.eml"
    empty.write_bytes(b"")
    bad = run("envelope", str(empty))
    assert bad.returncode == 1 and str(empty) in bad.stderr
