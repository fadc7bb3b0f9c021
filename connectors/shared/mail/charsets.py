"""Charset labels as mail clients write them, read the way browsers read them. Pure.

Python knows many labels but not all that mail carries (``iso-8859-8-i`` for Hebrew,
``windows-874``, ``ks_c_5601-1989``, ``x-mac-cyrillic`` …), and reads some too narrowly. The
table below is the WHATWG Encoding Standard's (https://encoding.spec.whatwg.org/#names-and-labels),
each label mapped to the Python codec that decodes like the standard's decoder: GB2312 and GBK
text as GB18030, ISO-8859-1 and US-ASCII as Windows-1252, Big5 as Big5-HKSCS, Shift_JIS as
Windows-31J, EUC-KR as Windows-949. Two departures, because mail still uses them: the labels the
standard maps to "replacement" (ISO-2022-KR, HZ) keep Python's own codecs, and ISO-2022-JP is
read by :func:`decode_iso2022jp`, with the Windows extensions Outlook writes.
"""

from __future__ import annotations

import re

_WHATWG = {
    "utf-8": "unicode-1-1-utf-8 unicode11utf8 unicode20utf8 utf-8 utf8 x-unicode20utf8",
    "cp866": "866 cp866 csibm866 ibm866",
    "iso8859_2": "csisolatin2 iso-8859-2 iso-ir-101 iso8859-2 iso88592 iso_8859-2 "
    "iso_8859-2:1987 l2 latin2",
    "iso8859_3": "csisolatin3 iso-8859-3 iso-ir-109 iso8859-3 iso88593 iso_8859-3 "
    "iso_8859-3:1988 l3 latin3",
    "iso8859_4": "csisolatin4 iso-8859-4 iso-ir-110 iso8859-4 iso88594 iso_8859-4 "
    "iso_8859-4:1988 l4 latin4",
    "iso8859_5": "csisolatincyrillic cyrillic iso-8859-5 iso-ir-144 iso8859-5 iso88595 "
    "iso_8859-5 iso_8859-5:1988",
    "iso8859_6": "arabic asmo-708 csiso88596e csiso88596i csisolatinarabic ecma-114 iso-8859-6 "
    "iso-8859-6-e iso-8859-6-i iso-ir-127 iso8859-6 iso88596 iso_8859-6 iso_8859-6:1987",
    "iso8859_7": "csisolatingreek ecma-118 elot_928 greek greek8 iso-8859-7 iso-ir-126 "
    "iso8859-7 iso88597 iso_8859-7 iso_8859-7:1987 sun_eu_greek",
    # ISO-8859-8-I ("logical" order) and ISO-8859-8 ("visual") decode to the same characters
    "iso8859_8": "csiso88598e csisolatinhebrew hebrew iso-8859-8 iso-8859-8-e iso-ir-138 "
    "iso8859-8 iso88598 iso_8859-8 iso_8859-8:1988 visual csiso88598i iso-8859-8-i logical",
    "iso8859_10": "csisolatin6 iso-8859-10 iso-ir-157 iso8859-10 iso885910 l6 latin6",
    "iso8859_13": "iso-8859-13 iso8859-13 iso885913",
    "iso8859_14": "iso-8859-14 iso8859-14 iso885914",
    "iso8859_15": "csisolatin9 iso-8859-15 iso8859-15 iso885915 iso_8859-15 l9",
    "iso8859_16": "iso-8859-16",
    "koi8_r": "cskoi8r koi koi8 koi8-r koi8_r",
    "koi8_u": "koi8-ru koi8-u",
    "mac_roman": "csmacintosh mac macintosh x-mac-roman",
    "cp874": "dos-874 iso-8859-11 iso8859-11 iso885911 tis-620 windows-874",
    "cp1250": "cp1250 windows-1250 x-cp1250",
    "cp1251": "cp1251 windows-1251 x-cp1251",
    "cp1252": "ansi_x3.4-1968 ascii cp1252 cp819 csisolatin1 ibm819 iso-8859-1 iso-ir-100 "
    "iso8859-1 iso88591 iso_8859-1 iso_8859-1:1987 l1 latin1 us-ascii windows-1252 x-cp1252",
    "cp1253": "cp1253 windows-1253 x-cp1253",
    "cp1254": "cp1254 csisolatin5 iso-8859-9 iso-ir-148 iso8859-9 iso88599 iso_8859-9 "
    "iso_8859-9:1989 l5 latin5 windows-1254 x-cp1254",
    "cp1255": "cp1255 windows-1255 x-cp1255",
    "cp1256": "cp1256 windows-1256 x-cp1256",
    "cp1257": "cp1257 windows-1257 x-cp1257",
    "cp1258": "cp1258 windows-1258 x-cp1258",
    "mac_cyrillic": "x-mac-cyrillic x-mac-ukrainian",
    "gb18030": "chinese csgb2312 csiso58gb231280 gb2312 gb_2312 gb_2312-80 gbk iso-ir-58 x-gbk "
    "gb18030",
    "big5hkscs": "big5 big5-hkscs cn-big5 csbig5 x-x-big5",
    "euc_jp": "cseucpkdfmtjapanese euc-jp x-euc-jp",
    "iso2022_jp_ext": "csiso2022jp iso-2022-jp",
    "cp932": "csshiftjis ms932 ms_kanji shift-jis shift_jis sjis windows-31j x-sjis",
    "cp949": "cseuckr csksc56011987 euc-kr iso-ir-149 korean ks_c_5601-1987 ks_c_5601-1989 "
    "ksc5601 ksc_5601 windows-949",
    "utf-16-be": "unicodefffe utf-16be",
    "utf-16-le": "csunicode iso-10646-ucs-2 ucs-2 unicode unicodefeff utf-16le",
    "utf-16": "utf-16",  # Python's reads the byte order mark, the standard assumes LE
}

