"""Rules replay benchmark: ``rules diff`` over 100,000 stored messages against the rules engine.

The messages are the Zipf workload of ``bench/rules_engine.py`` (real envelopes, customers with
tiers and values), stored in a SQLite file as ingest stores them: a ``messages`` row and a
``routing_records`` row each (what the rules saw, encoded by ``hub.ingest.record``). The current
rules are that benchmark's file at ``--rules`` rules; the proposed file moves one queue, raises a
priority, rewrites some instructions, drops some rules and adds an after-hours auto-reply.

Timed in alternating rounds (median of ``--rounds``), in one process, on the same messages:

- **engine**: what the hub does per inbound message, ``RulesDecider(envelope, customer)``
  (context from the envelope and facts, the current rules, the decision): decisions/s; the
  same with the proposed rules for reference (the baseline of the aim is the current rules);
- **replay**: ``hub.replay.diff.Replay.add`` over the stored messages as read back (context from
  the record, the proposed rules, the tally), then its summary: messages/s. The messages were
  routed by the current rules, so their recorded rules give the current side's decision (as in
  ``rules diff --against CURRENT`` after a week of traffic);
- **replay, both evaluated**: the same against a copy of the current rules with another digest
  (as ``--against`` an older revision): both rule sets evaluate every message. Both replays must
  give the same counts, or the run fails;
- **rules diff end to end**: what the command and the endpoint run, ``hub.replay.load.Reader``
  streaming pages of messages from the SQLite file (one query, records decoded) into the replay,
  then the summary: messages/s.

Rates are per second of this process's CPU time (the machine is shared, and wall-clock rates
swing with its load; SQLite's thread is part of the process), the engine's and the replays'
each after a warm-up over the first 1,000 messages. The aim (issue
20): replay at least 50% of the engine's decisions/s.

Usage: python bench/rules_diff.py [--quick] [--messages N] [--rules N] [--rounds N] [--seed N]
(``--quick``, for ``make bench``: 10,000 messages, 100 rules, one round.)
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rules_engine import CALENDARS, NOW, VOCABULARY, ZIPF_S, Zipf, rules_file, vocabulary, workload

from hub.envelope import encode_envelope
from hub.ingest.record import encode, record_of
from hub.replay.diff import Replay, Replayable, Summary
from hub.replay.load import Period, Reader
from hub.routing import RulesDecider
from hub.store.schema import conversations, customers, messages, routing_records
from hub.store.store import Store
from rules.compiler import RuleSet
from rules.loader import load_rules
from rules.reload import RulesHolder

WEEK = 7 * 86_400.0


def proposed(text: str) -> str:
    """The current file with the changes an admin makes: a queue moved, a priority raised,
    instructions rewritten, a rule dropped here and there, an after-hours auto-reply added."""
    lines = text.splitlines()
    out: list[str] = []
    skip = False
    for line in lines:
        if line.startswith("  - name: rule-"):
            number = int(line.split("-")[-1])
            skip = number % 37 == 11  # dropped rules
        if skip:
            continue
        line = line.replace("queue: q3,", "queue: q19,").replace(
            "priority: normal}", "priority: high}" if len(out) % 3 == 0 else "priority: normal}"
        )
        if "[Instruction 1" in line:
            line = line.replace("[Instruction 1", "[Revised instruction 1")
        out.append(line)
    out += [
        "  - name: after-hours-reply",
        "    when: 'not business_hours(\"support\")'",
        "    auto_reply: after-hours",
    ]
    return "\n".join(out) + "\n"


async def store_history(url: str, items: list[Any], ruleset: RuleSet, rng: random.Random) -> None:
    """The messages as ingest stores them, with what the rules saw and decided when each
    arrived (bulk inserts)."""
    moment = [NOW]
    decider = RulesDecider(
        RulesHolder(ruleset),
        timezone="Europe/Berlin",
        calendars=CALENDARS,
        clock=lambda: moment[0],
    )
    store = Store(url, clock=lambda: NOW)
    await store.start()
    try:
        people = sorted({customer.id for _, customer in items})
        async with store.engine.begin() as connection:
            await connection.execute(
                customers.insert(),
                [{"id": id_, "kind": "customer", "name": id_, "created_at": NOW} for id_ in people],
            )
        batch_c: list[dict[str, Any]] = []
        batch_m: list[dict[str, Any]] = []
        batch_r: list[dict[str, Any]] = []

        async def flush() -> None:
            async with store.engine.begin() as connection:
                await connection.execute(conversations.insert(), batch_c)
                await connection.execute(messages.insert(), batch_m)
                await connection.execute(routing_records.insert(), batch_r)
            batch_c.clear()
            batch_m.clear()
            batch_r.clear()

        for number, (envelope, customer) in enumerate(items):
            at = moment[0] = NOW - WEEK * (len(items) - number) / len(items) * 0.99
            decision = decider(envelope, customer)
            message_id = f"m{number:09d}"
            conversation_id = f"c{number:09d}"
            created = rng.random() < 0.6
            batch_c.append(
                {
                    "id": conversation_id,
                    "customer_id": customer.id,
                    "channel": envelope.channel,
                    "inbox": envelope.inbox,
                    "thread_key": None,
                    "status": "closed",
                    "queue": decision.queue,
                    "priority": str(decision.priority),
                    "created_at": at,
                    "updated_at": at,
                }
            )
            batch_m.append(
                {
                    "id": message_id,
                    "conversation_id": conversation_id,
                    "kind": "message",
                    "direction": "inbound",
                    "channel": envelope.channel,
                    "inbox": envelope.inbox,
                    "idempotency_key": envelope.idempotency_key,
                    "text": envelope.text,
                    "subject": envelope.subject,
                    "envelope": encode_envelope(envelope).decode(),
                    "rules": list(decision.rules),
                    "created_at": at,
                }
            )
            assert customer.facts is not None
            record = record_of(envelope, customer.facts, decision, decided_at=at, created=created)
            batch_r.append(
                {
                    "message_id": message_id,
                    "customer_id": customer.id,
                    "decided_at": at,
                    "data": encode(record),
                }
            )
            if len(batch_m) >= 5_000:
                await flush()
        if batch_m:
            await flush()
    finally:
        await store.close()


async def end_to_end(
    url: str, current: RuleSet, proposal: RuleSet, decider: RulesDecider
) -> tuple[Summary, float]:
    """``rules diff`` over the stored week, and its CPU seconds (store opened before)."""
    store = Store(url, clock=lambda: NOW)
    await store.start()
    try:
        start = time.process_time()
        replay = Replay(
            current, proposal, zone=ZoneInfo("Europe/Berlin"), open_at=decider.business_hours
        )
        async for page in Reader(Period(NOW - WEEK, NOW)).pages(store):
            replay.add(page)
        summary = replay.summary()
        return summary, time.process_time() - start
    finally:
        await store.close()


async def read_back(url: str) -> tuple[list[Replayable], float]:
    """The stored messages as ``rules diff`` reads them, and the CPU seconds the reading took
    (SQLite's thread included; the store opened and migrated before, as in a running hub)."""
    store = Store(url, clock=lambda: NOW)
    await store.start()
    try:
        start = time.perf_counter()
        found = [
            item async for page in Reader(Period(NOW - WEEK, NOW)).pages(store) for item in page
        ]
        return found, time.perf_counter() - start
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts (make bench)")
    parser.add_argument("--messages", type=int, help="stored messages (default 100,000)")
    parser.add_argument("--rules", type=int, help="rules in the file (default 1,000)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count = args.messages or (10_000 if args.quick else 100_000)
    size = args.rules or (100 if args.quick else 1_000)
    rounds = args.rounds or (1 if args.quick else 3)
    rng = random.Random(args.seed)
    words = vocabulary(rng, VOCABULARY)
    zipf = Zipf(VOCABULARY, ZIPF_S, rng)
    current_text = rules_file(size, rng, zipf, words)
    current = load_rules(current_text, "current.yaml")
    proposal: RuleSet = load_rules(proposed(current_text), "proposed.yaml")
    decider = RulesDecider(
        RulesHolder(current), timezone="Europe/Berlin", calendars=CALENDARS, clock=lambda: NOW
    )
    print(f"generating {count:,} messages, {size:,} rules ...", flush=True)
    items = workload(count, rng, zipf, words)
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{folder}/bench.db"
        start = time.perf_counter()
        asyncio.run(store_history(url, items, current, rng))
        print(f"stored in {time.perf_counter() - start:.1f} s", flush=True)
        proposed_decider = RulesDecider(
            RulesHolder(proposal), timezone="Europe/Berlin", calendars=CALENDARS, clock=lambda: NOW
        )
        for envelope, customer in items[:1_000]:
            proposed_decider(envelope, customer)
        proposed_rates: list[float] = []
        engine_rates: list[float] = []
        replay_rates: list[float] = []
        both_rates: list[float] = []
        twin = load_rules(current_text + "# the same rules, another digest\n", "twin.yaml")
        read_rates: list[float] = []
        summary: Summary | None = None
        for envelope, customer in items[:1_000]:  # warm-up: the engine's decision caches
            decider(envelope, customer)
        for _ in range(rounds):
            start = time.process_time()
            for envelope, customer in items:
                decider(envelope, customer)
            engine_rates.append(count / (time.process_time() - start))

            start = time.process_time()
            for envelope, customer in items:
                proposed_decider(envelope, customer)
            proposed_rates.append(count / (time.process_time() - start))

            stored, _ = asyncio.run(read_back(url))
            ended, seconds = asyncio.run(end_to_end(url, current, proposal, decider))
            read_rates.append(count / seconds)
            assert ended.messages == count
            assert len(stored) == count, len(stored)

            Replay(
                current, proposal, zone=ZoneInfo("Europe/Berlin"), open_at=decider.business_hours
            ).add(stored[:1_000])  # warm-up
            start = time.process_time()
            replay = Replay(
                current,
                proposal,
                zone=ZoneInfo("Europe/Berlin"),
                open_at=decider.business_hours,
            )
            replay.add(stored)
            summary = replay.summary()
            replay_rates.append(count / (time.process_time() - start))

            start = time.process_time()
            evaluated = Replay(
                twin, proposal, zone=ZoneInfo("Europe/Berlin"), open_at=decider.business_hours
            )
            evaluated.add(stored)
            again = evaluated.summary()
            both_rates.append(count / (time.process_time() - start))
            assert (again.changed, again.queues, again.priorities, again.newly_firing) == (
                summary.changed,
                summary.queues,
                summary.priorities,
                summary.newly_firing,
            )
    assert summary is not None and summary.messages == count
    engine = statistics.median(engine_rates)
    replayed = statistics.median(replay_rates)
    evaluated_rate = statistics.median(both_rates)
    both = statistics.median(read_rates)
    print(
        f"python {platform.python_version()}, {count:,} messages, {size:,} rules, "
        f"{rounds} round(s), median"
    )
    print(f"{'figure (per CPU second)':44} {'msg/s':>10} {'vs engine':>10}")
    print(f"{'engine: RulesDecider(envelope, customer)':44} {engine:>10,.0f} {1:>10.2f}")
    on_proposed = statistics.median(proposed_rates)
    print(
        f"{'engine with the proposed rules':44} {on_proposed:>10,.0f} {on_proposed / engine:>10.2f}"
    )
    print(
        f"{'replay: recorded + proposed, tally, summary':44} {replayed:>10,.0f} "
        f"{replayed / engine:>10.2f}"
    )
    print(
        f"{'replay, both rule sets evaluated':44} {evaluated_rate:>10,.0f} "
        f"{evaluated_rate / engine:>10.2f}"
    )
    print(f"{'read + replay (rules diff end to end)':44} {both:>10,.0f} {both / engine:>10.2f}")
    print(
        f"changed {summary.changed:,}, queue moves "
        f"{sum(m.messages for m in summary.queues if m.old_queue != m.new_queue):,}, "
        f"auto-replies {summary.auto_replies.old:,} -> {summary.auto_replies.new:,}, "
        f"examples {len(summary.examples)}"
    )
    for label, rate in (("replay", replayed), ("both evaluated", evaluated_rate)):
        aim = "met" if rate / engine >= 0.5 else "NOT met"
        print(f"aim (replay >= 50% of the engine's decisions/s), {label}: {aim}")


if __name__ == "__main__":
    main()
