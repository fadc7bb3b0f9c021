"""Reading header fields a customer or a relay controls: addresses, ids, loops, authentication.

Everything here takes a parsed :class:`email.message.EmailMessage` (policy.default) and returns
plain values; nothing is trusted, every value is length-capped and stripped of line breaks and
control characters before it reaches the envelope. Pure.
"""

from __future__ import annotations

import email.header
import email.utils
import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy

from connectors.shared.mail import charsets
from hub.envelope import Identity

MAX_IDS = 100  # References of a very long thread are cut to the newest this many
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
_ADDRESS = re.compile(
    r'^([^@\s<>()\[\],;:"\\]{1,200}|"[^"\\\r\n]{1,200}")@[^@\s<>()\[\],;:"\\]{1,255}$'
)
_FOLD = re.compile(r"\r?\n(?=[ \t])")  # unfolding removes the line break, keeps the blank
_MESSAGE_ID = re.compile(r"<([^<>\s]{1,900})>")
_STRICT = "strict" in inspect.signature(email.utils.getaddresses).parameters
AUTOMATED_SENDERS = re.compile(
    r"^(mailer-daemon|postmaster|mail-daemon|mailer_daemon|no-?reply|do-?not-?reply)@", re.I
)
_SUBJECT_PREFIX = re.compile(
    r"^\s*((re|aw|fw|fwd|wg|sv|antw|vs|tr|rif|r)\s*(\[\d+\])?\s*:\s*)+", re.I
)


class _RememberedHeaders(HeaderRegistry):
    """The stdlib's header registry, remembering the MIME structure headers it parsed.

    ``policy.default`` parses a header anew on every access: reading one part's charset,
    filename, disposition and transfer encoding parses its Content-Type and
    Content-Disposition again each time, which cost more than the MIME parse itself for a mail
    with attachments. Parsed headers are immutable, so equal (name, value) pairs can share one.
    Only these few short fields are kept, at most 512 of them (a few MB at worst)."""

    _NAMES = frozenset({"content-type", "content-disposition", "content-transfer-encoding"})
    _LIMIT = 512

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, str], BaseHeader] = {}

    def __call__(self, name: str, value: str) -> BaseHeader:
        key = (name.lower(), value)
        if key[0] not in self._NAMES or len(value) > 1000:
            return super().__call__(name, value)
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= self._LIMIT:
                self._seen.clear()
            found = self._seen[key] = super().__call__(name, value)
        return found


POLICY = EmailPolicy(header_factory=_RememberedHeaders())
"""``policy.default`` with remembered header parsing; the policy every inbound mail is read with."""


def clean(value: object, limit: int = 998) -> str:
    """A header value as one safe line: decoded, no CR/LF or controls, at most ``limit`` chars."""
    try:
        text = str(value)
    except Exception:  # a header the registry cannot even render
        text = ""
    return _CONTROL.sub(" ", text).strip()[:limit]


def header(message: EmailMessage, name: str, limit: int = 998) -> str | None:
    """The first ``name`` header, cleaned, or None when absent or unreadable."""
    try:
        value = message.get(name)
    except Exception:  # malformed beyond what the header registry tolerates
        value = None
    if value is None:
        return None
    return clean(value, limit) or None


def _raw(message: EmailMessage, name: str) -> list[str]:
    """Every ``name`` header exactly as it came (unfolded), encoded words not yet decoded."""
    wanted = name.lower()
    values = []
    for key, value in message.raw_items():
        if key.lower() == wanted:
            values.append(_FOLD.sub("", value if isinstance(value, str) else str(value)))
    return values


def _bytes_text(data: bytes, candidates: Sequence[str | None]) -> str:
    for charset in candidates:
        if not charset:
            continue
        try:
            return charsets.decode(data, charset)
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


def decode_words(value: str, fallback: Sequence[str] = ()) -> str:
    """RFC 2047 encoded words decoded (adjacent words joined), with the charset labels and
    stand-ins mail clients need (:mod:`connectors.shared.mail.charsets`: GB2312 text that is
    really GBK, ISO-8859-1 that is Windows-1252, ``iso-8859-8-i``, ISO-2022-JP with Outlook's
    extensions); raw 8-bit bytes are read as UTF-8, then as ``fallback`` charsets."""
    if any("\udc80" <= char <= "\udcff" for char in value):
        value = _bytes_text(value.encode("ascii", "surrogateescape"), ["utf-8", *fallback])
    elif "\x1b$" in value or "\x1b(" in value:  # raw ISO-2022-JP, not in encoded words
        value = charsets.decode_iso2022jp(value.encode("ascii", "replace"))
    if "=?" not in value:
        return value
    try:
        chunks = email.header.decode_header(value)
    except Exception:  # a malformed encoded word: show it as it came
        return value
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        elif charset is None:
            out.append(chunk.decode("raw-unicode-escape", errors="replace"))
        else:
            out.append(_bytes_text(chunk, [charset, "utf-8", *fallback]))
    return "".join(out)


def text_header(
    message: EmailMessage, name: str, limit: int = 998, fallback: Sequence[str] = ()
) -> str | None:
    """A free-text header (Subject) decoded, cleaned, or None when absent or empty."""
    values = _raw(message, name)
    if not values:
        return None
    return clean(decode_words(values[0], fallback), limit) or None


