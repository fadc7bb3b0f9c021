"""A rules revision accepted on one node reaches every node: they load it from the store."""

from __future__ import annotations

import asyncio
import logging

from hub.store.store import Store
from rules.errors import ConfigError
from rules.loader import load_rules
from rules.reload import RulesHolder

log = logging.getLogger(__name__)


class RulesFollower:
    def __init__(
        self,
        store: Store,
        holder: RulesHolder,
        *,
        queues: set[str],
        calendars: set[str],
    ) -> None:
        self.store = store
        self.holder = holder
        self.queues = queues
        self.calendars = calendars

    async def load(self, digest: str) -> bool:
        """Route with revision ``digest`` (stored by the node that accepted it); True if it
        was swapped in."""
        if digest == self.holder.current.digest:
            return False
        revision = await self.store.rules_revision(digest)
        if revision is None:
            log.error("rules revision %s announced but not stored; keeping the rules", digest)
            return False
        try:
            ruleset = await asyncio.to_thread(
                load_rules,
                revision.text,
                revision.path,
                queues=self.queues,
                calendars=self.calendars,
            )
        except ConfigError as exc:
            log.error("rules revision %s does not load here: %s", digest, exc.problems)
            return False
        self.holder.current = ruleset
        log.info("rules revision %s from another node now routes here", digest)
        return True
