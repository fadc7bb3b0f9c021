"""The pure dispatch core, driven with a hand-held clock: no I/O, no sleeping."""

from __future__ import annotations

import pytest

from hub.dispatch.core import (
    Assign,
    DispatchCore,
    Moved,
    OverflowStep,
    Presence,
    Requeue,
    RevokeOffer,
    SendOffer,
    Strategy,
)
from hub.errors import Forbidden, InvalidState


def core(**agents: int) -> DispatchCore:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    for agent, capacity in agents.items():
        dispatch.add_agent(agent, capacity=capacity)
    return dispatch


def test_offer_goes_to_the_longest_idle_available_agent() -> None:
    dispatch = core(alice=2, bob=2)
    dispatch.connect("alice", now=10)
    dispatch.connect("bob", now=5)
    actions = dispatch.enqueue("c1", "general", "normal", queued_at=20, now=20)
    assert actions == [SendOffer("bob", "c1", 50)]


def test_accept_assigns_and_reports_waits() -> None:
    dispatch = core(alice=1)
    dispatch.connect("alice", now=0)
    dispatch.enqueue("c1", "general", "normal", queued_at=0, now=1)
    assert dispatch.accept("alice", "c1", now=4) == [Assign("alice", "c1", 4, 3)]
    assert dispatch.owner == {"c1": "alice"}
    with pytest.raises(InvalidState):
        dispatch.accept("alice", "c1", now=5)


def test_priority_then_age_orders_the_queue_and_capacity_is_respected() -> None:
    dispatch = core(alice=1)
    dispatch.enqueue("old", "general", "normal", queued_at=1, now=1)
    dispatch.enqueue("urgent", "general", "urgent", queued_at=5, now=5)
    dispatch.enqueue("older", "general", "normal", queued_at=0, now=5)
    assert dispatch.connect("alice", now=6) == [SendOffer("alice", "urgent", 36)]
    dispatch.accept("alice", "urgent", now=7)
    # full: nothing more until the conversation is released
    assert dispatch.tick(now=8) == []
    assert dispatch.release("alice", "urgent", now=9) == [SendOffer("alice", "older", 39)]


def test_decline_moves_on_and_cools_down() -> None:
    dispatch = core(alice=1, bob=1)
    dispatch.connect("alice", now=0)
    dispatch.connect("bob", now=1)
    assert dispatch.enqueue("c1", "general", "normal", 2, now=2) == [SendOffer("alice", "c1", 32)]
    assert dispatch.decline("alice", "c1", now=3) == [
        RevokeOffer("alice", "c1", "declined"),
        SendOffer("bob", "c1", 33),
    ]
    assert dispatch.decline("bob", "c1", now=4) == [RevokeOffer("bob", "c1", "declined")]
    # both declined: it waits until the first cooldown ends, then alice is asked again
    assert dispatch.next_deadline() == 123
    assert dispatch.tick(now=123) == [SendOffer("alice", "c1", 153)]


def test_offer_timeout_moves_on() -> None:
    dispatch = core(alice=1, bob=1)
    dispatch.connect("alice", now=0)
    dispatch.connect("bob", now=1)
    dispatch.enqueue("c1", "general", "normal", 2, now=2)
    assert dispatch.next_deadline() == 32
    assert dispatch.tick(now=31) == []
    assert dispatch.tick(now=32) == [
        RevokeOffer("alice", "c1", "timeout"),
        SendOffer("bob", "c1", 62),
    ]


def test_disconnect_keeps_conversations_for_the_grace_period() -> None:
    dispatch = core(alice=2, bob=2)
    dispatch.connect("alice", now=0)
    dispatch.enqueue("c1", "general", "high", queued_at=1, now=1)
    dispatch.accept("alice", "c1", now=2)
    assert dispatch.disconnect("alice", now=10) == []
    assert dispatch.next_deadline() == 70
    dispatch.connect("alice", now=30)  # back in time: still hers
    assert dispatch.tick(now=100) == []
    assert dispatch.owner["c1"] == "alice"

    dispatch.disconnect("alice", now=200)
    dispatch.connect("bob", now=201)
    actions = dispatch.tick(now=260)
    assert actions == [Requeue("alice", "c1", "disconnected")]
    # the shell persists the requeue, then the conversation waits again with its old age
    assert dispatch.requeued("c1", "general", "high", queued_at=1, now=261) == [
        SendOffer("bob", "c1", 291)
    ]