def addresses(message: EmailMessage, name: str, fallback: Sequence[str] = ()) -> list[Identity]:
    """The mailboxes in header ``name`` (groups flattened); malformed entries are dropped.

    The raw header is split into addresses before any encoded word is decoded, so a display
    name cannot smuggle in a second address, and encoded words inside an address stay as
    they are (RFC 2047 allows them only in names). ``getaddresses(strict=True)`` is used where
    this Python has it (3.11.10+): it refuses the ambiguous forms behind CVE-2023-27043."""
    values = [_CONTROL.sub(" ", value) for value in _raw(message, name)]
    if not values:
        return []
    if _STRICT:
        pairs = email.utils.getaddresses(values, strict=True)  # type: ignore[call-arg,unused-ignore]
    else:
        pairs = []
        for value in values:
            parsed = email.utils.getaddresses([value])
            # the pre-3.11.10 parser may read "a@x.org)<b@y.org>" as one address: refuse a value
            # whose count of @ does not match what was parsed out of it
            unquoted = re.sub(r'"[^"]*"', "", value)
            if sum(p[1].count("@") for p in parsed) < unquoted.count("@"):
                continue
            pairs.extend(parsed)
    found = []
    for display, address in pairs:
        address = address.strip()
        if any("\udc80" <= char <= "\udcff" for char in address):
            address = decode_words(address)
        if not _ADDRESS.match(address):
            continue
        local, domain = address.rsplit("@", 1)
        domain = domain.rstrip(".")  # "example.com." is the same (fully qualified) domain
        found.append(
            Identity(
                kind="email",
                address=f"{local}@{domain.lower()}",
                display_name=_display_name(display, fallback),
            )
        )
    return found


def _display_name(display: str, fallback: Sequence[str]) -> str | None:
    name = clean(decode_words(display, fallback), 200)
    # "MAILER-DAEMON (Mail Delivery System)": the comment is not part of the name
    without_comment = re.sub(r"\s*\([^()]*\)\s*", " ", name).strip()
    return (without_comment or name) or None


def message_ids(message: EmailMessage, name: str) -> list[str]:
    """The Message-IDs in ``name`` (without angle brackets), newest last, at most MAX_IDS."""
    ids: list[str] = []
    for value in _raw(message, name):
        found = _MESSAGE_ID.findall(value)
        if not found:  # some clients drop the brackets
            found = [token for token in value.split() if "@" in token and len(token) < 900]
        ids.extend(found)
    unique = list(dict.fromkeys(ids))
    return unique[-MAX_IDS:]


def message_id(message: EmailMessage) -> str | None:
    """The mail's own Message-ID without brackets, or None."""
    ids = message_ids(message, "Message-ID")
    return ids[0] if ids else None


def automated(message: EmailMessage, sender: Identity | None) -> str | None:
    """Why this mail was sent by a machine (never answer it automatically), or None.

    RFC 3834 Auto-Submitted, Precedence bulk/list/junk, mailing-list headers, vendor autoreply
    headers, X-Loop, an empty Return-Path (bounces) and daemon sender addresses."""
    auto = (header(message, "Auto-Submitted") or "").lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto[:40]}"
    precedence = (header(message, "Precedence") or "").lower()
    if precedence in {"bulk", "list", "junk", "auto_reply"}:
        return f"Precedence: {precedence}"
    for name in ("List-Id", "List-Unsubscribe", "X-Autoreply", "X-Autorespond", "X-Loop"):
        if message.get(name) is not None:
            return name
    if (header(message, "X-Auto-Response-Suppress") or "").lower() in {"all", "oof"}:
        return "X-Auto-Response-Suppress"
    return_path = message.get("Return-Path")
    if return_path is not None and clean(return_path).strip() in {"<>", ""}:
        return "empty Return-Path"
    if sender is not None and AUTOMATED_SENDERS.match(sender.address):
        return f"sender {sender.address}"
    return None


@dataclass(frozen=True, slots=True)
class Authentication:
    """What a trusted receiving server said about the sender (RFC 8601)."""

    verified: bool = True
    results: dict[str, str] = field(default_factory=dict)
    authserv_id: str | None = None
    problem: str | None = None  # why the sender counts as unverified without a failed check


_METHOD = re.compile(r"\b(dmarc|spf|dkim)\s*=\s*([a-z]+)", re.I)


def authentication(message: EmailMessage, trusted: tuple[str, ...]) -> Authentication:
    """Results of the first Authentication-Results header from a trusted authserv-id.

    Any sender can write this header, so only an authserv-id the admin listed counts (the
    receiving server removes or renames foreign headers with its own id). The sender is
    unverified when DMARC fails, or when it did not pass and SPF or DKIM fails; and, once
    servers are trusted, when none of them left a result: a mail that did not come through
    them (or that they did not check) proves nothing, so it must not count as checked."""
    if not trusted:
        return Authentication()
    wanted = {item.lower() for item in trusted}
    for value in _raw(message, "Authentication-Results"):
        flat = _CONTROL.sub(" ", value)
        serv = flat.split(";", 1)[0].strip().split()[0].lower() if flat.strip() else ""
        if serv not in wanted:
            continue
        results: dict[str, str] = {}
        for method, result in _METHOD.findall(flat.split(";", 1)[1] if ";" in flat else ""):
            results.setdefault(method.lower(), result.lower())
        dmarc = results.get("dmarc")
        failed = dmarc == "fail" or (
            dmarc != "pass"
            and (results.get("spf") in {"fail", "softfail"} or results.get("dkim") == "fail")
            and results.get("dkim") != "pass"
        )
        if not results:
            return Authentication(
                verified=False,
                authserv_id=serv,
                problem=f"{serv} reported no DMARC, SPF or DKIM result",
            )
        return Authentication(verified=not failed, results=results, authserv_id=serv)
    return Authentication(verified=False, problem="no Authentication-Results from a trusted server")


def thread_subject(subject: str | None) -> str:
    """A subject with reply/forward prefixes (any language we see) removed, casefolded."""
    text = _SUBJECT_PREFIX.sub("", subject or "")
    return " ".join(text.split()).casefold()
