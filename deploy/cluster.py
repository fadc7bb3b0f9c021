#!/usr/bin/env python3
"""Run a channelhub cluster on this machine: N hub nodes on the machine's PostgreSQL and Redis,
HAProxy in front on 127.0.0.1:8080 (round robin, no sticky sessions), until Ctrl-C.

    make cluster                       # = python3 deploy/cluster.py
    python3 deploy/cluster.py --fresh  # start from an empty database

Uses only the standard library and the tools it starts (``.venv/bin/channelhub``, ``haproxy``,
``psql``), so it runs before and apart from the hub's own code. Its own database
(``channelhub_cluster``) and stream prefix (``channelhub-cluster``) keep it apart from anything
else on the same servers. A node that exits (killed, or ending its dispatch term) is started
again after a second, as a supervisor (systemd, Docker) would; ``--no-restart`` leaves it dead.
Every process it started is stopped by its PID on Ctrl-C. Logs and generated files go to
``data/cluster/``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "cluster"


def haproxy_config(port: int, backends: list[int]) -> str:
    """deploy/haproxy.cfg with loopback addresses."""
    template = (ROOT / "deploy" / "haproxy.cfg").read_text()
    head, _, _ = template.partition("frontend hub")
    servers = "".join(
        f"    server node{index} 127.0.0.1:{backend} check\n"
        for index, backend in enumerate(backends, 1)
    )
    return (
        f"{head}frontend hub\n    bind 127.0.0.1:{port}\n    default_backend nodes\n\n"
        "backend nodes\n    balance roundrobin\n    option httpchk GET /readyz\n"
        "    http-check expect status 200\n    default-server inter 1s fall 2 rise 2\n"
        f"{servers}"
        "\nlisten stats\n    bind 127.0.0.1:{stats}\n    stats enable\n    stats uri /\n"
    ).replace("{stats}", str(port + 324))


def psql(admin: str, sql: str) -> str:
    done = subprocess.run(
        ["psql", admin, "-v", "ON_ERROR_STOP=1", "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"cluster: psql {admin} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def prepare_database(admin: str, name: str, fresh: bool) -> None:
    if fresh:
        psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    if psql(admin, f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":
        psql(admin, f'CREATE DATABASE "{name}"')
        print(f"cluster: created database {name}")


def secret_key() -> str:
    path = DATA / "secret.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


@dataclass
class Node:
    name: str
    port: int
    command: list[str]
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(DATA / f"{self.name}.log", "ab") as log:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port)],
                cwd=ROOT,
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches this script only; it stops the nodes
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=1):
                return True
        except OSError:
            return False


def wait_ready(node: Node, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.alive:
            sys.exit(f"cluster: {node.name} exited; see {DATA / (node.name + '.log')}")
        if node.ready():
            return
        time.sleep(0.2)
    sys.exit(f"cluster: {node.name} not ready after {timeout:.0f}s")


def stop(process: subprocess.Popen[bytes] | None, name: str) -> None:
    if process is None or process.poll() is not None:
        return
    os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        print(f"cluster: {name} (pid {process.pid}) did not stop, killing it")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(5)


def owner(admin_base: str, database: str) -> str | None:
    """The holder of the dispatch lease (``host:pid:random``), if unexpired."""
    found = subprocess.run(
        [
            "psql",
            f"{admin_base}/{database}",
            "-tAc",
            "SELECT holder FROM leases WHERE name = 'dispatch' "
            "AND expires_at > extract(epoch from now())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=8080, help="HAProxy (default 8080)")
    parser.add_argument("--node-port", type=int, default=8081, help="first node's port")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--database", default="channelhub_cluster")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", default="channelhub-cluster", help="Redis stream prefix")
    parser.add_argument("--config", default=str(ROOT / "deploy" / "hub.yaml"))
    parser.add_argument("--fresh", action="store_true", help="drop the database first")
    parser.add_argument("--no-restart", action="store_true", help="leave exited nodes dead")
    parser.add_argument("--demo-data", action="store_true", help="import config/demo first")
    args = parser.parse_args()

    channelhub = ROOT / ".venv" / "bin" / "channelhub"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    for tool, hint in ((str(channelhub), "make install"), (haproxy, "apt-get install haproxy")):
        if not os.path.exists(tool):
            sys.exit(f"cluster: {tool} is missing ({hint})")
    if shutil.which("psql") is None:
        sys.exit("cluster: psql is missing (apt-get install postgresql-client)")
    DATA.mkdir(parents=True, exist_ok=True)
    prepare_database(f"{args.postgres}/postgres", args.database, args.fresh)
    base = args.postgres.replace("postgresql://", "postgresql+asyncpg://")
    environment = {
        **os.environ,
        "CHANNELHUB_HOST": "127.0.0.1",
        "CHANNELHUB_PUBLIC_URL": f"http://127.0.0.1:{args.port}",
        "CHANNELHUB_SECRET_KEY": secret_key(),
        "CHANNELHUB_STORAGE_URL": f"{base}/{args.database}",
        "CHANNELHUB_BUS_URL": args.redis,
        "CHANNELHUB_BUS_PREFIX": args.prefix,
        "CHANNELHUB_BLOBS": str(DATA / "blobs"),
        "PYTHONUNBUFFERED": "1",
    }
    command = [str(channelhub), "serve", "--config", args.config]
    if args.demo_data:  # also applies the migrations, before any node starts
        demo = [
            str(ROOT / "config" / "demo" / f)
            for f in ("customers.csv", "orders.csv", "invoices.csv")
        ]
        subprocess.run(
            [str(channelhub), "customers", "import", *demo, "--config", args.config],
            cwd=ROOT,
            env=environment,
            check=True,
        )
    nodes = [
        Node(f"node{index}", args.node_port + index - 1, command, environment)
        for index in range(1, args.nodes + 1)
    ]
    balancer: subprocess.Popen[bytes] | None = None
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        # the first node migrates the database alone; the others start together after it
        nodes[0].start()
        wait_ready(nodes[0])
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            wait_ready(node)
        config = DATA / "haproxy.cfg"
        config.write_text(haproxy_config(args.port, [node.port for node in nodes]))
        with open(DATA / "haproxy.log", "ab") as log:
            balancer = subprocess.Popen(
                [haproxy, "-db", "-f", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        print(
            f"cluster: HAProxy on http://127.0.0.1:{args.port} (pid {balancer.pid}), "
            f"its stats on http://127.0.0.1:{args.port + 324}/"
        )
        for node in nodes:
            assert node.process is not None
            print(f"cluster: {node.name} on 127.0.0.1:{node.port}, pid {node.process.pid}")
        print(
            f"cluster: console http://127.0.0.1:{args.port}/console/ (demo / demo), "
            f"chat http://127.0.0.1:{args.port}/chat/; logs in {DATA}"
        )
        print(
            "cluster: kill a node with `kill -9 PID` (the dispatch owner is announced below);"
            " Ctrl-C stops everything"
        )
        announced: str | None = None
        restart_at: dict[str, float] = {}
        while not interrupted:
            holder = owner(args.postgres, args.database)
            if holder != announced:
                pid = holder.split(":")[-2] if holder else None
                name = next((n.name for n in nodes if n.process and str(n.process.pid) == pid), "?")
                print(
                    f"cluster: dispatch owner: {name} (pid {pid})"
                    if holder
                    else "cluster: no dispatch owner (lease lapsed; a standby takes over)"
                )
                announced = holder
            for node in nodes:
                if node.alive or args.no_restart:
                    continue
                assert node.process is not None
                if node.name not in restart_at:
                    print(
                        f"cluster: {node.name} (pid {node.process.pid}) exited with "
                        f"{node.process.returncode}; starting it again in 1 s"
                    )
                    restart_at[node.name] = time.monotonic() + 1
                elif time.monotonic() >= restart_at[node.name]:
                    del restart_at[node.name]
                    node.start()
                    print(f"cluster: {node.name} started again, pid {node.process.pid}")
            if balancer.poll() is not None:
                print("cluster: haproxy exited; stopping")
                break
            time.sleep(0.5)
    finally:
        print("cluster: stopping")
        stop(balancer, "haproxy")
        for node in nodes:
            stop(node.process, node.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
