"""The console's TypeScript: unit tests (node's test runner), the committed build is what the
sources build to, and no source writes HTML from data."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import IN_CI

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
STATIC = ROOT / "hub" / "console" / "static"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (CONSOLE / "node_modules" / "esbuild").exists():
        if IN_CI:
            pytest.fail("node and console/node_modules are needed (make install runs npm ci)")
        pytest.skip("node or console/node_modules missing (cd console && npm ci)")
    return node


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=CONSOLE, capture_output=True, text=True, timeout=300, check=False
    )


def test_frontend_unit_tests_pass() -> None:
    node = _node()
    built = _run(node, "build.mjs", "--tests")
    assert built.returncode == 0, built.stderr
    result = _run(node, "--test", ".test-build/")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^# pass [1-9]", result.stdout, re.M), result.stdout[-2000:]


def test_committed_build_matches_the_sources(tmp_path: Path) -> None:
    """hub/console/static is what pip installs; it must be what console/ builds to."""
    node = _node()
    result = _run(node, "build.mjs", "--outdir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for name in (
        "index.html",
        "console.js",
        "console.css",
        "rules-diff.html",
        "rules-diff.js",
        "rules-diff.css",
    ):
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), (
            f"hub/console/static/{name} is stale: run `make console` (or cd console && "
            "node build.mjs) and commit it"
        )


def test_sources_never_write_html() -> None:
    """Text reaches the page as text nodes only (a customer's markup stays inert)."""
    for path in (CONSOLE / "src").rglob("*.ts*"):
        text = path.read_text()
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"):
            assert banned not in text, f"{path.relative_to(ROOT)} uses {banned}"
    widget = (ROOT / "connectors" / "webchat" / "static" / "widget.js").read_text()
    assert "innerHTML" not in widget