def test_two_tabs_count_as_one_presence() -> None:
    dispatch = core(alice=1)
    dispatch.connect("alice", now=0)
    dispatch.connect("alice", now=1)
    dispatch.disconnect("alice", now=2)
    assert dispatch.agents["alice"].presence is Presence.AVAILABLE
    dispatch.disconnect("alice", now=3)
    assert dispatch.agents["alice"].presence is Presence.OFFLINE


def test_away_withdraws_offers_and_stops_new_ones() -> None:
    dispatch = core(alice=1, bob=1)
    dispatch.connect("alice", now=0)
    dispatch.enqueue("c1", "general", "normal", 1, now=1)
    assert dispatch.set_presence("alice", Presence.AWAY, now=2) == [
        RevokeOffer("alice", "c1", "withdrawn")
    ]
    assert dispatch.connect("bob", now=3) == [SendOffer("bob", "c1", 33)]
    with pytest.raises(InvalidState):
        dispatch.set_presence("alice", Presence.OFFLINE, now=4)
    # busy: bob's open offer moves on to alice, who is back
    assert dispatch.set_presence("alice", Presence.AVAILABLE, now=5) == []
    assert dispatch.set_presence("bob", Presence.BUSY, now=6) == [
        RevokeOffer("bob", "c1", "withdrawn"),
        SendOffer("alice", "c1", 36),
    ]


def test_queues_an_agent_serves() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_agent("alice", capacity=3, queues=frozenset({"billing"}))
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("c1", "general", "normal", 1, now=1) == []
    assert dispatch.enqueue("c2", "billing", "normal", 2, now=2) == [SendOffer("alice", "c2", 32)]


def test_transfer_back_to_queue() -> None:
    dispatch = core(alice=1, bob=1)
    dispatch.connect("alice", now=0)
    dispatch.enqueue("c1", "general", "normal", 1, now=1)
    dispatch.accept("alice", "c1", now=2)
    with pytest.raises(Forbidden):
        dispatch.transfer_to_queue("bob", "c1", "billing", "normal", 1, now=3)
    dispatch.connect("bob", now=3)
    actions = dispatch.transfer_to_queue("alice", "c1", "general", "normal", 1, now=4)
    assert actions == [Requeue("alice", "c1", "transferred"), SendOffer("bob", "c1", 34)]


def test_restored_assignment_of_an_unknown_agent_is_requeued() -> None:
    dispatch = core(alice=1)
    assert dispatch.restore_assigned("c1", "mallory", now=0) == [
        Requeue("mallory", "c1", "unknown_agent")
    ]
    assert dispatch.restore_assigned("c2", "alice", now=0) == []
    assert dispatch.next_deadline() == 60  # alice is not connected: her grace runs


def test_skills_and_levels_pick_the_agent() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("de", strategy=Strategy.SKILL_LEVEL, skills=frozenset({"german"}))
    dispatch.add_agent("basic", capacity=2, skills={"german": 1})
    dispatch.add_agent("expert", capacity=2, skills={"german": 5, "billing": 2})
    dispatch.add_agent("english", capacity=2, skills={"english": 5})
    for agent in ("basic", "expert", "english"):
        dispatch.connect(agent, now=0)
    # queue skill german, decision skill billing: only the expert has both
    assert dispatch.enqueue("c1", "de", "normal", 1, now=1, skills=frozenset({"billing"})) == [
        SendOffer("expert", "c1", 31)
    ]
    # german only: the best level wins under the skill-level strategy
    assert dispatch.enqueue("c2", "de", "normal", 2, now=2) == [SendOffer("expert", "c2", 32)]
    # nobody has french: it waits
    assert dispatch.enqueue("c3", "de", "normal", 3, now=3, skills=frozenset({"french"})) == []


def test_per_channel_capacity_within_the_budget() -> None:
    dispatch = core()
    dispatch.add_agent("alice", capacity=3, channel_capacity={"webchat": 1})
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("c1", "general", "normal", 1, now=1, channel="webchat") == [
        SendOffer("alice", "c1", 31)
    ]
    assert dispatch.enqueue("c2", "general", "normal", 2, now=2, channel="webchat") == []
    assert dispatch.enqueue("c3", "general", "normal", 3, now=3, channel="email") == [
        SendOffer("alice", "c3", 33)
    ]
    dispatch.accept("alice", "c1", now=4)
    assert dispatch.release("alice", "c1", now=5) == [SendOffer("alice", "c2", 35)]


