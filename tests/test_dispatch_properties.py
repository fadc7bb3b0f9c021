"""Property tests of the dispatch core: random event sequences, invariants after every step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.dispatch.core import DispatchCore, OverflowStep, Presence, Strategy
from hub.errors import HubError

AGENTS = {
    "a": {"capacity": 2, "skills": {"german": 3}, "channel_capacity": {"webchat": 1}},
    "b": {"capacity": 3, "skills": {"german": 1, "billing": 2}, "channel_capacity": {}},
    "c": {"capacity": 1, "skills": {}, "channel_capacity": {"email": 1}},
}
CHANNELS = ("webchat", "email", "voice")
SKILL_SETS = (frozenset(), frozenset({"german"}), frozenset({"billing"}))

KINDS = [
    "connect",
    "disconnect",
    "away",
    "back",
    "enqueue",
    "enqueue",
    "enqueue",
    "accept",
    "decline",
    "release",
    "tick",
]
events = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 2), st.integers(0, 60)),
    max_size=40,
)


def build(strategy: Strategy) -> DispatchCore:
    dispatch = DispatchCore(
        offer_timeout=10,
        disconnect_grace=15,
        decline_cooldown=20,
        sticky_wait=5,
        reply_timeout=40,
        wrap_up=3,
        # the spill queue keeps office hours: open half of every 100 s
        queue_open=lambda queue, now: queue != "spill" or now % 100 < 50,
    )
    dispatch.add_queue(
        "general",
        strategy=strategy,
        overflow=(
            OverflowStep(20, drop_skills=frozenset({"billing"}), priority="high"),
            OverflowStep(40, to="spill"),
        ),
        max_waiting=6,
        when_full="spill",
        sla=30,  # a first-response target: the board counts work at risk
    )
    dispatch.add_queue("spill", strategy=strategy)
    for name, options in AGENTS.items():
        dispatch.add_agent(
            name,
            capacity=options["capacity"],
            skills=options["skills"],
            channel_capacity=options["channel_capacity"],
        )
    return dispatch


def check(dispatch: DispatchCore, now: float) -> None:
    held: dict[str, str] = {}
    for state in dispatch.agents.values():
        for conversation in state.assigned | state.offers:
            assert conversation not in held, f"{conversation} held twice"
            held[conversation] = state.id
        assert state.load <= state.capacity
        for channel, limit in state.channel_capacity.items():
            assert sum(1 for c in state.channels.values() if c == channel) <= limit
        assert set(state.channels) == state.assigned | state.offers
        if "voice" in state.channels.values():  # a call blocks everything else
            assert len(state.channels) == 1
    for conversation, agent in dispatch.owner.items():
        assert conversation in dispatch.agents[agent].assigned
        assert conversation not in dispatch.waiting
    for waiting in dispatch.waiting.values():
        if waiting.offer is not None:
            assert waiting.conversation_id in dispatch.agents[waiting.offer[0]].offers
            continue
        # nothing waits while an agent who could take it is free
        for state in dispatch.agents.values():
            sticky = (
                waiting.preferred is not None
                and waiting.preferred[1] > now
                and waiting.preferred[0] != state.id
            )
            free = (
                state.presence is Presence.AVAILABLE
                and state.connections
                and state.wrap_up_until <= now
            )
            assert not (free and not sticky and dispatch._eligible(state, waiting, now)), (
                f"{waiting.conversation_id} waits although {state.id} could take it"
            )


def play(
    steps: list[tuple[str, int, int]],
    strategy: Strategy,
    after_step: Callable[[DispatchCore, str, float], None],
) -> None:
    """Run a random event sequence; ``after_step`` checks the core after every event."""
    dispatch = build(strategy)
    names = sorted(AGENTS)
    now = 0.0
    created = 0
    for kind, pick, delta in steps:
        agent = names[pick % len(names)]
        try:
            if kind == "connect":
                dispatch.connect(agent, now)
            elif kind == "disconnect" and dispatch.agents[agent].connections:
                dispatch.disconnect(agent, now)
            elif kind == "away" and dispatch.agents[agent].connections:
                dispatch.set_presence(agent, (Presence.AWAY, Presence.BUSY)[delta % 2], now)
            elif kind == "back" and dispatch.agents[agent].connections:
                dispatch.set_presence(agent, Presence.AVAILABLE, now)
            elif kind == "enqueue":
                created += 1
                dispatch.enqueue(
                    f"c{created}",
                    "general",
                    ("low", "normal", "urgent")[delta % 3],
                    now,
                    now,
                    channel=CHANNELS[pick],
                    skills=SKILL_SETS[delta % 3],
                    preferred_agent=names[delta % 3] if delta % 5 == 0 else None,
                )
            elif kind in ("accept", "decline"):
                offers = sorted(dispatch.agents[agent].offers)
                if offers:
                    target = offers[pick % len(offers)]
                    (dispatch.accept if kind == "accept" else dispatch.decline)(agent, target, now)
            elif kind == "release":
                assigned = sorted(dispatch.agents[agent].assigned)
                if assigned:
                    dispatch.release(agent, assigned[pick % len(assigned)], now)
            elif kind == "tick":
                now += delta
                for action in dispatch.tick(now):
                    if type(action).__name__ == "Requeue":  # the shell would requeue it
                        dispatch.requeued(
                            action.conversation_id,
                            "general",
                            "normal",
                            now,
                            now,
                            avoid=action.agent,
                        )
        except HubError:
            pass  # an event that does not fit the state is refused, which is fine
        after_step(dispatch, kind, now)


@settings(max_examples=500, deadline=None)
@given(events, st.sampled_from(list(Strategy)))
def test_invariants_hold_under_any_sequence(
    steps: list[tuple[str, int, int]], strategy: Strategy
) -> None:
    play(steps, strategy, lambda dispatch, _kind, now: check(dispatch, now))


def every_deadline(dispatch: DispatchCore, now: float) -> float | None:
    """The next deadline found the slow way: every pending moment of all state, scanned."""
    moments: list[float] = []
    for waiting in dispatch.waiting.values():
        if waiting.offer is not None:
            moments.append(waiting.offer[1])
        moments += waiting.declined_until.values()
        if waiting.preferred is not None:
            moments.append(waiting.preferred[1])
        steps = dispatch.queues[waiting.queue].overflow
        if waiting.offer is None and waiting.steps_done < len(steps):
            moments.append(waiting.queued_at + steps[waiting.steps_done].after)
    moments += dispatch.reply_due.values()
    for state in dispatch.agents.values():
        if state.offline_since is not None and state.connections == 0:
            moments.append(state.offline_since + dispatch.disconnect_grace)
        if state.wrap_up_until:
            moments.append(state.wrap_up_until)
    if dispatch.queue_open is not None and any(dispatch.order.values()):
        moments.append(now + 60.0)
    return min(moments, default=None)


def every_queue_figure(dispatch: DispatchCore, now: float) -> list[dict[str, Any]]:
    """The live board's queue figures found the slow way: a walk over all waiting work."""
    rows = {
        name: {"name": name, "waiting": 0, "offered": 0, "oldest_wait": 0.0, "sla_at_risk": 0}
        for name in dispatch.queues
    }
    for waiting in dispatch.waiting.values():
        row = rows[waiting.queue]
        row["waiting"] += 1
        row["offered"] += waiting.offer is not None
        row["oldest_wait"] = max(row["oldest_wait"], round(now - waiting.queued_at, 1))
        if waiting.sla is not None and now - waiting.queued_at >= 0.8 * waiting.sla:
            row["sla_at_risk"] += 1
    return sorted(rows.values(), key=lambda row: str(row["name"]))


