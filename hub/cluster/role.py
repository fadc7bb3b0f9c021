"""What this process is among several: the one dispatching, a standby, or the only one."""

from __future__ import annotations

from typing import Protocol


class Lease(Protocol):
    @property
    def token(self) -> int | None: ...


class Role:
    """``owner`` says whether the one-per-cluster jobs (dispatch, SLA timers, customer
    recompute, retention) run here: always on a single process, only under the dispatch
    lease in the distributed mode."""

    def __init__(self, lease: Lease | None = None) -> None:
        self.lease = lease

    @property
    def owner(self) -> bool:
        return self.lease is None or self.lease.token is not None

    @property
    def name(self) -> str:
        if self.lease is None:
            return "single"
        return "dispatch owner" if self.lease.token is not None else "standby"
