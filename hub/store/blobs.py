"""Content-addressed blob storage on disk: a file's name is the SHA-256 of its bytes.

The original filename is metadata only, so a hostile name (``../../etc/passwd``) never reaches the
file system. Writes go to a temporary file and are renamed into place after fsync; hashing and
writing run in a thread so a large attachment never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from pathlib import Path

from hub.envelope import Attachment

_REF = re.compile(r"^sha256:[0-9a-f]{64}$")


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, ref: str) -> Path:
        if not _REF.match(ref):
            raise ValueError(f"not a blob reference: {ref!r}")
        digest = ref.removeprefix("sha256:")
        return self.root / digest[:2] / digest[2:4] / digest

    async def put(self, data: bytes, *, name: str, content_type: str) -> Attachment:
        """Store ``data`` (deduplicated by content) and return its attachment metadata."""
        digest = await asyncio.to_thread(self._write, data)
        return Attachment(
            name=name[:255],
            content_type=content_type,
            size=len(data),
            sha256=digest,
            blob_ref=f"sha256:{digest}",
        )

    def _write(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        target = self._path(f"sha256:{digest}")
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest

    async def get(self, ref: str) -> bytes:
        """The bytes of a stored blob (FileNotFoundError if absent)."""
        return await asyncio.to_thread(self._path(ref).read_bytes)

    def path(self, ref: str) -> Path:
        """Where a blob's file is (ValueError for a malformed reference)."""
        return self._path(ref)

    async def remove(self, ref: str) -> bool:
        """Delete a blob's file (erasure, retention); False if it was not there. The caller
        makes sure no record uses it any more."""

        def unlink() -> bool:
            try:
                self._path(ref).unlink()
            except FileNotFoundError:
                return False
            return True

        return await asyncio.to_thread(unlink)
