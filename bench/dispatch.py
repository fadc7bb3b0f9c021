"""Dispatch decisions per second: the pure core against a plain heapq pop, same run.

Sets up Q queues, A agents (each serving 5 queues, capacity 10) and W waiting conversations,
then measures how fast the core hands out work: every step accepts one open offer and closes
one conversation, which frees capacity and makes the core decide the next offer. Baseline: a
heapq of the same W (priority, age) items, popped. Run for several agent counts to see whether
decisions stay flat as agents grow. Usage: python bench/dispatch.py [--waiting 10000]
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.dispatch.core import DispatchCore, SendOffer

PRIORITIES = ("low", "normal", "high", "urgent")


def core_rate(agents: int, queues: int, waiting: int, steps: int, budget: float) -> float:
    rng = random.Random(1)
    dispatch = DispatchCore(offer_timeout=30, disconnect_grace=60, decline_cooldown=120)
    names = [f"q{i}" for i in range(queues)]
    for name in names:
        dispatch.add_queue(name)
    for index in range(agents):
        dispatch.add_agent(f"a{index}", capacity=10, queues=frozenset(rng.sample(names, 5)))
    for index in range(waiting):
        dispatch.enqueue(f"c{index}", rng.choice(names), rng.choice(PRIORITIES), index, 0.0)
    now = 1.0
    offers: list[SendOffer] = []
    for index in range(agents):
        offers += [a for a in dispatch.connect(f"a{index}", now) if isinstance(a, SendOffer)]
    decisions = 0
    start = time.perf_counter()
    while offers and decisions < steps and time.perf_counter() - start < budget:
        offer = offers.pop()
        dispatch.accept(offer.agent, offer.conversation_id, now)
        now += 0.001
        new = dispatch.release(offer.agent, offer.conversation_id, now)
        offers += [a for a in new if isinstance(a, SendOffer)]
        decisions += 1
    return decisions / (time.perf_counter() - start)


def heap_rate(waiting: int) -> float:
    rng = random.Random(1)
    items = [(-rng.randrange(4), index, f"c{index}") for index in range(waiting)]
    heap: list[tuple[int, int, str]] = []
    for item in items:
        heapq.heappush(heap, item)
    start = time.perf_counter()
    while heap:
        heapq.heappop(heap)
    return waiting / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--waiting", type=int, default=10_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per figure at most")
    args = parser.parse_args()
    baseline = heap_rate(args.waiting)
    print(
        f"# bench/dispatch.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
        f"{os.cpu_count()} cpus  python {platform.python_version()}"
    )
    print(f"# {args.queues} queues, {args.waiting:,} waiting; heapq pop baseline {baseline:,.0f}/s")
    print(f"{'agents':>8}{'decisions/s':>14}{'cost vs heapq':>15}")
    for agents in (10, 100, 1_000):
        rate = core_rate(agents, args.queues, args.waiting, args.steps, args.budget)
        print(f"{agents:>8}{rate:>14,.1f}{baseline / rate:>15,.0f}x")


if __name__ == "__main__":
    main()