def test_round_robin_spreads_offers() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("rr", strategy=Strategy.ROUND_ROBIN)
    for agent in ("a", "b", "c"):
        dispatch.add_agent(agent, capacity=10)
        dispatch.connect(agent, now=0)
    offered = [
        action.agent
        for index in range(6)
        for action in dispatch.enqueue(f"r{index}", "rr", "normal", index, now=index)
    ]
    assert offered == ["a", "b", "c", "a", "b", "c"]


def test_least_occupied_prefers_the_emptier_agent() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("lo", strategy=Strategy.LEAST_OCCUPIED)
    dispatch.add_agent("a", capacity=4)
    dispatch.add_agent("b", capacity=4)
    dispatch.connect("a", now=0)
    dispatch.connect("b", now=0)
    picked = []
    for index, now in enumerate((1, 2, 3), start=1):
        (offer,) = dispatch.enqueue(f"x{index}", "lo", "normal", now, now=now)
        picked.append(offer.agent)
        dispatch.accept(offer.agent, f"x{index}", now=now)
    # a and b tie at first (a by id), then b is emptier, then a has been idle longer
    assert picked == ["a", "b", "a"]


def test_sticky_routing_waits_for_the_last_agent_then_widens() -> None:
    dispatch = DispatchCore(
        offer_timeout=30, disconnect_grace=60, decline_cooldown=120, sticky_wait=20
    )
    dispatch.add_agent("alice", capacity=2)
    dispatch.add_agent("bob", capacity=2)
    dispatch.connect("bob", now=0)
    assert dispatch.enqueue("c1", "general", "normal", 1, now=1, preferred_agent="alice") == []
    assert dispatch.next_deadline(now=1) == 21
    assert dispatch.connect("alice", now=5) == [SendOffer("alice", "c1", 35)]
    # alice declines: the rest of the window passes, then anyone may take it
    assert dispatch.decline("alice", "c1", now=6) == [RevokeOffer("alice", "c1", "declined")]
    assert dispatch.tick(now=20) == []
    assert dispatch.tick(now=21) == [SendOffer("bob", "c1", 51)]


def test_auto_accept_no_reply_requeue_and_wrap_up() -> None:
    dispatch = DispatchCore(
        offer_timeout=30, disconnect_grace=60, decline_cooldown=120, reply_timeout=120, wrap_up=10
    )
    dispatch.add_agent("alice", capacity=2, auto_accept=frozenset({"webchat"}))
    dispatch.add_agent("bob", capacity=2)
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("c1", "general", "normal", 1, now=1, channel="webchat") == [
        Assign("alice", "c1", 0, 0)
    ]
    assert dispatch.next_deadline(now=1) == 121
    assert dispatch.connect("bob", now=2) == []
    # alice never answers: back to the queue, and not to her again right away
    assert dispatch.tick(now=121) == [Requeue("alice", "c1", "no_reply")]
    assert dispatch.owner == {}
    assert dispatch.requeued(
        "c1", "general", "normal", 1, now=121, channel="webchat", avoid="alice"
    ) == [SendOffer("bob", "c1", 151)]
    dispatch.accept("bob", "c1", now=122)
    dispatch.replied("bob", "c1")
    assert dispatch.tick(now=500) == []  # answered: no requeue
    dispatch.release("bob", "c1", now=501)
    # wrap-up: bob gets nothing for 10 s after closing; alice (no auto-accept for "") is offered
    assert dispatch.enqueue("c2", "general", "normal", 502, now=502) == [
        SendOffer("alice", "c2", 532)
    ]
    assert dispatch.next_deadline(now=502) == 511


def test_transfer_to_a_colleague_asks_them_first() -> None:
    dispatch = core(alice=2, bob=2, carol=2)
    for agent in ("alice", "bob", "carol"):
        dispatch.connect(agent, now=0)
    (offer,) = dispatch.enqueue("c1", "general", "normal", 1, now=1)
    dispatch.accept(offer.agent, "c1", now=2)
    giver = offer.agent
    taker = "carol" if giver != "carol" else "bob"
    actions = dispatch.transfer_to_queue(giver, "c1", "general", "normal", 1, now=3, to_agent=taker)
    assert actions == [Requeue(giver, "c1", "transferred"), SendOffer(taker, "c1", 33)]
    # the colleague lets it time out: then anyone but the giver may have it
    dispatch.tick(now=33)
    third = ({"alice", "bob", "carol"} - {giver, taker}).pop()
    assert dispatch.waiting["c1"].offer == (third, 63)


