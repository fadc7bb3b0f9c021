"""Rules engine benchmark: routing decisions per second at 10, 100, 1,000 and 10,000 rules.

What is timed is what the hub does per inbound message once the customer is known:
``RulesDecider(envelope, customer)`` (hub/routing.py), i.e. turning a real :class:`Envelope` and
the customer's facts into the evaluation context, evaluating the current rules and building the
:class:`Decision`. The baseline does the same preparation and then scans every compiled rule in
file order (``rules.evaluate.linear_scan``), in the same run, on the same compiled rules; both
are timed in alternating rounds and the median round is reported. Before any timing the two
must give identical decisions (and errors) for the checked messages, or the run fails.

The workload is meant not to flatter the index: message words follow a Zipf law (s = 1.1) over
a 20,000-word vocabulary (some words with umlauts, some punctuation), and rule keywords are
drawn from the head of the same distribution, so common words recur in many rules and in most
messages. Also measured: compiling the 10,000-rule file and the longest event-loop stall while
the hot reloader swaps it in.

Usage: python bench/rules_engine.py [--quick] [--profile] [--messages N] [--rounds N] [--seed N]
(``--quick``, for ``make bench``: 2,000 messages, one round, no hot-reload figure.)
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import itertools
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connectors.shared.workers import die_with_parent
from hub.customers.context import CustomerRef
from hub.envelope import Attachment, Direction, Envelope, Identity
from hub.routing import RulesDecider
from hub.settings import BusinessHoursSettings
from rules.compiler import RuleSet
from rules.context import CustomerFacts
from rules.evaluate import evaluate, linear_scan
from rules.loader import load_rules
from rules.reload import RulesHolder, RulesWatcher

CHANNELS = ["email", "sms", "whatsapp", "fax", "webchat"]
# Thursday 2026-11-26 10:00 in Berlin: business hours are open
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC).timestamp()
ZIPF_S = 1.1
VOCABULARY = 20_000
# rule keywords come from the head of the message distribution, past the first ranks (nobody
# routes on "the" or "and"): rank 10 is in ~25% of messages, rank 100 in ~3%
KEYWORD_RANKS = (10, 2_000)
INBOXES = [f"shop-{i}" for i in range(1000)]
CALENDARS = {
    "support": BusinessHoursSettings.model_validate(
        {
            "weekly": {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")},
            "holidays": [date(2026, 12, 24)],
        }
    )
}
SIZES = (10, 100, 1_000, 10_000)


class Zipf:
    """Ranks 0..n-1 drawn with probability proportional to 1 / (rank + 1) ** s."""

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self.rng = rng
        self.cumulative = list(itertools.accumulate(1 / (rank + 1) ** s for rank in range(n)))

    def rank(self, low: int = 0, high: int | None = None) -> int:
        """A rank in [low, high), with the Zipf weights restricted to that range."""
        end = len(self.cumulative) if high is None else high
        base = self.cumulative[low - 1] if low else 0.0
        point = base + self.rng.random() * (self.cumulative[end - 1] - base)
        return min(bisect.bisect_left(self.cumulative, point), end - 1)


def vocabulary(rng: random.Random, size: int) -> list[str]:
    """Made-up words, shortest first (frequent words are short); ~8% carry an umlaut or ß."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        word = "".join(rng.choice(letters) for _ in range(rng.randint(3, 10)))
        if rng.random() < 0.08:
            position = rng.randrange(len(word))
            word = word[:position] + rng.choice("äöüß") + word[position + 1 :]
        words.add(word)
    return sorted(words, key=lambda word: (len(word), word))


