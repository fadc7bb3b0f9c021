"""Charset labels mail clients write that Python lacks or reads too narrowly.

Read as browsers do (the WHATWG Encoding Standard): GB2312 and GBK text is decoded as GB18030,
ISO-8859-1 and US-ASCII as Windows-1252, and so on, so "wrong" labels still yield the text.
"""

from __future__ import annotations

CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "utf8": "utf-8",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
}