CHARSET_ALIASES = {label: codec for codec, labels in _WHATWG.items() for label in labels.split()}
# seen in mail, in no standard: mislabeled UTF-8 more often than anything else
CHARSET_ALIASES.update({"x-unknown": "utf-8", "unknown-8bit": "utf-8"})


def codec(label: str) -> str:
    """The Python codec for a charset label as a mail declares it (case, spaces and quotes as
    they come); a label nobody maps is returned normalized, for Python to try itself."""
    normalized = label.strip().strip("\"'").strip().lower()
    return CHARSET_ALIASES.get(normalized, normalized)


def is_iso2022jp(label: str) -> bool:
    return codec(label).startswith("iso2022_jp")


def decode(data: bytes, label: str) -> str:
    """``data`` decoded as ``label`` says; raises LookupError or UnicodeDecodeError when it
    cannot be, so callers can try the next candidate."""
    if is_iso2022jp(label):
        if data and max(data) >= 0x80:  # mislabeled: it is a 7-bit charset (often Shift_JIS)
            raise UnicodeDecodeError("iso-2022-jp", data, 0, len(data), "8-bit bytes")
        return decode_iso2022jp(data)
    return data.decode(codec(label))


_JIS_ESCAPE = re.compile(rb"\x1b(\$@|\$B|\$\(D|\(B|\(J|\(I)")


def _jis_to_cp932(pairs: bytes) -> bytes:
    """JIS X 0208 byte pairs as Shift_JIS, the form Windows-31J decodes with its extensions."""
    out = bytearray()
    for index in range(0, len(pairs) - 1, 2):
        first, second = pairs[index], pairs[index + 1]
        if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
            out += b"?"
            continue
        lead = (first + 1) // 2 + (0x70 if first <= 0x5E else 0xB0)
        # odd rows take the lower half of the trail byte range, even rows the upper
        trail = second + (0x1F if second <= 0x5F else 0x20) if first % 2 else second + 0x7E
        out += bytes((lead, trail))
    return bytes(out)


def decode_iso2022jp(data: bytes) -> str:
    """ISO-2022-JP as Japanese mailers write it, Windows extensions included: never raises.

    Outlook and other Windows mailers write ISO-2022-JP with the NEC and IBM extension rows of
    Windows-31J (①, №, ㈱, Roman numerals); Python's codecs stop there. Such text is decoded the
    way Windows does (code page 50220): each double-byte run is turned into its Shift_JIS form
    and read as Windows-31J. JIS X 0212 runs go through EUC-JP, half-width katakana through
    Windows-31J."""
    try:
        return data.decode("iso2022_jp_ext")
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    mode = b"(B"
    position = 0
    for found in [*_JIS_ESCAPE.finditer(data), None]:
        end = found.start() if found else len(data)
        chunk = data[position:end]
        if mode in (b"$@", b"$B"):
            chunk = chunk.replace(b"\r", b"").replace(b"\n", b"")
            out.append(_jis_to_cp932(chunk).decode("cp932", errors="replace"))
        elif mode == b"$(D":
            chunk = chunk.replace(b"\r", b"").replace(b"\n", b"")
            wide = b"".join(
                b"\x8f" + bytes((chunk[i] | 0x80, chunk[i + 1] | 0x80))
                for i in range(0, len(chunk) - 1, 2)
            )
            out.append(wide.decode("euc_jp", errors="replace"))
        elif mode == b"(I":
            out.append(bytes(byte | 0x80 for byte in chunk).decode("cp932", errors="replace"))
        else:
            out.append(chunk.decode("ascii", errors="replace"))
        if found is None:
            break
        mode, position = found[1], found.end()
    return "".join(out)
