"""The fast rules engine against the reference: same decisions, errors and traces.

``evaluate`` (candidate index, residuals, merged parts) must give what evaluating every rule's
full expression in file order gives (``linear_scan``, and ``evaluate(..., explain=True)`` whose
trace says why), on random rule sets and messages; and the cheap tokenizer must split exactly
like ``re.findall(r"\\w+", text.casefold())``.
"""

from __future__ import annotations

import random
import re
import sys
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.customers.context import CustomerRef
from hub.envelope import Attachment, Direction, Envelope, Identity, ThreadHints
from hub.routing import RulesDecider, facts_for
from rules.context import Context, CustomerFacts, MessageFacts, RuleInput, tokens
from rules.evaluate import evaluate, linear_scan
from rules.index import RegexSet
from rules.loader import load_rules
from rules.reload import RulesHolder

WORDS = ["storno", "refund", "Invoice", "zurück", "STRASSE", "straße", "ärger", "urgent", "a_b"]
TEXTS = [*WORDS, "hello", "world", "12345", "#4711", "—", "RE:", "money back", "x", ","]
CHANNELS = ["email", "sms", "fax", "webchat"]
PATTERNS = [
    "(?i)refund",
    r"\\bstorno\\b",
    "^RE:",
    "a*",
    r"\\d{3,}",
    "zurück",
    "(?i)ärger|straße",
    r"(?i)invoice\\s*#?\\d+",
]

# conjuncts: indexable ones (exact, member, keyword, regex, thresholds), safe ones the index
# cannot use, and ones that raise for some messages (a rule error, the rule does not match)
CONDITIONS = [
    'channel == "email"',
    'channel in ["sms", "fax"]',
    '"webchat" == channel',
    'inbox == "support"',
    'customer.tier == "A"',
    'customer.tier in ["B", ""]',
    "customer.known == True",
    "customer.orders_12m == 2",
    "customer.lifetime_value == 100",
    '"vip" in customer.tags',
    '"sales@shop.example" in message.to',
    "customer.lifetime_value > 50",
    "customer.lifetime_value >= 100",
    "customer.lifetime_value < 100.5",
    "customer.overdue_invoices <= 1",
    "2 < customer.overdue_invoices",
    "customer.orders_12m > 9007199254740992",
    "not customer.known",
    'business_hours("support")',
    'not business_hours("support")',
    'channel == "sms" or customer.tier == "B"',
    'lower(message.subject) == "re: refund"',
    "message.has_attachments",
    "now.hour >= 12",
    'customer.attributes.segment == "pharma"',
    "len(message.to) > 1",
    "customer.tier > 3",  # TypeError: a text compared with a number
    "customer.attributes.score > 2",  # TypeError when the attribute is missing or a text
]


@st.composite
def conditions(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["fixed", "fixed", "keyword", "regex"]))
    field = draw(st.sampled_from(["message.text", "message.subject"]))
    if kind == "keyword":
        words = draw(st.lists(st.sampled_from([*WORDS, "money back", "Refund!"]), min_size=1))
        return f"contains_any({field}, [{', '.join(f'{word!r}' for word in words)}])".replace(
            "'", '"'
        )
    if kind == "regex":
        return f'matches({field}, "{draw(st.sampled_from(PATTERNS))}")'
    return draw(st.sampled_from(CONDITIONS))


