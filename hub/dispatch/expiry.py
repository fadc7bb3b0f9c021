"""What the dispatch core does when time passes: offers, cooldowns, sticky windows, wrap-ups,
grace periods and reply deadlines that are due, and the overflow steps of waiting work. Only
what the deadline heap says is due is looked at. Pure, like the rest of the core.
"""

from __future__ import annotations

import bisect

from hub.dispatch.matching import Matching
from hub.dispatch.model import (
    _PRIORITIES,
    DEFAULT_RULES,
    Action,
    AgentState,
    Moved,
    Requeue,
    Waiting,
)
from hub.dispatch.state import OVERFLOW, REPLY
from rules.decision import Priority


class Expiry(Matching):
    """Deadlines and overflow on top of :class:`Matching`."""

    def tick(self, now: float) -> list[Action]:
        """Expire offers, cooldowns, sticky windows, wrap-ups and grace periods that are due,
        and match whatever that freed. Only what is due is looked at (the deadline heap)."""
        actions: list[Action] = []
        conversations: list[str] = []
        freed: list[AgentState] = []
        due_waiting: set[str] = set()
        due_agents: set[str] = set()
        due_replies: list[str] = []
        for _, _, kind, key, _ in self.deadlines.due(now):
            if kind <= OVERFLOW:
                due_waiting.add(key)
            elif kind == REPLY:
                due_replies.append(key)
            else:
                due_agents.add(key)
        # in the order the work started waiting, as if walking all of it
        for waiting in sorted(
            (self.waiting[c] for c in due_waiting if c in self.waiting), key=lambda w: w.seq
        ):
            expired = [a for a, until in waiting.declined_until.items() if until <= now]
            for agent in expired:
                del waiting.declined_until[agent]
            changed = bool(expired)
            if waiting.offer is not None and waiting.offer[1] <= now:
                state = self._agent(waiting.offer[0])
                actions += self._withdraw(
                    state, waiting.conversation_id, "timeout", now, cooldown=True
                )
                freed.append(state)
                changed = True
            if waiting.preferred is not None and waiting.preferred[1] <= now:
                waiting.preferred = None
                changed = True
            if waiting.offer is None:
                moved = self._overflow(waiting, now)
                actions += moved
                changed = changed or bool(moved)
            if changed:
                conversations.append(waiting.conversation_id)
        for agent in sorted(due_agents, key=self._agent_rank.__getitem__):
            state = self.agents[agent]
            if (
                state.offline_since is not None
                and state.connections == 0
                and state.offline_since + self.disconnect_grace <= now
            ):
                state.offline_since = None
                for conversation_id in sorted(state.assigned):
                    self._drop(state, conversation_id)
                    actions.append(Requeue(state.id, conversation_id, "disconnected"))
            if state.wrap_up_until and state.wrap_up_until <= now:
                state.wrap_up_until = 0.0
                freed.append(state)
        for conversation_id in due_replies:
            due = self.reply_due.get(conversation_id)
            if due is not None and due <= now:  # a grace requeue above may have dropped it
                holder = self._agent(self.owner[conversation_id])
                self._drop(holder, conversation_id)
                actions.append(Requeue(holder.id, conversation_id, "no_reply"))
                freed.append(holder)
        if self.queue_open is not None:
            for queue in list(self.order):
                if not self.is_open(queue, now):
                    self.closed.add(queue)
                elif queue in self.closed:  # it just opened: its waiting work may go now
                    self.closed.discard(queue)
                    conversations += [key[2] for key in self.order[queue]]
        actions += self._match_conversations(conversations, now)
        return actions + self._match_agents(freed, now)

    def next_deadline(self, now: float | None = None) -> float | None:
        """When :meth:`tick` next has something to do, or None (O(log n) amortized)."""
        deadline = self.deadlines.first()
        if self.queue_open is not None and now is not None and any(self.order.values()):
            # look again for queues opening, once a minute
            deadline = now + 60.0 if deadline is None else min(deadline, now + 60.0)
        return deadline

    def _overflow(self, waiting: Waiting, now: float) -> list[Action]:
        """Apply the overflow steps of its queue that are due (moving on to another queue may
        make that queue's own steps due too; a cycle stops after a few hops)."""
        actions: list[Action] = []
        for _ in range(8):
            steps = self.queues.get(waiting.queue, DEFAULT_RULES).overflow
            if waiting.steps_done >= len(steps):
                break
            step = steps[waiting.steps_done]
            if waiting.queued_at + step.after > now:
                break
            waiting.steps_done += 1
            raised = Priority(step.priority).rank if step.priority else waiting.rank
            if (step.to is not None and step.to != waiting.queue) or raised > waiting.rank:
                self._unorder(waiting)  # its place in the order changes
                if step.to is not None and step.to != waiting.queue:
                    self.figures.moved(waiting, step.to)
                    waiting.steps_done = 0
                waiting.rank = max(waiting.rank, raised)
                bisect.insort(self.order.setdefault(waiting.queue, []), waiting.sort_key())
            waiting.dropped |= step.drop_skills
            self._set_skills(waiting)
            actions.append(
                Moved(
                    waiting.conversation_id,
                    waiting.queue,
                    tuple(sorted(waiting.skills)),
                    "overflow",
                    _PRIORITIES[waiting.rank],
                )
            )
        if actions:
            self._schedule_overflow(waiting)
        return actions
