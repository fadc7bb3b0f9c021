"""Workload for bench/pipeline.py: a generated rules file and the chat lines customers type.

The rules look like a large shop's after years of additions: keyword rules that tag and
instruct, keyword + channel rules for other channels, tier and lifetime-value rules, rules for
inboxes this hub does not have, a few regular expressions no index can skip, and the example
file's four rules on top. Their keywords are product and topic words that chat lines contain
now and then (``keyword_share`` of lines carry one), so most rules never match a line and a
few do, as in production.

Chat lines draw words from a small everyday vocabulary with a Zipf-like skew (few words very
often, most rarely).
"""

from __future__ import annotations

import random
from itertools import accumulate

TOPICS = 500  # distinct keywords the rules and the chat lines share
QUEUES = ("general", "premium", "complaints", "billing", "returns", "shipping", "technical")

_CHAT_TEXT = (
    "hallo hello ich i meine my bestellung order ist is noch still nicht not da here "
    "wann when kommt arrives paket package bitte please danke thanks können can sie you "
    "mir me helfen help die the lieferung delivery habe have eine a frage question zu about "
    "rechnung invoice und and wo where status heute today morgen tomorrow schon already "
    "vor ago tagen days bestellt ordered aber but leider unfortunately falsch wrong größe size "
    "farbe color zurück back schicken send geld money konto account passwort password "
    "adresse address ändern change telefon phone nummer number email kunde customer seit since "
    "woche week gestern yesterday gut good okay ok super great vielen many gruß regards"
)
CHAT_WORDS = tuple(_CHAT_TEXT.split())  # in rank order: the first are the most frequent

EXAMPLE_RULES = """\
  - name: vip-desk
    description: Top customers go to the premium desk
    when: customer.tier == "A"
    route: {queue: premium, priority: high, sla: 1h}
    instructions:
      - Greet by name and offer a callback within the hour.
    tags: [vip]
  - name: overdue
    when: customer.overdue_invoices > 0 and channel in ["email", "fax"]
    instructions: ["Open invoices: check with accounts before promising anything."]
  - name: complaint
    when: matches(message.text, "(?i)beschwerde|reklamation|complaint")
    route: {queue: complaints, sla: 4h}
    tags: [complaint]
  - name: after-hours
    when: not business_hours("support")
    auto_reply: after-hours
"""


def keywords(count: int, seed: int) -> list[str]:
    """Product and topic words: pronounceable, distinct, none of them a chat word."""
    rng = random.Random(seed)
    onsets = [
        "b",
        "br",
        "d",
        "f",
        "g",
        "gr",
        "k",
        "kl",
        "l",
        "m",
        "n",
        "p",
        "pr",
        "s",
        "st",
        "t",
        "tr",
        "v",
        "w",
        "z",
    ]
    vowels = ["a", "e", "i", "o", "u", "ei", "au", "ie"]
    codas = ["", "n", "r", "s", "l", "x", "nd", "rt"]
    found: set[str] = set()
    while len(found) < count:
        word = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(2, 3)))
        word += rng.choice(codas)
        if word not in CHAT_WORDS:
            found.add(word)
    return sorted(found)


def rules_file(count: int, seed: int = 7) -> str:
    """``count`` rules (at least the example's four), deterministic for a seed."""
    rng = random.Random(seed)
    words = keywords(TOPICS, seed)
    lines = [
        "version: 1",
        "defaults: {queue: general, priority: normal}",
        "templates:",
        '  after-hours: "Thanks for your message. We answer from 8:00 on the next business day."',
        "rules:",
        EXAMPLE_RULES.rstrip("\n"),
    ]
    for index in range(count - 4):
        pick = f'["{rng.choice(words)}", "{rng.choice(words)}"]'
        kind = index % 20
        if index < 3:  # unindexable: evaluated for every message
            when = (
                f'matches(message.text, "(?i)\\\\b({rng.choice(words)}|{rng.choice(words)})\\\\b")'
            )
        elif kind < 8:
            when = f"contains_any(message.text, {pick})"
        elif kind < 12:
            channel = rng.choice(["email", "sms", "whatsapp", "fax"])
            when = f'channel == "{channel}" and contains_any(message.subject, {pick})'
        elif kind < 15:
            when = f'customer.tier == "{rng.choice("ABC")}" and contains_any(message.text, {pick})'
        elif kind < 17:
            threshold = rng.choice([500, 1000, 2500, 5000])
            when = f"customer.lifetime_value > {threshold} and contains_any(message.text, {pick})"
        elif kind < 19:
            when = f'inbox == "shop-{rng.randint(1, 200)}" and contains_any(message.text, {pick})'
        else:
            when = 'channel in ["sms", "whatsapp"] and customer.overdue_invoices > 0'
        lines.append(f"  - name: generated-{index}")
        lines.append(f"    when: '{when}'")
        if index % 4 == 0:
            priority = rng.choice(["low", "normal", "high"])
            lines.append(f"    route: {{queue: {rng.choice(QUEUES[3:])}, priority: {priority}}}")
        if index % 3 == 0:
            lines.append(f'    instructions: ["Topic {index}: see the wiki page {index}."]')
        lines.append(f"    tags: [topic-{index % 50}]")
    return "\n".join(lines) + "\n"


class ChatLines:
    """What bench customers type: 4-14 everyday words, sometimes a topic keyword or a complaint."""

    def __init__(
        self,
        seed: int,
        rule_seed: int = 7,
        keyword_share: float = 0.05,
        complaint_share: float = 0.01,
    ) -> None:
        self.rng = random.Random(seed)
        self.topics = keywords(TOPICS, rule_seed)
        self.keyword_share = keyword_share
        self.complaint_share = complaint_share
        self.weights = list(accumulate(1.0 / (rank + 1) for rank in range(len(CHAT_WORDS))))

    def line(self) -> str:
        rng = self.rng
        words = rng.choices(CHAT_WORDS, cum_weights=self.weights, k=rng.randint(4, 14))
        if rng.random() < self.keyword_share:
            words.insert(rng.randrange(len(words)), rng.choice(self.topics))
        if rng.random() < self.complaint_share:
            words.append("reklamation")
        return " ".join(words)
