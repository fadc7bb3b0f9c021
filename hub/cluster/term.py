"""What runs under the dispatch lease: dispatch itself, then the owner's desk."""

from __future__ import annotations

from typing import Protocol


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Term:
    """Started when this process takes the dispatch lease, stopped when it ends. The desk is
    added once the console exists (``hub.lifecycle.cluster``), before the lease is sought."""

    def __init__(self, dispatch: Startable) -> None:
        self.dispatch = dispatch
        self.desk: Startable | None = None

    async def start(self) -> None:
        await self.dispatch.start()  # rebuilt from the store first
        if self.desk is not None:
            await self.desk.start()  # then who is connected, from every node

    async def stop(self) -> None:
        if self.desk is not None:
            await self.desk.stop()
        await self.dispatch.stop()