@settings(max_examples=500, deadline=None)
@given(events, st.sampled_from(list(Strategy)))
def test_next_deadline_and_queue_figures_match_a_scan_of_all_state(
    steps: list[tuple[str, int, int]], strategy: Strategy
) -> None:
    """The deadline heap (lazy deletion) answers what a scan of all state would, after any
    event; a tick leaves nothing due behind (it acted on everything at or before now); the
    queue figures kept as work moves equal a walk over all waiting work; the pools new work is
    matched against hold exactly the available agents with room."""

    def same(dispatch: DispatchCore, kind: str, now: float) -> None:
        expected = every_deadline(dispatch, now)
        assert dispatch.next_deadline(now) == expected
        if kind == "tick":
            assert expected is None or expected > now, "a due moment survived the tick"
        assert dispatch.queue_state(now)["queues"] == every_queue_figure(dispatch, now)
        available = {
            name
            for name, state in dispatch.agents.items()
            if state.presence is Presence.AVAILABLE
            and state.connections
            and state.load < state.capacity
        }
        for queue in ("general", "spill"):  # the agents new work is matched against
            assert {state.id for state in dispatch._ready_for(queue)} == available
        for queue in ("general", "spill"):
            assert dispatch.waiting_in(queue) == sum(
                1 for waiting in dispatch.waiting.values() if waiting.queue == queue
            )

    play(steps, strategy, same)
