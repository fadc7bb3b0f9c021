"""The hub's secret key and the keys derived from it, one per purpose.

The master secret (``server.secret_key``, else one generated once and kept beside the data,
readable by its owner only) is never used as it is: each purpose gets its own HMAC-SHA256
derivation, so a key that leaks from one use (a connector's signed tokens) opens nothing else
(agent uploads, remembered login devices). The purpose names are part of the keys: renaming one
invalidates what was signed with it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

from hub.settings import HubSettings

log = logging.getLogger(__name__)

MIN_SECRET_CHARS = 16


def master_secret(settings: HubSettings) -> bytes:
    """The configured secret key, or one generated once and kept beside the data."""
    if settings.server.secret_key is not None:
        value = settings.server.secret_key.get_secret_value()
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(f"server.secret_key must be at least {MIN_SECRET_CHARS} characters")
        return value.encode()
    path = Path(settings.storage.blobs).parent / "secret.key"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48).encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key)
    log.info("generated a secret key in %s", path)
    return key


def derive_key(master: bytes, purpose: str) -> bytes:
    """The key for ``purpose`` (HMAC-SHA256 of the purpose under the master secret)."""
    return hmac.new(master, purpose.encode(), hashlib.sha256).digest()


class Keys:
    """Every key the hub signs with, derived from one master secret."""

    def __init__(self, master: bytes) -> None:
        self._master = master

    @classmethod
    def load(cls, settings: HubSettings) -> Keys:
        """Read (or generate once) the master secret; see :func:`master_secret`."""
        return cls(master_secret(settings))

    @property
    def login_devices(self) -> bytes:
        """Signs the cookies of devices an agent logged in from (hub.auth)."""
        return derive_key(self._master, "login-devices")

    @property
    def uploads(self) -> bytes:
        """Signs the tokens of files agents uploaded for a reply (hub.uploads)."""
        return derive_key(self._master, "uploads")

    def connector(self, instance: str) -> bytes:
        """The channel instance's own key (``ConnectorContext.secret``)."""
        return derive_key(self._master, f"connector:{instance}")
