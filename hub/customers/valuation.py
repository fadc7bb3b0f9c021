"""Customer value from orders and invoices: ABC tiers, RFM scores, payment punctuality. Pure.

ABC analysis ranks customers by revenue in a window (default 365 days): the customers who make
up the first 80 % of all revenue are A, the next 15 % B, the rest (and everyone without
revenue in the window) C. RFM scores recency, frequency and monetary value 1-5 by quintile
among customers with orders in the window (5 = most recent / most frequent / most revenue).

A negative order is a return: it lowers lifetime value and window revenue, but it is not an
order (no frequency, no recency, not the last purchase). A negative invoice is a credit note:
nothing is due on it, so it counts neither for punctuality nor as overdue.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

DAY = 86_400.0


@dataclass(frozen=True, slots=True)
class Order:
    customer_id: str
    ordered_at: float
    amount_cents: int
    product: str = ""


@dataclass(frozen=True, slots=True)
class Invoice:
    customer_id: str
    due_at: float
    amount_cents: int
    paid_at: float | None = None


@dataclass(frozen=True, slots=True)
class Thresholds:
    window_days: float = 365.0
    a_share: float = 0.80
    b_share: float = 0.95


DEFAULT = Thresholds()


@dataclass(slots=True)
class Stats:
    customer_id: str
    lifetime_value_cents: int = 0
    revenue_window_cents: int = 0
    orders_12m: int = 0
    orders_window: int = 0
    last_order_at: float | None = None
    last_purchase: str = ""
    invoices_due: int = 0
    invoices_on_time: int = 0
    overdue_invoices: int = 0
    abc: str = "C"
    r: int = 0
    f: int = 0
    m: int = 0

    @property
    def payment_punctuality(self) -> float | None:
        """Share of due invoices paid by their due date; None before any invoice fell due."""
        if not self.invoices_due:
            return None
        return self.invoices_on_time / self.invoices_due


def compute(
    customer_ids: Iterable[str],
    orders: Iterable[Order],
    invoices: Iterable[Invoice],
    now: float,
    thresholds: Thresholds = DEFAULT,
) -> dict[str, Stats]:
    """Stats for every customer in ``customer_ids``, tiers and scores included."""
    stats = aggregate(customer_ids, orders, invoices, now, thresholds)
    classify(stats.values(), now, thresholds)
    return stats


def aggregate(
    customer_ids: Iterable[str],
    orders: Iterable[Order],
    invoices: Iterable[Invoice],
    now: float,
    thresholds: Thresholds = DEFAULT,
) -> dict[str, Stats]:
    """Per-customer figures from their own orders and invoices (no ranking against others):
    what an incremental update recomputes for the customers whose data changed."""
    stats = {customer_id: Stats(customer_id) for customer_id in customer_ids}
    window_start = now - thresholds.window_days * DAY
    year_start = now - 365 * DAY
    for order in orders:
        entry = stats.get(order.customer_id)
        if entry is None or order.ordered_at > now:
            continue
        entry.lifetime_value_cents += order.amount_cents
        if order.ordered_at >= window_start:
            entry.revenue_window_cents += order.amount_cents
        if order.amount_cents < 0:
            continue  # a return: revenue only
        if order.ordered_at >= window_start:
            entry.orders_window += 1
        if order.ordered_at >= year_start:
            entry.orders_12m += 1
        if entry.last_order_at is None or order.ordered_at >= entry.last_order_at:
            entry.last_order_at = order.ordered_at
            entry.last_purchase = order.product
    for invoice in invoices:
        entry = stats.get(invoice.customer_id)
        if entry is None or invoice.due_at > now or invoice.amount_cents < 0:
            continue  # not due yet, or a credit note: says nothing about punctuality
        entry.invoices_due += 1
        if invoice.paid_at is not None and invoice.paid_at <= invoice.due_at:
            entry.invoices_on_time += 1
        elif invoice.paid_at is None:
            entry.overdue_invoices += 1
    return stats


def classify(stats: Iterable[Stats], now: float, thresholds: Thresholds = DEFAULT) -> None:
    """Set ABC tiers and RFM scores, which rank every customer against all the others."""
    entries = list(stats)
    for entry in entries:
        entry.abc, entry.r, entry.f, entry.m = "C", 0, 0, 0
    _abc(entries, thresholds)
    _rfm([entry for entry in entries if entry.orders_window], now)


def _abc(entries: list[Stats], thresholds: Thresholds) -> None:
    total = sum(entry.revenue_window_cents for entry in entries if entry.revenue_window_cents > 0)
    ranked = sorted(
        (entry for entry in entries if entry.revenue_window_cents > 0),
        key=lambda entry: (-entry.revenue_window_cents, entry.customer_id),
    )
    before = 0
    for entry in ranked:
        share = before / total
        entry.abc = (
            "A" if share < thresholds.a_share else "B" if share < thresholds.b_share else "C"
        )
        before += entry.revenue_window_cents


def _quintile(sorted_values: list[float], value: float) -> int:
    """1-5 by the share of customers strictly below ``value`` (ties score alike; the lowest
    scores 1 and the highest 5 even in small sets)."""
    below = bisect.bisect_left(sorted_values, value)
    return min(5, 1 + below * 5 // max(1, len(sorted_values) - 1))


def _rfm(entries: list[Stats], now: float) -> None:
    if not entries:
        return
    # recency: a more recent last order is better, so rank by the negated age
    recency = sorted(-(now - (entry.last_order_at or 0.0)) for entry in entries)
    frequency = sorted(float(entry.orders_window) for entry in entries)
    monetary = sorted(float(entry.revenue_window_cents) for entry in entries)
    for entry in entries:
        entry.r = _quintile(recency, -(now - (entry.last_order_at or 0.0)))
        entry.f = _quintile(frequency, float(entry.orders_window))
        entry.m = _quintile(monetary, float(entry.revenue_window_cents))
