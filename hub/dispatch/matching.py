"""How the dispatch core matches work and agents: new or freed work against the agents ready
for its queue, freed agents against the heads of the queues they serve, and the offer,
assignment and withdrawal that follow. Pure, like the rest of the core.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from typing import Any

from hub.dispatch.model import (
    DEFAULT_RULES,
    Action,
    AgentState,
    Assign,
    RevokeOffer,
    SendOffer,
    Strategy,
    Waiting,
)
from hub.dispatch.state import DECLINED, OFFER, REPLY, CoreState


class Matching(CoreState):
    """Matching and offering on top of :class:`CoreState`."""

    def _match_conversations(self, conversation_ids: list[str], now: float) -> list[Action]:
        """Find agents for these waiting conversations (highest priority first) among the free
        agents serving their queue. Work that was waiting before had no eligible agent, and
        nothing freed one."""
        pending = sorted(
            (self.waiting[c] for c in set(conversation_ids) if c in self.waiting),
            key=Waiting.sort_key,
        )
        if not pending:
            return []
        actions: list[Action] = []
        for waiting in pending:
            if waiting.offer is not None:
                continue
            if waiting.preferred is not None and waiting.preferred[1] > now:
                # sticky: while the window lasts, only the customer's last agent is asked
                state = self.agents[waiting.preferred[0]]
                eligible = (
                    [state]
                    if self._free(state, now) and self._eligible(state, waiting, now)
                    else []
                )
            elif not self.is_open(waiting.queue, now):
                continue
            else:
                # the pool holds only available agents with room who serve the queue; what is
                # left to check depends on this conversation (an offer given in this loop may
                # have filled someone: room_for looks at the load)
                skills, channel, declined = waiting.skills, waiting.channel, waiting.declined_until
                eligible = [
                    state
                    for state in self._ready_for(waiting.queue)
                    if state.wrap_up_until <= now
                    and state.room_for(channel)
                    and (not skills or state.has_skills(skills))
                    and (not declined or declined.get(state.id, 0.0) <= now)
                ]
            if eligible:
                actions.append(self._give(min(eligible, key=self._ranking(waiting)), waiting, now))
        return actions

    def _match_agents(self, states: list[AgentState], now: float) -> list[Action]:
        """Give agents who just freed up the most urgent waiting work they can take: they are
        its only new candidates, so each walks its queues' heads until it is full."""
        actions: list[Action] = []
        for state in {state.id: state for state in states}.values():  # once each, in order
            while self._free(state, now):
                # the most urgent work it can take: the best of each queue's first it can take
                best: tuple[int, float, str] | None = None
                for queue in state.queues or list(self.order):
                    if not self.is_open(queue, now):
                        continue
                    for key in self.order.get(queue, ()):
                        if best is not None and key >= best:
                            break  # nothing more urgent further down this queue
                        if self._takes(state, self.waiting[key[2]], now):
                            best = key
                            break
                if best is None:
                    break
                actions.append(self._give(state, self.waiting[best[2]], now))
        return actions

    def _takes(self, state: AgentState, waiting: Waiting, now: float) -> bool:
        """Whether ``state`` may be offered ``waiting`` now (sticky work only by its agent)."""
        if waiting.offer is not None or not self._eligible(state, waiting, now):
            return False
        return (
            waiting.preferred is None
            or waiting.preferred[1] <= now
            or waiting.preferred[0] == state.id
        )

    def _give(self, state: AgentState, waiting: Waiting, now: float) -> Action:
        """Offer ``waiting`` to ``state`` (or assign it, with auto-accept)."""
        state.offered_count += 1
        state.idle_since = now
        if waiting.channel in state.auto_accept:
            return self._assign(state, waiting, now)
        expires_at = now + self.offer_timeout
        waiting.offer = (state.id, expires_at)
        self.figures.offer(waiting.queue, 1)
        self.deadlines.push(expires_at, OFFER, waiting.conversation_id)
        self._unorder(waiting)  # only unoffered work stands in the order lists
        state.offers.add(waiting.conversation_id)
        self._ready_changed(state)
        state.channels[waiting.conversation_id] = waiting.channel
        return SendOffer(state.id, waiting.conversation_id, expires_at)

    def _assign(self, state: AgentState, waiting: Waiting, now: float) -> Assign:
        conversation_id = waiting.conversation_id
        del self.waiting[conversation_id]
        self.figures.left(waiting)
        if waiting.offer is not None:
            self.figures.offer(waiting.queue, -1)
        self._unorder(waiting)
        state.offers.discard(conversation_id)
        state.assigned.add(conversation_id)
        self._ready_changed(state)
        state.channels[conversation_id] = waiting.channel
        self.owner[conversation_id] = state.id
        if self.reply_timeout is not None:
            self.reply_due[conversation_id] = now + self.reply_timeout
            self.deadlines.push(now + self.reply_timeout, REPLY, conversation_id)
        offered_at = waiting.offer[1] - self.offer_timeout if waiting.offer else now
        return Assign(
            state.id,
            conversation_id,
            queue_wait=max(0.0, now - waiting.queued_at),
            offer_wait=max(0.0, now - offered_at),
        )

    def _withdraw(
        self, state: AgentState, conversation_id: str, reason: str, now: float, *, cooldown: bool
    ) -> list[Action]:
        waiting = self.waiting[conversation_id]
        waiting.offer = None
        self.figures.offer(waiting.queue, -1)
        bisect.insort(self.order.setdefault(waiting.queue, []), waiting.sort_key())
        state.offers.discard(conversation_id)
        self._ready_changed(state)
        state.channels.pop(conversation_id, None)
        if cooldown:
            waiting.declined_until[state.id] = now + self.decline_cooldown
            self.deadlines.push(now + self.decline_cooldown, DECLINED, conversation_id, state.id)
        self._schedule_overflow(waiting)  # unoffered again: its overflow steps apply
        return [RevokeOffer(state.id, conversation_id, reason)]

    def _ranking(self, waiting: Waiting) -> Callable[[AgentState], tuple[Any, ...]]:
        strategy = self.queues.get(waiting.queue, DEFAULT_RULES).strategy
        if strategy is Strategy.LEAST_OCCUPIED:
            return lambda s: (s.load / s.capacity, s.idle_since, s.id)
        if strategy is Strategy.ROUND_ROBIN:
            return lambda s: (s.offered_count, s.id)
        if strategy is Strategy.SKILL_LEVEL:
            return lambda s: (-s.skill_level(waiting.skills), s.idle_since, s.id)
        return lambda s: (s.idle_since, s.id)
