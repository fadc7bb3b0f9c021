"""The dispatch core as hub.yaml configures it: timers, queues (with their hours) and agents."""

from __future__ import annotations

from hub.dispatch.core import DispatchCore, OverflowStep, Strategy
from hub.dispatch.hours import queue_hours
from hub.settings import HubSettings


def configured_core(settings: HubSettings) -> DispatchCore:
    """A core with every configured queue and agent, no work and nobody connected yet."""
    options = settings.dispatch
    core = DispatchCore(
        offer_timeout=options.offer_timeout,
        disconnect_grace=options.disconnect_grace,
        decline_cooldown=options.decline_cooldown,
        sticky_wait=options.sticky_wait,
        reply_timeout=options.reply_timeout,
        wrap_up=options.wrap_up,
        queue_open=queue_hours(settings),
    )
    for queue in settings.queues:
        core.add_queue(
            queue.name,
            strategy=Strategy(queue.strategy),
            skills=frozenset(queue.skills),
            overflow=tuple(
                OverflowStep(step.after, step.to, frozenset(step.drop_skills), step.priority)
                for step in queue.overflow
            ),
            max_waiting=queue.max_waiting,
            when_full=queue.when_full,
            sla=queue.sla,
        )
    for agent in settings.agents:
        core.add_agent(
            agent.id,
            capacity=agent.max_conversations,
            queues=frozenset(agent.queues),
            skills=dict(agent.skills),
            channel_capacity=dict(agent.capacity),
            auto_accept=frozenset(agent.auto_accept),
        )
    return core