@st.composite
def rules_files(draw: st.DrawFn) -> str:
    lines = [
        "version: 1",
        "defaults: {queue: general, priority: low, sla: 1h, skills: [basic]}",
        "templates: {hello: Hello, closed: We are closed}",
        "rules:",
    ]
    for number in range(draw(st.integers(0, 12))):
        lines.append(f"  - name: r{number}")
        parts = draw(st.lists(conditions(), max_size=3))
        if parts:
            lines.append(f"    when: '{' and '.join(parts)}'")
        route = {
            "queue": draw(st.sampled_from([None, "q1", "q2"])),
            "priority": draw(st.sampled_from([None, "high", "urgent"])),
            "sla": draw(st.sampled_from([None, "5m"])),
            "skills": draw(st.sampled_from([None, "[]", "[german]"])),
            "agent": draw(st.sampled_from([None, "anna"])),
        }
        shown = ", ".join(f"{key}: {value}" for key, value in route.items() if value is not None)
        if shown:
            lines.append(f"    route: {{{shown}}}")
        instructions = draw(st.lists(st.sampled_from(["i1", "i2", "i3"]), max_size=2))
        if instructions:
            lines.append(f"    instructions: [{', '.join(instructions)}]")
        tags = draw(st.lists(st.sampled_from(["t1", "t2"]), max_size=2))
        if tags:
            lines.append(f"    tags: [{', '.join(tags)}]")
        if draw(st.integers(0, 9)) == 0:
            lines.append(f"    auto_reply: {draw(st.sampled_from(['hello', 'closed']))}")
        if draw(st.integers(0, 7)) == 0:
            lines.append("    stop: true")
        if draw(st.integers(0, 9)) == 0:
            lines.append("    enabled: false")
    if lines[-1] == "rules:":
        lines[-1] = "rules: []"
    return "\n".join(lines) + "\n"


@st.composite
def inputs(draw: st.DrawFn) -> tuple[RuleInput, datetime, bool]:
    def text(size: int) -> str:
        return " ".join(draw(st.lists(st.sampled_from(TEXTS), max_size=size)))

    attributes = draw(st.sampled_from([{}, {"segment": "pharma"}, {"score": 3}, {"score": "high"}]))
    facts = RuleInput(
        channel=draw(st.sampled_from(CHANNELS)),
        inbox=draw(st.sampled_from(["support", "sales"])),
        message=MessageFacts(
            subject=draw(st.sampled_from(["", "RE: refund", "re: Refund"])) + text(3),
            text=text(8),
            to=draw(st.sampled_from([[], ["sales@shop.example"], ["a@x.de", "b@x.de"]])),
            attachments=draw(st.sampled_from([[], ["a.pdf"]])),
        ),
        customer=CustomerFacts(
            known=draw(st.booleans()),
            tier=draw(st.sampled_from(["A", "B", "C", ""])),
            lifetime_value=draw(
                st.sampled_from([0.0, 50.0, 99.5, 100.0, 100.5, 1e9, float("nan")])
            ),
            orders_12m=draw(st.sampled_from([0, 2, 2**53 + 1])),
            overdue_invoices=draw(st.integers(0, 4)),
            tags=draw(st.sampled_from([[], ["vip"], ["vip", "late"]])),
            attributes=attributes,
        ),
    )
    now = datetime(2026, 11, 26, draw(st.integers(0, 23)), 30, tzinfo=UTC)
    return facts, now, draw(st.booleans())


def _same(ruleset: Any, facts: RuleInput, now: datetime, open_now: bool) -> None:
    def context() -> Context:
        return Context.of_input(facts, now, lambda _name: open_now)

    fast = evaluate(ruleset, context())
    full = evaluate(ruleset, context(), explain=True)
    assert fast.decision == full.decision == linear_scan(ruleset, context())
    assert fast.errors == full.errors
    trace = full.trace or []
    assert [entry["rule"] for entry in trace if entry["result"] == "matched"] == list(
        fast.decision.rules
    )
    assert [entry["rule"] for entry in trace if entry["result"] == "error"] == [
        rule for rule, _ in fast.errors
    ]


@settings(max_examples=300, deadline=None)
@given(rules_files(), st.lists(inputs(), min_size=1, max_size=6))
def test_fast_engine_equals_linear_scan(text: str, messages: list[Any]) -> None:
    ruleset = load_rules(text, "rules.yaml")
    for facts, now, open_now in messages:
        _same(ruleset, facts, now, open_now)


