"""What of an audit event may stay once the person it is about is erased: anonymous facts only.

Pure. An event keeps its kind, time, agent (staff, not the customer) and conversation id (a
random id that then points nowhere), and of its ``data`` only keys that cannot say who the
person was: queue, channel, disposition, status and the like, record ids. Addresses, names,
free text (a transfer note, a decline reason, a provider's error message that quotes the phone
number), customer numbers and anything not known to be harmless are dropped. Reports keep
working on what stays (docs/reports.md, docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

#: keys whose values are facts about the work, never about who the customer is
SAFE_KEYS = frozenset(
    {
        "queue",
        "rules",
        "channel",
        "inbox",
        "disposition",
        "status",
        "to_agent",
        "endpoint",
        "priority",
        "skills",
        "digest",
        "sessions",
        "source",
        "merge",
        "previous_kind",
        "messages",
        "verified",
    }
)
#: keys holding record ids (random, meaningless once the records are gone)
ID_KEYS = frozenset(
    {
        "customer_id",
        "customer",
        "prospect",
        "claimed_customer",
        "owner",
        "from",
        "into",
        "target",
        "identities",
        "conversations",
        "orders",
        "invoices",
    }
)
#: reasons that are one of a fixed set of words where these events are written
_FIXED_REASONS = frozenset({"conversation.requeued", "conversation.transferred"})
ERASED = "erased"


def anonymous(kind: str, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``data`` an event about an erased person keeps, marked ``"erased": true``."""
    kept: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if key in SAFE_KEYS or key in ID_KEYS or (key == "reason" and kind in _FIXED_REASONS):
            kept[key] = value
    kept[ERASED] = True
    return kept


def mentions(
    data: Mapping[str, Any] | None,
    customer_ids: Collection[str],
    addresses: Collection[tuple[str, str]],
) -> bool:
    """Whether event data names one of the person's records or addresses."""
    if not data:
        return False
    for key in ID_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value in customer_ids:
            return True
    kind, address = data.get("kind"), data.get("address")
    return isinstance(address, str) and (kind, address) in addresses


def without_claims(
    attributes: Mapping[str, Any] | None,
    customer_ids: Collection[str],
    addresses: Collection[tuple[str, str]],
) -> dict[str, Any] | None:
    """Another record's attributes with its claims on the person removed (someone who wrote
    unverified and claimed to be them keeps their own record, not the person's address), or
    None when nothing changes."""
    if not attributes or not isinstance(attributes.get("claims"), list):
        return None
    claims = attributes["claims"]
    kept = [
        claim
        for claim in claims
        if not (
            isinstance(claim, dict)
            and (
                claim.get("customer") in customer_ids
                or (claim.get("kind"), claim.get("address")) in addresses
            )
        )
    ]
    if len(kept) == len(claims):
        return None
    return {**attributes, "claims": kept}
