"""The customer fields an external CRM may fill, with the type each must have.

Shared by the settings, which reject a mapping to an unknown field when hub.yaml is read, and
by ``hub.customers.providers``, which keeps only values of the right type; here rather than in
either, so that the settings need not import the customers package that is built on them.
"""

from __future__ import annotations

FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "tier": str,
    "lifetime_value": (int, float),
    "orders_12m": int,
    "last_order_at": (int, float),
    "days_since_last_order": int,
    "last_purchase": str,
    "payment_punctuality": (int, float),
    "overdue_invoices": int,
    "tags": list,
    "attributes": dict,
}
