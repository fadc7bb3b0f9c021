"""The fault suite's checker finds each violation it is meant to find (hand-made histories)."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.history import (
    History,
    Inbound,
    Interval,
    Reply,
    held_twice,
    lost_or_doubled_inbound,
    offered_twice,
    replies_sent_wrongly,
    violations,
)


def _history() -> History:
    history = History()
    history.inbound["SM1"] = Inbound("SM1", 1.0, 1.1)
    history.inbound["SM2"] = Inbound("SM2", 1.0, None)  # never acknowledged
    history.holds = [Interval("alice", "c1", 2.0, 3.0), Interval("bob", "c1", 3.5, 4.0)]
    history.offers = [Interval("alice", "c1", 1.5, 1.9), Interval("bob", "c1", 3.1, 3.4)]
    history.replies["alice-c1"] = Reply("alice", "c1", "alice-c1", 2.5, 2.6, "m1")
    history.replies["bob-c1"] = Reply("bob", "c1", "bob-c1", 3.6, None)  # no ack
    return history


def test_a_clean_history_passes() -> None:
    stored = Counter({"SM1": 1})
    assert violations(_history(), stored, ["reply alice-c1"]) == []


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (Counter(), ["inbound SM1 acknowledged at 1.100 but not stored"]),
        (Counter({"SM1": 1, "SM2": 2}), ["inbound SM2 stored 2 times"]),
    ],
)
def test_inbound_lost_or_stored_twice(stored: Counter[str], expected: list[str]) -> None:
    assert lost_or_doubled_inbound(_history(), stored) == expected


def test_a_conversation_held_by_two_agents_at_once() -> None:
    history = _history()
    history.holds.append(Interval("carol", "c1", 3.9, 5.0))
    [problem] = held_twice(history)
    assert "bob [3.500, 4.000] and carol [3.900, 5.000]" in problem
    # the same agent twice, or touching intervals, are not two holders at once
    history.holds[-1] = Interval("bob", "c1", 3.9, 5.0)
    history.holds.append(Interval("dave", "c1", 5.0, 6.0))
    assert held_twice(history) == []


def test_an_offer_outstanding_to_two_agents() -> None:
    history = _history()
    history.offers.append(Interval("carol", "c1", 1.8, 2.0))
    assert offered_twice(history) == [
        "conversation c1 offered to alice [1.500, 1.900] and carol [1.800, 2.000] at once"
    ]


@pytest.mark.parametrize(
    ("bodies", "expected"),
    [
        (["reply alice-c1", "reply alice-c1"], ["reply alice-c1 sent to the provider 2 times"]),
        ([], ["reply alice-c1 by alice acknowledged at 2.600 never sent"]),
        (
            ["reply alice-c1", "reply mallory-c9"],
            ["the provider got a reply nobody sent: mallory-c9"],
        ),
        # a reply never acknowledged may or may not have been sent: both are fine
        (["reply alice-c1", "reply bob-c1"], []),
    ],
)
def test_replies_sent_twice_or_never(bodies: list[str], expected: list[str]) -> None:
    assert replies_sent_wrongly(_history(), bodies) == expected