def rules_file(count: int, rng: random.Random, zipf: Zipf, words: list[str]) -> str:
    """A realistic mix: the example file's rules, per-inbox keyword rules, keyword + channel
    rules, tier + subject-keyword rules, lifetime-value thresholds, and a few regex-only rules."""

    def keyword() -> str:
        return words[zipf.rank(*KEYWORD_RANKS)]

    lines = [
        "version: 1",
        "defaults: {queue: general}",
        'templates: {after-hours: "We answer from 8:00 on the next business day."}',
        "rules:",
    ]
    fixed = [
        ('customer.tier == "A"', "{queue: premium, priority: high, sla: 1h}"),
        ('customer.overdue_invoices > 0 and channel in ["email", "fax"]', None),
        ('matches(message.text, "(?i)beschwerde|reklamation|complaint")', "{queue: complaints}"),
        (f'matches(message.subject, "(?i)urgent|dringend|{keyword()}")', "{priority: urgent}"),
        ('not business_hours("support")', None),
    ]
    for index in range(count):
        route: str | None = f"{{queue: q{index % 20}, priority: {rng.choice(['normal', 'high'])}}}"
        if index < min(len(fixed), max(3, count // 100)):
            when, route = fixed[index]
        elif index % 50 == 7:  # a sprinkling of regex-only rules (one RE2 set per field)
            when = regex_rule(index // 50, keyword)
        else:
            kind = index % 10
            if kind < 4:
                when = (
                    f'inbox == "{rng.choice(INBOXES)}" and contains_any(message.text, '
                    f'["{keyword()}", "{keyword()}"])'
                )
            elif kind < 7:
                when = (
                    f'contains_any(message.text, ["{keyword()}", "{keyword()}"])'
                    f' and channel == "{rng.choice(CHANNELS)}"'
                )
            elif kind < 9:
                when = (
                    f'customer.tier == "{rng.choice("ABC")}" and contains_any(message.subject, '
                    f'["{keyword()}"])'
                )
            else:
                when = (
                    f"customer.lifetime_value > {rng.randint(10_000, 1_000_000)} and "
                    f'inbox == "{rng.choice(INBOXES)}"'
                )
        lines += [f"  - name: rule-{index}", f"    when: '{when}'"]
        if route:
            lines.append(f"    route: {route}")
        lines.append(f"    instructions: [Instruction {index}]")
        if index % 97 == 3:
            lines.append("    tags: [flagged]")
        if when.startswith("not business_hours"):
            lines.append("    auto_reply: after-hours")
    return "\n".join(lines) + "\n"


def regex_rule(number: int, keyword: Callable[[], str]) -> str:
    """What admins use ``matches`` for: word alternatives, a keyword and a number, prefixes."""
    kind = number % 4
    if kind == 0:
        pattern = f"(?i)\\\\b(?:{keyword()}|{keyword()}|{keyword()})\\\\b"
    elif kind == 1:
        pattern = f"(?i)\\\\b{keyword()}\\\\s*#?\\\\d{{4,}}"
    elif kind == 2:
        pattern = f"(?i)(?:{keyword()}|{keyword()})[ -]?(?:nr|no)?\\\\.?\\\\s*\\\\d{{5,}}"
    else:
        return f'matches(message.subject, "^(?:RE|AW|FW|WG): .*{keyword()}")'
    return f'matches(message.text, "{pattern}")'


def sentence(rng: random.Random, zipf: Zipf, words: list[str], count: int) -> str:
    chosen = [words[zipf.rank()] for _ in range(count)]
    chosen[0] = chosen[0].capitalize()
    if rng.random() < 0.2:  # an order or invoice number after a word
        position = rng.randrange(len(chosen))
        chosen[position] += f" {rng.choice(['', '#', 'nr. '])}{rng.randint(1000, 999_999)}"
    text = ""
    for position, word in enumerate(chosen):
        text += word
        if position == len(chosen) - 1:
            text += rng.choice(".!?")
        else:
            text += rng.choices([" ", ", ", ". ", " - ", " "], [70, 10, 8, 2, 10])[0]
    return text


def workload(
    count: int, rng: random.Random, zipf: Zipf, words: list[str]
) -> list[tuple[Envelope, CustomerRef]]:
    """Inbound envelopes as connectors build them, and the customers ingest resolved."""
    items = []
    for number in range(count):
        channel = rng.choice(CHANNELS)
        has_subject = channel in ("email", "fax")
        attachments = ()
        if channel == "email" and rng.random() < 0.2:
            attachments = (
                Attachment(
                    name="invoice.pdf",
                    content_type="application/pdf",
                    size=1000,
                    sha256="0" * 64,
                    blob_ref="blob",
                ),
            )
        envelope = Envelope(
            channel=channel,
            inbox=rng.choice(INBOXES),
            direction=Direction.INBOUND,
            idempotency_key=f"bench-{number}",
            sender=Identity(kind="email", address=f"customer{number % 5000}@example.com"),
            recipients=(Identity(kind="email", address="support@shop.example"),),
            received_at=NOW,
            subject=(rng.choice(["", "", "RE: ", "AW: "]) + sentence(rng, zipf, words, 4))
            if has_subject
            else None,
            text=sentence(rng, zipf, words, rng.randint(8, 40)),
            attachments=attachments,
        )
        known = rng.random() < 0.8
        facts = CustomerFacts(
            known=known,
            id=f"c{number % 5000}",
            name="Customer" if known else "",
            tier=rng.choice("ABC") if known else "",
            lifetime_value=rng.uniform(0, 1_000_000) if known else 0.0,
            orders_12m=rng.randint(0, 30) if known else 0,
            payment_punctuality=rng.random() if known else 0.0,
            overdue_invoices=rng.choice([0, 0, 0, 1, 2]) if known else 0,
        )
        items.append((envelope, CustomerRef(facts.id, known, facts.name or None, facts)))
    return items


Item = tuple[Envelope, CustomerRef]


def timed(
    function: Callable[[Envelope, CustomerRef], Any], items: Sequence[Item]
) -> tuple[float, float]:
    """Messages per second of wall-clock time and of this process's CPU time."""
    start, cpu = time.perf_counter(), time.process_time()
    for envelope, customer in items:
        function(envelope, customer)
    return len(items) / (time.perf_counter() - start), len(items) / (time.process_time() - cpu)


def stages(decider: RulesDecider, ruleset: RuleSet, items: Sequence[Item]) -> str:
    """Where a message's time goes, in microseconds of CPU (best of 5 runs of each stage; each
    stage repeats the ones before it, and the difference is shown)."""

    def prepare() -> None:
        for envelope, customer in items:
            decider.prepare(envelope, customer)

    def split() -> None:
        for envelope, customer in items:
            context = decider.prepare(envelope, customer)
            context.tokens(envelope.text)
            if envelope.subject:
                context.tokens(envelope.subject)

    def index() -> None:
        for envelope, customer in items:
            ruleset.index.candidates(decider.prepare(envelope, customer))

    def decide() -> None:
        for envelope, customer in items:
            decider(envelope, customer)

    results = []
    for stage in (prepare, split, index, decide):
        runs = []
        for _ in range(5):
            start = time.process_time()
            stage()
            runs.append(time.process_time() - start)
        results.append(min(runs) / len(items) * 1e6)
    prepared, tokens, indexed, decided = results
    return (
        f"prepare {prepared:.1f} + split words {tokens - prepared:.1f} + index lookups "
        f"{indexed - tokens:.1f} + residuals and decision {decided - indexed:.1f} "
        f"= {decided:.1f} us/msg"
    )


def check_same(decider: RulesDecider, ruleset: RuleSet, items: Sequence[Item]) -> None:
    """The fast engine and the linear scan agree on every checked message, or no figure."""
    for envelope, customer in items:
        context = decider.prepare(envelope, customer)
        fast = evaluate(ruleset, context)
        slow = evaluate(ruleset, decider.prepare(envelope, customer), explain=True)
        assert fast.decision == slow.decision == decider(envelope, customer), envelope
        assert fast.errors == slow.errors, envelope


async def reload_stall(path: Path, holder: RulesHolder) -> tuple[float, float]:
    """Seconds the reload took, and the longest gap between 1 ms ticks of the loop meanwhile."""
    watcher = RulesWatcher(
        str(path), holder, queues=None, calendars=None, worker_setup=die_with_parent
    )
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    try:
        swapped = await watcher.reload()
    finally:
        done = True
        await task
        await watcher.stop()
    elapsed = time.perf_counter() - start
    assert swapped
    return elapsed, longest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="small counts (make bench): < 30 s")
    parser.add_argument("--messages", type=int, help="messages per timed round (default 20,000)")
    parser.add_argument("--rounds", type=int, help="timed rounds per figure (default 5)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print where the time goes")
    args = parser.parse_args()
    count = args.messages or (2_000 if args.quick else 20_000)
    rounds = args.rounds or (1 if args.quick else 5)
    rng = random.Random(args.seed)
    words = vocabulary(rng, VOCABULARY)
    zipf = Zipf(VOCABULARY, ZIPF_S, rng)
    items = workload(count, rng, zipf, words)
    print(
        f"# bench/rules_engine.py{' --quick' if args.quick else ''}  {time.strftime('%Y-%m-%d')}  "
        f"{platform.node()}  {os.cpu_count()} cpus  python {platform.python_version()}  "
        f"{count} messages x {rounds} rounds (median round); Zipf s={ZIPF_S}"
    )
    print(
        f"# keywords: Zipf ranks {KEYWORD_RANKS[0]}-{KEYWORD_RANKS[1]} of {VOCABULARY:,} words; "
        "msg/s wall clock (CPU time in brackets); ratio = engine / linear scan, same run"
    )
    print(
        f"{'rules':>7}{'engine msg/s':>22}{'linear msg/s':>14}{'ratio':>8}"
        f"{'vs aim':>8}{'cands/msg':>11}{'fired/msg':>11}"
    )
    text = ""
    compile_seconds = 0.0
    for size in SIZES:
        text = rules_file(size, rng, zipf, words)
        start = time.perf_counter()
        ruleset = load_rules(text, f"bench-{size}.yaml")
        compile_seconds = time.perf_counter() - start
        gc.collect()
        gc.freeze()  # as the hub does after loading rules: GC passes skip the rule objects
        decider = RulesDecider(
            RulesHolder(ruleset), timezone="Europe/Berlin", calendars=CALENDARS, clock=lambda: NOW
        )

        def scan(envelope: Envelope, customer: CustomerRef, decider: RulesDecider = decider) -> Any:
            return linear_scan(decider.holder.current, decider.prepare(envelope, customer))

        # the linear scan of 10,000 rules runs at a few hundred msg/s: time it on fewer messages
        share = max(1, size // 100)
        linear_items = items[: max(100, count // share)]
        checked = items if size <= 1_000 and not args.quick else linear_items[:500]
        check_same(decider, ruleset, checked)
        sample = items[:1000]
        candidates = sum(len(ruleset.candidates(decider.prepare(e, c))) for e, c in sample) / len(
            sample
        )
        fired = sum(len(decider(e, c).rules) for e, c in sample) / len(sample)
        fast_rates, fast_cpu, linear_rates = [], [], []
        for _ in range(rounds):  # alternating, so both see the same load
            wall, cpu = timed(decider, items)
            fast_rates.append(wall)
            fast_cpu.append(cpu)
            linear_rates.append(timed(scan, linear_items)[0])
        fast = statistics.median(fast_rates)
        linear = statistics.median(linear_rates)
        shown = f"{fast:,.0f} ({statistics.median(fast_cpu):,.0f})"
        print(
            f"{size:>7}{shown:>22}{linear:>14,.0f}{fast / linear:>8.1f}"
            f"{fast / 100_000:>8.2f}{candidates:>11.1f}{fired:>11.1f}",
            flush=True,
        )
        if args.profile:
            print(f"{'':>7}  {stages(decider, ruleset, items[:5_000])}", flush=True)
    if args.quick:  # the reload figure takes another two compiles of the big file
        print(
            f"# 10,000-rule file ({len(text) / 1e6:.1f} MB): load+compile {compile_seconds:.2f} s"
        )
        return
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "rules.yaml"
        path.write_text(text)
        holder = RulesHolder(load_rules("version: 1\n", str(path)))
        elapsed, stall = asyncio.run(reload_stall(path, holder))
    print(
        f"# 10,000-rule file ({len(text) / 1e6:.1f} MB): load+compile {compile_seconds:.2f} s; "
        f"hot reload {elapsed:.2f} s with the longest event-loop stall {stall * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