def test_overflow_widens_to_another_queue_then_drops_a_skill() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("premium", overflow=(OverflowStep(60, to="general"),))
    dispatch.add_queue("general", overflow=(OverflowStep(120, drop_skills=frozenset({"german"})),))
    dispatch.add_agent("anna", capacity=2, queues=frozenset({"general"}), skills={"german": 2})
    dispatch.add_agent("tom", capacity=2, queues=frozenset({"general"}))
    dispatch.connect("tom", now=0)
    # the rules asked for german; nobody serves premium
    assert dispatch.enqueue("c1", "premium", "high", 0, now=0, skills=frozenset({"german"})) == []
    assert dispatch.next_deadline(now=0) == 60
    # after a minute it may go to general, but still needs german: nobody there speaks it
    assert dispatch.tick(now=60) == [Moved("c1", "general", ("german",), "overflow", "high")]
    assert dispatch.next_deadline(now=60) == 120
    # after two minutes the german requirement is dropped: tom takes it
    assert dispatch.tick(now=120) == [
        Moved("c1", "general", (), "overflow", "high"),
        SendOffer("tom", "c1", 150),
    ]


def test_a_full_queue_sends_new_work_elsewhere() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("hotline", max_waiting=2, when_full="callback")
    dispatch.add_queue("callback")
    assert dispatch.enqueue("c1", "hotline", "normal", 1, now=1) == []
    assert dispatch.enqueue("c2", "hotline", "normal", 2, now=2) == []
    assert dispatch.enqueue("c3", "hotline", "normal", 3, now=3) == [
        Moved("c3", "callback", (), "full")
    ]
    assert dispatch.waiting["c3"].queue == "callback"


def test_aging_raises_the_priority_of_long_waiting_work() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("general", overflow=(OverflowStep(300, priority="urgent"),))
    dispatch.add_agent("alice", capacity=1)
    dispatch.enqueue("old-low", "general", "low", 0, now=0)
    dispatch.enqueue("new-high", "general", "high", 290, now=290)
    assert dispatch.tick(now=300) == [Moved("old-low", "general", (), "overflow", "urgent")]
    # after five minutes the low-priority customer is served before the fresh high one
    assert dispatch.connect("alice", now=301) == [SendOffer("alice", "old-low", 331)]


def test_round_robin_is_fair_over_a_simulated_day() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("general", strategy=Strategy.ROUND_ROBIN)
    agents = [f"a{i}" for i in range(7)]
    for agent in agents:
        dispatch.add_agent(agent, capacity=3)
        dispatch.connect(agent, now=0)
    handled = dict.fromkeys(agents, 0)
    now = 0.0
    for index in range(2_000):  # a conversation every ~40 s for a day, each taking a while
        now += 43.2
        for action in dispatch.enqueue(f"c{index}", "general", "normal", now, now):
            assert isinstance(action, SendOffer)
            dispatch.accept(action.agent, action.conversation_id, now)
            handled[action.agent] += 1
        for agent in agents:  # conversations end after about two arrivals
            for conversation_id in sorted(dispatch.agents[agent].assigned)[:-1]:
                dispatch.release(agent, conversation_id, now)
    assert max(handled.values()) - min(handled.values()) <= 1


def test_closed_queues_keep_work_until_they_open() -> None:
    dispatch = DispatchCore(
        offer_timeout=30,
        disconnect_grace=60,
        decline_cooldown=120,
        queue_open=lambda queue, now: queue != "office" or 100 <= now < 200,
    )
    dispatch.add_queue("office")
    dispatch.add_agent("alice", capacity=2)
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("c1", "office", "normal", 10, now=10) == []
    assert dispatch.enqueue("c2", "general", "normal", 11, now=11) == [SendOffer("alice", "c2", 41)]
    assert dispatch.next_deadline(now=11) == 41
    assert dispatch.tick(now=99) == [RevokeOffer("alice", "c2", "timeout")]
    assert dispatch.tick(now=100) == [SendOffer("alice", "c1", 130)]


