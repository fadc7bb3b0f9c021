"""The dispatch lease, decided without I/O: who holds it, when it is renewed, taken over or
given up, from the lease row and clock readings passed in. Here, not in ``hub.dispatch``: the
store applies the row decisions (``hub.store.leases``) and dispatch the rest, and the store
imports nothing of dispatch.

One hub process at a time runs dispatch. It holds a lease row in PostgreSQL (``leases``:
holder, token, expires_at) that it renews every third of the lease time; a standby polls the
row and takes it over once it has expired. Every new holder gets a larger **fencing token**,
which every dispatch write carries and the store compares with the row in the same
transaction (``hub.store.dispatch_writes``): a former holder that was paused past its lease
can never assign, whatever its clock says. Clocks therefore only decide *when* a takeover
happens, never whether two processes can both write.

Two clocks are involved. The row's ``expires_at`` is on the hub's wall clock (the store's
clock), compared by whichever process reads it; a holder judges its own lease on a
monotonic clock from the moment it *asked* for the renewal, minus a safety margin, so it
stops acting before any other process can see the row expired (given clocks within the
margin of each other).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LeaseRow:
    """The lease as stored: its holder (None: never held), token and end (wall clock)."""

    holder: str | None
    token: int
    expires_at: float


class Verdict(enum.StrEnum):
    TAKE = "take"  # free or expired: a new term with the next token
    RENEW = "renew"  # ours and running: the same token, a later end
    WAIT = "wait"  # another process holds it until expires_at


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    row: LeaseRow  # what to write (TAKE, RENEW) or what was found (WAIT)

    @property
    def held_by(self) -> str | None:
        return self.row.holder


def decide(found: LeaseRow | None, me: str, now: float, ttl: float) -> Decision:
    """What ``me`` does with the lease row ``found`` (None: no row yet) at wall time ``now``.

    An expired lease is taken with a new token even by its last holder: that holder has
    stopped acting already (see :func:`step`), so it starts a new term and rebuilds.
    """
    if found is None or found.expires_at <= now:
        token = 1 if found is None else found.token + 1
        return Decision(Verdict.TAKE, LeaseRow(me, token, now + ttl))
    if found.holder == me:
        return Decision(Verdict.RENEW, LeaseRow(me, found.token, now + ttl))
    return Decision(Verdict.WAIT, found)


def released(found: LeaseRow, me: str, now: float) -> LeaseRow | None:
    """The row after ``me`` gives the lease up at ``now`` (ends it; the token stays, so the
    next holder's is larger), or None if ``me`` does not hold it."""
    if found.holder != me or found.expires_at <= now:
        return None
    return LeaseRow(me, found.token, now)


@dataclass(frozen=True, slots=True)
class Held:
    """This process's term: the token its writes carry, until when (monotonic) it may act."""

    token: int
    until: float


class Change(enum.StrEnum):
    GAINED = "gained"  # start dispatch with the new token
    KEPT = "kept"  # nothing to do
    LOST = "lost"  # stop dispatch now
    SWITCHED = "switched"  # lost and gained at once (a new term): stop, then start again
    NONE = "none"  # not holding, still not holding


@dataclass(frozen=True, slots=True)
class Step:
    held: Held | None
    change: Change


def step(
    held: Held | None,
    outcome: Decision | None,
    me: str,
    asked_at: float,
    now: float,
    ttl: float,
    margin: float,
) -> Step:
    """This process's term after one claim, on the monotonic clock.

    ``outcome`` is what the claim found and wrote (None: the store did not answer);
    ``asked_at`` is when the claim was sent, ``now`` when its answer (or failure) came.
    A holder whose renewal failed keeps acting only until its last term's ``until``.
    """
    if outcome is not None and outcome.verdict is not Verdict.WAIT and outcome.held_by == me:
        term = Held(outcome.row.token, asked_at + ttl - margin)
        if now >= term.until:  # the answer came too late to act on
            return Step(None, Change.LOST if held is not None else Change.NONE)
        if held is None:
            return Step(term, Change.GAINED)
        if held.token != outcome.row.token:
            return Step(term, Change.SWITCHED)
        return Step(term, Change.KEPT)
    if held is None:
        return Step(None, Change.NONE)
    if outcome is None and now < held.until:
        return Step(held, Change.KEPT)  # the store is away; the term still runs
    return Step(None, Change.LOST)


def next_claim_in(held: Held | None, now: float, ttl: float, poll: float) -> float:
    """Seconds until the next claim: a holder renews every third of the lease (and before
    its term ends), a standby polls every ``poll`` seconds."""
    if held is None:
        return poll
    return max(0.0, min(ttl / 3, held.until - now))
