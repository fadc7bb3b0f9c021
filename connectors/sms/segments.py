"""What an SMS costs: its encoding and the number of parts it is billed as. Pure.

Shown to the agent before sending (``SmsConnector.preview``). Only the SMS connector uses it: no
other channel is billed by the 160-character part.
"""

from __future__ import annotations

from typing import Any

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def _pack(sizes: list[int], single: int, multi: int) -> int:
    """Segments for units of ``sizes`` (an escape pair or surrogate pair never splits)."""
    if sum(sizes) <= single:
        return 1 if sizes else 0
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:
            segments, used = segments + 1, 0
        used += size
    return segments


def segments(text: str) -> dict[str, Any]:
    """How an SMS of ``text`` is encoded and how many parts it is billed as.

    GSM-7 fits 160 characters in one part and 153 per part when split (extension characters
    like € count twice); any other character switches the whole text to UCS-2: 70, then 67 per
    part, counted in UTF-16 units (an emoji is two).
    """
    outside = [char for char in text if char not in GSM7_BASIC and char not in GSM7_EXTENDED]
    if not outside:
        sizes = [2 if char in GSM7_EXTENDED else 1 for char in text]
        return {
            "encoding": "GSM-7",
            "segments": _pack(sizes, 160, 153),
            "units": sum(sizes),
            "unicode_characters": [],
        }
    sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
    return {
        "encoding": "UCS-2",
        "segments": _pack(sizes, 70, 67),
        "units": sum(sizes),
        "unicode_characters": sorted(set(outside))[:10],
    }