def test_a_voice_call_blocks_everything_else() -> None:
    dispatch = core(alice=5)
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("chat", "general", "normal", 1, now=1, channel="webchat") == [
        SendOffer("alice", "chat", 31)
    ]
    # the call waits while alice has a chat open, however much budget is left
    assert dispatch.enqueue("call", "general", "urgent", 2, now=2, channel="voice") == []
    dispatch.accept("alice", "chat", now=3)
    assert dispatch.release("alice", "chat", now=4) == [SendOffer("alice", "call", 34)]
    dispatch.accept("alice", "call", now=5)
    # during the call nothing else comes
    assert dispatch.enqueue("mail", "general", "normal", 6, now=6, channel="email") == []
    assert dispatch.release("alice", "call", now=7) == [SendOffer("alice", "mail", 37)]


def test_queue_state_shows_sla_at_risk() -> None:
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("general", sla=100)
    dispatch.enqueue("c1", "general", "normal", 0, now=0)  # the queue's SLA
    dispatch.enqueue("c2", "general", "normal", 10, now=10, sla=1000)  # the rules' SLA wins
    risk = [q["sla_at_risk"] for q in dispatch.queue_state(now=79)["queues"]]
    assert risk == [0]
    state = dispatch.queue_state(now=80)
    assert state["queues"] == [
        {"name": "general", "waiting": 2, "offered": 0, "oldest_wait": 80.0, "sla_at_risk": 1}
    ]


def test_overflow_applies_to_work_whose_step_fell_due_while_it_was_offered() -> None:
    """The deadline heap drops the overflow moment of offered work when it reaches the top;
    the withdrawal (decline, timeout, away) must schedule it again."""
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    dispatch.add_queue("general", overflow=(OverflowStep(20, to="spill"),))
    dispatch.add_queue("spill")
    dispatch.add_agent("alice", capacity=1, queues=frozenset({"general"}))
    dispatch.connect("alice", now=0)
    assert dispatch.enqueue("c1", "general", "normal", queued_at=0, now=0) == [
        SendOffer("alice", "c1", 30)
    ]
    assert dispatch.next_deadline(25) == 30  # offered work does not overflow
    dispatch.decline("alice", "c1", now=25)
    assert dispatch.next_deadline(25) == 20  # due at once
    assert dispatch.tick(25) == [Moved("c1", "spill", (), "overflow", "normal")]
    assert dispatch.waiting_in("spill") == 1 and dispatch.waiting_in("general") == 0


def test_a_tick_with_much_waiting_work_touches_only_what_is_due() -> None:
    dispatch = core(alice=1)
    for index in range(5_000):
        dispatch.enqueue(f"c{index}", "general", "normal", queued_at=index, now=index)
    dispatch.connect("alice", now=10_000)  # offered c0 until 10,030
    assert dispatch.next_deadline(10_000) == 10_030
    calls = 0
    live = dispatch.deadlines._live

    def counting(entry: tuple[float, int, int, str, str]) -> bool:
        nonlocal calls
        calls += 1
        return live(entry)

    dispatch.deadlines._live = counting
    actions = dispatch.tick(10_030)
    assert actions == [RevokeOffer("alice", "c0", "timeout"), SendOffer("alice", "c1", 10_060)]
    assert calls < 10  # the old tick walked all 5,000


def test_an_agent_who_was_full_takes_new_work_once_there_is_room() -> None:
    """New work is matched only against available agents with room (kept as load changes):
    room made by a close or a timeout counts at once."""
    dispatch = core(alice=1)
    dispatch.connect("alice", now=0)
    dispatch.enqueue("c1", "general", "normal", queued_at=0, now=0)
    dispatch.accept("alice", "c1", now=1)
    assert dispatch.release("alice", "c1", now=2) == []  # nothing waits
    assert dispatch.enqueue("c2", "general", "normal", queued_at=3, now=3) == [
        SendOffer("alice", "c2", 33)
    ]
    assert dispatch.tick(now=33) == [RevokeOffer("alice", "c2", "timeout")]
    assert dispatch.enqueue("c3", "general", "normal", queued_at=34, now=34) == [
        SendOffer("alice", "c3", 64)
    ]
