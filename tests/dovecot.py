"""A real Dovecot IMAP server on loopback, started from a config in a temp dir (see DEVELOPERS.md).

passwd-file users with plaintext passwords, maildir storage, IMAP only, plaintext auth allowed
(loopback only). TLS is offered on the same port (STARTTLS) and on a second port (implicit TLS)
with a throwaway self-signed certificate. Stopped by its PID.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "support@example.com"
PASSWORD = "imap-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT)


def require_dovecot() -> None:
    """Skip on a laptop without Dovecot; under CI=true a missing server is a failure."""
    if dovecot_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("dovecot is not installed (apt-get install -y dovecot-imapd)")
    pytest.skip("dovecot is not installed (apt-get install -y dovecot-imapd)")


@dataclass
class Dovecot:
    root: Path
    port: int
    tls_port: int
    cert: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    user: str = USER
    password: str = PASSWORD

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def _certificate(root: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1, made by the openssl CLI."""
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@contextlib.contextmanager
def running_dovecot(introspection_url: str | None = None) -> Iterator[Dovecot]:
    """Dovecot with a passwd-file user; with ``introspection_url`` also XOAUTH2/OAUTHBEARER,
    whose tokens Dovecot's oauth2 passdb checks by POSTing them there (RFC 7662)."""
    require_dovecot()
    root = Path(tempfile.mkdtemp(prefix="channelhub-dovecot-"))
    os.chmod(root, 0o755)
    if os.geteuid() == 0:
        internal = pwd.getpwnam("dovecot")
        login = "dovenull"
        mail = internal
    else:
        internal = mail = pwd.getpwuid(os.geteuid())
        login = internal.pw_name
    for sub in ("run", "state", "home"):
        (root / sub).mkdir()
    os.chown(root / "home", mail.pw_uid, mail.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    cert, key = _certificate(root)
    port, tls_port = free_port(), free_port()
    mechanisms, oauth2 = "plain login", ""
    if introspection_url is not None:
        mechanisms += " xoauth2 oauthbearer"
        (root / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\n"
            f"introspection_url = {introspection_url}\n"
            "username_attribute = username\n"
            "active_attribute = active\n"
            "active_value = true\n"
        )
        oauth2 = f"""
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/oauth2.conf.ext
}}"""
    (root / "dovecot.conf").write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal.pw_name}
default_login_user = {login}
first_valid_uid = {mail.pw_uid}
last_valid_uid = {mail.pw_uid}
first_valid_gid = 0
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:~/Maildir
mailbox_idle_check_interval = 1 secs
imap_idle_notify_interval = 1 mins
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN username_format=%u {root}/passwd
}}{oauth2}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    process = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = Dovecot(root, port, tls_port, cert, process)
    try:
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"dovecot did not start: {error}\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
