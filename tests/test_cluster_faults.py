"""The fault suite: a real cluster (3 ``channelhub serve`` processes, a private Redis, a fresh
PostgreSQL database, HAProxy with round robin) under customer and agent traffic, with a node
killed by SIGKILL mid-way; the whole history is then checked (``tests/history.py``):

- no acknowledged inbound message missing, none stored twice;
- a conversation never held by two agents at once; no offer outstanding to two agents;
- no reply sent to the provider twice; every acknowledged reply sent;
- and work keeps flowing: every acknowledged message is answered and closed in the end.

Customers and agents both go through the balancer (round robin, no sticky sessions): agents'
sockets land on any node and their commands and frames cross nodes to and from the owner.
``pytest -m cluster`` runs this suite alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.cluster import AGENTS, Cluster, HubNode, running_cluster
from tests.cluster_workload import (
    AgentWorker,
    customers,
    login,
    provider_bodies,
    sms_channel,
)
from tests.conftest import AGENT_PASSWORD
from tests.fake_twilio import FakeTwilio, fake_twilio
from tests.history import History, violations

pytestmark = [pytest.mark.cluster, pytest.mark.integration]

PUBLIC = "https://hub.example.com"  # what Twilio signs over; the balancer is behind it
MESSAGES = 40
PER_SECOND = 10.0
SETTLE = 60.0  # seconds for the cluster to finish the work after the fault
# closes a kill -9 may leave unconfirmed: done at the owner, the answer lost with the socket
KILLED_IN_FLIGHT = 4


class Stalled(AssertionError):
    """Work left unfinished after a fault (liveness), as opposed to a safety violation."""


# Known bug (issue 17, open): when a node dies while the owner assigns a conversation to an
# agent whose socket was on it, the assignment can stay unknown to that agent after they
# reconnect, so the conversation stays assigned and unanswered (seen in about 1 run in 3 of
# these tests, never a safety violation). Safety is still checked and fails these tests; only
# this stall is tolerated until it is fixed.
STALL_KNOWN = pytest.mark.xfail(
    raises=Stalled,
    strict=False,
    reason="known: an assignment made as the agent's node dies can stay unseen by the agent",
)

Fault = Callable[[Cluster, FakeTwilio, History], Awaitable[None]]


async def _stored(cluster: Cluster) -> Counter[str]:
    rows = await cluster.query(
        "SELECT provider_id, count(*) AS n FROM messages WHERE direction = 'inbound' "
        "GROUP BY provider_id"
    )
    return Counter({str(row["provider_id"]): int(row["n"]) for row in rows})


async def _run(tmp_path: Path, fault: Fault) -> tuple[History, Cluster, list[AgentWorker]]:
    """Agents connect through the balancer (round robin, no sticky sessions), as in production."""
    history = History()
    async with (
        fake_twilio() as fake,
        running_cluster(tmp_path, [sms_channel(fake.url, PUBLIC)]) as cluster,
    ):

        async def balancer_url() -> str:
            return cluster.ws_url

        workers = [
            AgentWorker(
                agent,
                await login(cluster.session, cluster.url, agent, AGENT_PASSWORD),
                balancer_url,
                history,
            )
            for agent in AGENTS
        ]
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        try:
            traffic = asyncio.create_task(
                customers(cluster.session, cluster.url, PUBLIC, history, MESSAGES, PER_SECOND)
            )
            await fault(cluster, fake, history)
            await traffic
            try:
                await _settle(cluster, fake, history, workers)
            except Stalled as exc:
                stalled: Stalled | None = exc
            else:
                stalled = None
        finally:
            for worker in workers:
                await worker.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for worker in workers:
            worker.finish()
        stored = await _stored(cluster)
        problems = violations(history, stored, provider_bodies(fake.created))
        assert not problems, "\n".join(problems) + _trace(history) + cluster.logs()
        if stalled is not None:  # safe, but not everything got done
            raise stalled
        return history, cluster, workers


async def _settle(
    cluster: Cluster, fake: FakeTwilio, history: History, workers: list[AgentWorker]
) -> None:
    """Wait until every acknowledged message's conversation was closed by someone and every
    acknowledged reply reached the provider: nothing may be stuck after a fault."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        closed = set().union(*(worker.closed for worker in workers))
        sent = set(provider_bodies(fake.created))
        unsent = [r for r in history.acked_replies() if f"reply {r.client_id}" not in sent]
        acked = len(history.acked_inbound())
        # a close whose answer died with the agent's node is done but never confirmed to the
        # agent (its snapshot after the reconnect no longer holds it): the store is the judge
        # of what is closed, the agents' confirmations only show that work went through them
        if (
            acked == MESSAGES
            and len(closed) >= MESSAGES - KILLED_IN_FLIGHT
            and not unsent
            and await _closed_count(cluster) == MESSAGES  # one conversation per customer
        ):
            return
        await asyncio.sleep(0.2)
    closed = set().union(*(worker.closed for worker in workers))
    open_rows = await cluster.query(
        "SELECT id, status, assignee, queue FROM conversations WHERE status <> 'closed'"
    )
    raise Stalled(
        f"work stalled: {len(history.acked_inbound())}/{MESSAGES} acknowledged, "
        f"{len(closed)} closed, {len(fake.created)} replies at the provider; open: "
        + ", ".join(f"{row['id']} {row['status']} {row['assignee']}" for row in open_rows)
        + _trace(history)
        + cluster.logs()
    )