def test_fast_engine_equals_linear_scan_on_large_random_rule_sets() -> None:
    rng = random.Random(15)
    for _ in range(3):
        lines = ["version: 1", "defaults: {queue: general}", "rules:"]
        for number in range(400):
            parts = rng.sample(CONDITIONS, rng.randint(0, 3))
            if rng.random() < 0.5:
                words = ", ".join(f'"{rng.choice(WORDS)}"' for _ in range(rng.randint(1, 3)))
                parts.insert(rng.randint(0, len(parts)), f"contains_any(message.text, [{words}])")
            lines.append(f"  - name: r{number}")
            if parts:
                lines.append(f"    when: '{' and '.join(parts)}'")
            lines.append(f"    route: {{queue: q{number % 7}}}")
            lines.append(f"    instructions: [i{number}]")
            if rng.random() < 0.01:
                lines.append("    stop: true")
        ruleset = load_rules("\n".join(lines) + "\n", "rules.yaml")
        for _ in range(200):
            facts = RuleInput(
                channel=rng.choice(CHANNELS),
                inbox=rng.choice(["support", "sales"]),
                message=MessageFacts(
                    subject=rng.choice(["", "RE: refund"]),
                    text=" ".join(rng.choice(TEXTS) for _ in range(rng.randint(0, 12))),
                    to=rng.choice([[], ["sales@shop.example"]]),
                ),
                customer=CustomerFacts(
                    known=rng.random() < 0.7,
                    tier=rng.choice("ABC"),
                    lifetime_value=rng.choice([0.0, 100.0, rng.uniform(0, 200)]),
                    overdue_invoices=rng.randint(0, 4),
                    tags=rng.choice([[], ["vip"]]),
                    attributes=rng.choice([{}, {"score": 5}]),
                ),
            )
            now = datetime(2026, 11, 26, rng.randint(0, 23), tzinfo=UTC)
            _same(ruleset, facts, now, rng.random() < 0.5)


def test_a_field_of_an_unexpected_type_is_judged_rule_by_rule() -> None:
    """A value the index cannot read (a list where a text belongs, a text where a number
    belongs) makes the engine fall back to checking each rule, so each failing rule is
    reported and the others still apply."""
    ruleset = load_rules(
        "version: 1\nrules:\n"
        '  - name: tier\n    when: customer.tier == "A"\n    route: {queue: a}\n'
        "  - name: value\n    when: customer.lifetime_value > 10\n    route: {queue: b}\n"
        "  - name: words\n    when: 'contains_any(message.text, [\"refund\"])'\n"
        "    instructions: [refund]\n",
        "rules.yaml",
    )
    for customer in (
        CustomerFacts(tier=["A"], lifetime_value=20.0),  # type: ignore[arg-type]
        CustomerFacts(tier="A", lifetime_value="much"),  # type: ignore[arg-type]
    ):
        facts = RuleInput(channel="email", message=MessageFacts(text="Refund!"), customer=customer)
        _same(ruleset, facts, datetime(2026, 11, 26, tzinfo=UTC), False)
        assert evaluate(ruleset, Context.of_input(facts, datetime.now(UTC))).decision.rules


@pytest.mark.parametrize("value", [float("nan"), 99.5, 100, 100.0, 100.5, True, -0.0, 2**53 + 1])
def test_thresholds_at_their_edges(value: object) -> None:
    comparisons = ["> 100", ">= 100", "< 100", "<= 100", "> 9007199254740992", "<= 0", "> 0"]
    body = "".join(
        f"  - name: r{number}\n    when: customer.lifetime_value {comparison}\n"
        f"    instructions: [i{number}]\n"
        f'  - name: s{number}\n    when: customer.lifetime_value {comparison} and inbox == "x"\n'
        for number, comparison in enumerate(comparisons)
    )
    ruleset = load_rules("version: 1\nrules:\n" + body, "rules.yaml")
    facts = RuleInput(
        channel="email",
        inbox="x",
        customer=CustomerFacts(lifetime_value=value),  # type: ignore[arg-type]
    )
    _same(ruleset, facts, datetime(2026, 11, 26, tzinfo=UTC), False)


