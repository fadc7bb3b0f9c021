"""Normalizing channel addresses, so one person is one identity whatever the spelling. Pure."""

from __future__ import annotations

import phonenumbers

from hub.envelope import Identity


class InvalidAddress(ValueError):
    """An address that cannot be normalized (not an email address, not a phone number)."""


def normalize_email(address: str) -> str:
    """``Local@Example.COM`` -> ``Local@example.com``: domains are case-insensitive, local parts
    are kept as written (RFC 5321), surrounding spaces and angle brackets dropped."""
    value = address.strip().strip("<>").strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or " " in value or "." not in domain:
        raise InvalidAddress(f"not an email address: {address!r}")
    return f"{local}@{domain.lower().rstrip('.')}"


def normalize_phone(number: str, default_region: str = "DE") -> str:
    """A phone number in E.164 (``+4930123456``); national numbers use ``default_region``."""
    try:
        parsed = phonenumbers.parse(number.strip(), default_region)
    except phonenumbers.NumberParseException:
        raise InvalidAddress(f"not a phone number: {number!r}") from None
    if not phonenumbers.is_possible_number(parsed) or len(str(parsed.national_number)) < 5:
        raise InvalidAddress(f"not a possible phone number: {number!r}")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def normalize_identity(identity: Identity, default_region: str = "DE") -> Identity:
    """The identity with its address in canonical form; unknown kinds are kept as they are.

    ``whatsapp`` addresses may carry Twilio's ``whatsapp:`` prefix; the identity keeps the bare
    E.164 number (the kind says it is WhatsApp).
    """
    kind = identity.kind
    if kind == "email":
        address = normalize_email(identity.address)
    elif kind in ("phone", "fax"):
        address = normalize_phone(identity.address, default_region)
    elif kind == "whatsapp":
        address = normalize_phone(identity.address.removeprefix("whatsapp:"), default_region)
    else:
        return identity
    if address == identity.address:
        return identity
    return Identity(kind=kind, address=address, display_name=identity.display_name)
