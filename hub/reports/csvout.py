"""CSV files that open safely in Excel and LibreOffice.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by spreadsheet programs (CSV injection: ``=HYPERLINK(…)`` in a customer's message
becomes a live link in the team lead's report). Such text cells get a leading apostrophe, which
the programs show as text and do not display. The same holds after leading blanks and for the
full-width forms of those characters. Numbers are written as numbers.

Files are UTF-8 with a byte-order mark (Excel reads UTF-8 only with it) and CRLF line ends.
The ``excel-de`` dialect separates with ``;`` and writes decimal commas, as German Excel expects.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum

BOM = "\ufeff"
_TRIGGERS = frozenset("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


class Dialect(StrEnum):
    EXCEL = "excel"  # comma, decimal point
    EXCEL_DE = "excel-de"  # semicolon, decimal comma

    @property
    def delimiter(self) -> str:
        return ";" if self is Dialect.EXCEL_DE else ","


Cell = str | int | float | bool | None


def neutralise(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates: a leading apostrophe before a formula
    trigger (also after leading blanks)."""
    stripped = text.lstrip(" \u00a0\u3000")
    if (stripped and stripped[0] in _TRIGGERS) or text[:1] in _TRIGGERS:
        return "'" + text
    return text


def cell(value: Cell, dialect: Dialect) -> str:
    """One value as CSV cell text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        text = repr(round(value, 6)) if value != int(value) else str(int(value))
        return text.replace(".", ",") if dialect is Dialect.EXCEL_DE else text
    return neutralise(str(value))


def lines(
    header: Sequence[str], rows: Iterable[Sequence[Cell]], dialect: Dialect = Dialect.EXCEL
) -> Iterator[str]:
    """The file as text pieces: the BOM and header first, then one piece per row (so a large
    export can be streamed)."""
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=dialect.delimiter, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL
    )

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow([neutralise(name) for name in header])
    yield BOM + take()
    for row in rows:
        writer.writerow([cell(value, dialect) for value in row])
        yield take()


def render(
    header: Sequence[str], rows: Iterable[Sequence[Cell]], dialect: Dialect = Dialect.EXCEL
) -> bytes:
    """The whole file as UTF-8 bytes."""
    return "".join(lines(header, rows, dialect)).encode("utf-8")
