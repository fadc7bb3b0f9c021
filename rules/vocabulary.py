"""What rule expressions may name: the documented fields (with the kind of value each holds
and the attribute of the flat rules context it reads) and the functions with their arity."""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    STR = "str"
    NUM = "num"
    BOOL = "bool"
    LIST = "list"
    ANY = "any"


# dotted name -> (attribute path in the evaluation context, kind of value)
NAMES: dict[str, tuple[str, Kind]] = {
    "channel": ("channel", Kind.STR),
    "inbox": ("inbox", Kind.STR),
    "message.subject": ("message_subject", Kind.STR),
    "message.text": ("message_text", Kind.STR),
    "message.from": ("message_from", Kind.STR),
    "message.to": ("message_to", Kind.LIST),
    "message.language": ("message_language", Kind.STR),
    "message.has_attachments": ("message_has_attachments", Kind.BOOL),
    "message.attachments": ("message_attachments", Kind.LIST),
    "message.received_at": ("message_received_at", Kind.NUM),
    "message.is_reply": ("message_is_reply", Kind.BOOL),
    "message.auto_submitted": ("message_auto_submitted", Kind.BOOL),
    "customer.known": ("customer.known", Kind.BOOL),
    "customer.id": ("customer.id", Kind.STR),
    "customer.name": ("customer.name", Kind.STR),
    "customer.tier": ("customer.tier", Kind.STR),
    "customer.lifetime_value": ("customer.lifetime_value", Kind.NUM),
    "customer.orders_12m": ("customer.orders_12m", Kind.NUM),
    "customer.last_order_at": ("customer.last_order_at", Kind.NUM),
    "customer.days_since_last_order": ("customer.days_since_last_order", Kind.NUM),
    "customer.last_purchase": ("customer.last_purchase", Kind.STR),
    "customer.payment_punctuality": ("customer.payment_punctuality", Kind.NUM),
    "customer.overdue_invoices": ("customer.overdue_invoices", Kind.NUM),
    "customer.open_conversations": ("customer.open_conversations", Kind.NUM),
    "customer.tags": ("customer.tags", Kind.LIST),
    "customer.stale": ("customer.stale", Kind.BOOL),
    "now.hour": ("now_hour", Kind.NUM),
    "now.minute": ("now_minute", Kind.NUM),
    "now.weekday": ("now_weekday", Kind.NUM),
    "now.day": ("now_day", Kind.NUM),
    "now.month": ("now_month", Kind.NUM),
    "now.year": ("now_year", Kind.NUM),
}
ATTRIBUTES_PREFIX = "customer.attributes."
ROOTS = {name.split(".")[0] for name in NAMES}

# function name -> (number of arguments, argument positions that must be literals)
FUNCTIONS: dict[str, tuple[int, tuple[int, ...]]] = {
    "matches": (2, (1,)),
    "contains_any": (2, (1,)),
    "business_hours": (1, (0,)),
    "lower": (1, ()),
    "len": (1, ()),
}
