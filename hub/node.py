"""This hub process's name among several: who holds an outbox claim or the dispatch lease."""

from __future__ import annotations

import os
import secrets
import socket


def node_id() -> str:
    """A name unique to this process and this start (host, pid, random), at most 64 characters.

    Unique per start on purpose: a restarted process must not mistake a dead predecessor's
    claims for its own sends in progress.
    """
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
