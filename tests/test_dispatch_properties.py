"""Property tests of the dispatch core: random event sequences, invariants after every step."""

from __future__ import annotations

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


@settings(max_examples=500, deadline=None)
@given(events, st.sampled_from(list(Strategy)))
def test_invariants_hold_under_any_sequence(
    steps: list[tuple[str, int, int]], strategy: Strategy
) -> None:
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
        check(dispatch, now)
