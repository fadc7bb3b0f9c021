"""What customers need of the hub's store, as protocols: the customer modules depend on the
store's tables only, not on the facade that shows customers to the console."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Protocol, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

T = TypeVar("T")


class Writes(Protocol):
    async def call(self, fn: Callable[[AsyncConnection], Awaitable[T]]) -> T: ...


class Storage(Protocol):
    """What customers need of the hub's store (``hub.store.store.Store``): pooled reads, the
    group-committing writer and the clock."""

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def writer(self) -> Writes: ...

    @property
    def clock(self) -> Callable[[], float]: ...

    def read(self) -> AbstractAsyncContextManager[AsyncConnection]: ...