async def _closed_count(cluster: Cluster) -> int:
    """Closed conversations, when none is left open (else -1)."""
    rows = await cluster.query(
        "SELECT count(*) FILTER (WHERE status = 'closed') AS closed, "
        "count(*) FILTER (WHERE status <> 'closed') AS open FROM conversations"
    )
    return int(rows[0]["closed"]) if int(rows[0]["open"]) == 0 else -1


def _trace(history: History) -> str:
    return "\n--- history notes ---\n" + "\n".join(
        f"{at:.3f} {what}" for at, what in history.log[-60:]
    )


async def _until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


def _killed(history: History, node: HubNode, why: str) -> None:
    history.note(time.time(), f"kill -9 {node.name} (pid {node.pid}): {why}")
    node.kill()


@STALL_KNOWN
async def test_kill_9_of_the_dispatch_owner_mid_traffic(tmp_path: Path) -> None:
    """The owner dies with offers out and conversations held; a standby takes over the lease,
    rebuilds from PostgreSQL, and the agents (reconnected) get the waiting work again."""

    async def fault(cluster: Cluster, fake: FakeTwilio, history: History) -> None:
        await _until(lambda: len(history.acked_inbound()) >= MESSAGES // 3, "traffic flows")
        owner = await cluster.wait_owner()
        _killed(history, owner, "the dispatch owner")
        successor = await cluster.wait_owner(other_than=owner)
        history.note(time.time(), f"{successor.name} owns dispatch")

    history, _, workers = await _run(tmp_path, fault)
    assert sum(worker.connects for worker in workers) > len(workers)  # they did reconnect
    assert len(history.acked_replies()) >= MESSAGES


@STALL_KNOWN
async def test_kill_9_of_a_node_mid_send(tmp_path: Path) -> None:
    """The provider holds its answers; the node whose outbox claimed those replies dies with
    them in flight. Its claims lapse, another node takes the replies over and adopts the ones
    the provider already has: none is sent twice, every acknowledged one is sent."""

    async def fault(cluster: Cluster, fake: FakeTwilio, history: History) -> None:
        fake.hold_answers = asyncio.Event()
        await _until(lambda: len(fake.created) >= 3, "sends in flight at the provider")
        rows = await cluster.query(
            "SELECT claimed_by FROM outbox WHERE claimed_by IS NOT NULL AND status = 'pending'"
        )
        pids = Counter(int(str(row["claimed_by"]).split(":")[-2]) for row in rows)
        assert pids, "no claimed reply while the provider holds its answers"
        [(pid, _)] = pids.most_common(1)
        sender = next(node for node in cluster.nodes if node.alive and node.pid == pid)
        _killed(history, sender, f"claimed {pids[pid]} replies in flight")
        hold, fake.hold_answers = fake.hold_answers, None
        hold.set()

    history, _, _ = await _run(tmp_path, fault)
    assert any("claimed" in what for _, what in history.log)


@STALL_KNOWN
async def test_kill_9_of_a_node_holding_agents_sockets(tmp_path: Path) -> None:
    """Agents connect through the balancer (round robin: spread over the nodes); a node that
    is not the dispatch owner dies with agents' sockets on it. They reconnect through the
    balancer to the others and carry on with what they held."""

    async def fault(cluster: Cluster, fake: FakeTwilio, history: History) -> None:
        await _until(lambda: len(history.acked_inbound()) >= MESSAGES // 3, "traffic flows")
        owner = await cluster.wait_owner()
        others = [node for node in cluster.nodes if node is not owner and node.alive]
        held = {node.name: await cluster.agents_connected(node) for node in others}
        victim = max(others, key=lambda node: held[node.name])
        assert held[victim.name] > 0, f"no agent socket on a standby: {held}"
        _killed(history, victim, f"holds {held[victim.name]} agents' sockets")

    _, _, workers = await _run(tmp_path, fault)
    assert sum(worker.connects for worker in workers) > len(workers)
    # wherever its socket is, every agent gets work
    assert all(worker.offers for worker in workers), {w.agent: w.offers for w in workers}
