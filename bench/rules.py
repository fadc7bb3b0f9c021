"""Rules engine benchmark: routing decisions per second at 10, 100, 1,000 and 10,000 rules.

For each size, the same compiled rules are evaluated two ways in the same run: with the
candidate index (what the hub does) and by a linear scan of every compiled predicate (the
baseline). A fresh evaluation context is built per message in both, as in the hub. Also
measured: compiling a 10,000-rule file, and the longest event-loop stall while the hot reloader
swaps it in (parse and compile run in a thread).

Usage: python bench/rules.py [--messages 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules.context import Context, CustomerFacts, MessageFacts, RuleInput
from rules.evaluate import evaluate, linear_scan
from rules.loader import load_rules
from rules.reload import RulesHolder, RulesWatcher

CHANNELS = ["email", "sms", "whatsapp", "fax", "webchat"]
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def vocabulary(rng: random.Random, size: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(5, 10))))
    return sorted(words)


def rules_file(count: int, rng: random.Random, words: list[str], inboxes: list[str]) -> str:
    """A realistic mix: per-inbox rules, keyword rules, tier rules, thresholds, a few globals."""
    lines = ["version: 1", "defaults: {queue: general}", "rules:"]
    for index in range(count):
        kind = index % 10
        if index < 3:
            when = f'matches(message.subject, "(?i)urgent|dringend|{rng.choice(words)}")'
        elif kind < 4:
            when = (
                f'inbox == "{rng.choice(inboxes)}" and contains_any(message.text, '
                f'["{rng.choice(words)}", "{rng.choice(words)}"])'
            )
        elif kind < 7:
            when = (
                f'contains_any(message.text, ["{rng.choice(words)}", "{rng.choice(words)}"])'
                f' and channel == "{rng.choice(CHANNELS)}"'
            )
        elif kind < 9:
            when = (
                f'customer.tier == "{rng.choice("ABC")}" and contains_any(message.subject, '
                f'["{rng.choice(words)}"])'
            )
        else:
            when = (
                f"customer.lifetime_value > {rng.randint(10_000, 1_000_000)} and "
                f'inbox == "{rng.choice(inboxes)}"'
            )
        lines += [
            f"  - name: rule-{index}",
            f"    when: '{when}'",
            f"    route: {{queue: q{index % 20}, priority: {rng.choice(['normal', 'high'])}}}",
            f"    instructions: [Instruction {index}]",
        ]
    return "\n".join(lines) + "\n"


def messages(
    count: int, rng: random.Random, words: list[str], inboxes: list[str]
) -> list[RuleInput]:
    return [
        RuleInput(
            channel=rng.choice(CHANNELS),
            inbox=rng.choice(inboxes),
            message=MessageFacts(
                subject=" ".join(rng.choice(words) for _ in range(4)),
                text=" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))),
            ),
            customer=CustomerFacts(
                known=True, tier=rng.choice("ABC"), lifetime_value=rng.uniform(0, 1_000_000)
            ),
        )
        for _ in range(count)
    ]


def rate(function, ruleset, inputs: list[RuleInput]) -> float:
    start = time.perf_counter()
    for facts in inputs:
        function(ruleset, Context(facts, NOW))
    return len(inputs) / (time.perf_counter() - start)


async def reload_stall(path: Path, holder: RulesHolder) -> tuple[float, float]:
    """Seconds the reload took, and the longest gap between 1 ms ticks of the loop meanwhile."""
    watcher = RulesWatcher(str(path), holder, queues=None, calendars=None)
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
    swapped = await watcher.reload()
    elapsed = time.perf_counter() - start
    done = True
    await task
    assert swapped
    return elapsed, longest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    words = vocabulary(rng, 20_000)
    inboxes = [f"shop-{i}" for i in range(1000)]
    inputs = messages(args.messages, rng, words, inboxes)
    print(
        f"# bench/rules.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}  "
        f"{args.messages} messages per figure"
    )
    print(
        f"{'rules':>7}{'indexed msg/s':>16}{'linear msg/s':>15}{'ratio':>8}{'candidates/msg':>16}"
    )
    text = ""
    for size in (10, 100, 1_000, 10_000):
        text = rules_file(size, rng, words, inboxes)
        ruleset = load_rules(text, f"bench-{size}.yaml")
        gc.collect()
        gc.freeze()  # as the hub does after loading rules: GC passes skip the rule objects
        linear_inputs = inputs if size <= 1_000 else inputs[: max(500, args.messages // 20)]
        for facts in inputs[:200]:  # same decisions, or the figure means nothing
            context = Context(facts, NOW)
            assert evaluate(ruleset, context).decision == linear_scan(ruleset, context)
        candidates = sum(len(ruleset.candidates(Context(f, NOW))) for f in inputs[:1000]) / 1000
        indexed = rate(lambda r, c: evaluate(r, c), ruleset, inputs)
        linear = rate(linear_scan, ruleset, linear_inputs)
        print(
            f"{size:>7}{indexed:>16,.0f}{linear:>15,.0f}{indexed / linear:>8.1f}{candidates:>16.1f}"
        )
    start = time.perf_counter()
    load_rules(text, "bench-10000.yaml")
    compile_seconds = time.perf_counter() - start
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