def test_tokens_split_like_the_regular_expression() -> None:
    samples = [
        "Hello, World! a_b c-d",
        "Grüße, STRASSE — ok… Straße",
        "x\u00a0y\u2003z\u3000w",
        "ab\ud800cd",
        "",
        "__",
        "½ 3² ٣ ⅷ",
        "İstanbul ǅ ﬁ",
        "tab\there\nnew\x1cline",
        "emoji 😀 end",
    ]
    for sample in samples:
        assert tokens(sample) == re.findall(r"\w+", sample.casefold()), sample


@settings(max_examples=500, deadline=None)
@given(st.text())
def test_tokens_equal_the_regular_expression_on_any_text(text: str) -> None:
    assert tokens(text) == re.findall(r"\w+", text.casefold())


def test_the_tokenizer_premises_hold_for_every_code_point() -> None:
    """``tokens`` is exact if a word character is exactly ``isalnum() or "_"`` and no white
    space is a word character: checked for every code point of this Python's Unicode."""
    word = re.compile(r"\w")
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        is_word = word.match(char) is not None
        assert is_word == (char.isalnum() or char == "_"), hex(code)
        if char.isspace() or (char + "a").split() != [char + "a"]:
            assert not is_word, hex(code)


class _Texts:
    def __init__(self, text: str) -> None:
        self.message_text = text
        self._utf8: dict[str, bytes] = {}

    def utf8(self, text: str) -> bytes:
        return text.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("text", ["refund storno 1234", "RE: ärger", "", "nothing here", "aaa"])
def test_a_regex_set_that_gives_up_falls_back_to_each_pattern(text: str) -> None:
    getter = attrgetter("message_text")
    expected = sorted(RegexSet(getter, PATTERNS)(_Texts(text)))
    failing = RegexSet(getter, PATTERNS)
    failing.match = lambda _data: []  # RE2's answer when its DFA ran out of memory
    uncompiled = RegexSet(getter, PATTERNS, max_mem=1 << 10)  # too small to compile the set
    assert uncompiled.match is None
    for matcher in (failing, uncompiled):
        found = sorted(matcher(_Texts(text)))
        assert [number for number in found if number] == [n for n in expected if n]


def test_the_hub_prepares_what_rules_test_would_see() -> None:
    """``RulesDecider.prepare`` builds the context straight from the envelope; it must read
    exactly like the documented input built by ``facts_for``."""
    ruleset = load_rules("version: 1\n", "rules.yaml")
    decider = RulesDecider(
        RulesHolder(ruleset), timezone="Europe/Berlin", calendars={}, clock=lambda: 1.8e9
    )
    envelope = Envelope(
        channel="email",
        inbox="support",
        direction=Direction.INBOUND,
        idempotency_key="k",
        sender=Identity(kind="email", address="anna@example.com"),
        recipients=(Identity(kind="email", address="a@shop"), Identity(kind="email", address="b")),
        received_at=1.7e9,
        thread=ThreadHints(references=("<x@y>",)),
        subject=None,
        text="Hallo",
        language="de",
        attachments=(
            Attachment(
                name="a.pdf", content_type="application/pdf", size=1, sha256="0", blob_ref="b"
            ),
        ),
        auto_submitted=True,
    )
    for customer in (
        CustomerRef("c1", True, "Anna", CustomerFacts(known=True, id="c1", tier="A")),
        CustomerRef("p1", False, None, None),
    ):
        fast = decider.prepare(envelope, customer)
        slow = decider.context(facts_for(envelope, customer))
        for name in Context.__slots__:
            if not name.startswith("_"):
                assert getattr(fast, name) == getattr(slow, name), name
        for name in ("now_hour", "now_minute", "now_weekday", "now_day", "now_month", "now_year"):
            assert getattr(fast, name) == getattr(slow, name), name
