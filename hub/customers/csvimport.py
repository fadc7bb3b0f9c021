"""Parsing CRM exports: customers, orders and invoices as CSV. Pure: bytes in, records out.

Accepts UTF-8 (with or without BOM) and the German Excel export (Windows-1252, ``;`` between
fields, decimal comma, ``26.11.2026`` dates). Which file it is follows from its header; column
sets are documented in docs/customers.md. Bad rows are reported with their line number and do
not stop the good ones. A negative amount is a return (orders) or a credit note (invoices): it
is imported as such and noted with its line, so a sign typed by mistake does not pass unseen.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

MAX_BYTES = 200 * 1024 * 1024
TIERS = {"A", "B", "C"}

COLUMNS = {
    "customers": ({"customer_id", "name"}, {"company", "email", "phone", "fax", "tags", "tier"}),
    "orders": ({"order_id", "customer_id", "date", "amount"}, {"product"}),
    "invoices": ({"invoice_id", "customer_id", "due", "amount"}, {"issued", "paid"}),
}


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    line: int
    external_id: str
    name: str
    company: str = ""
    email: str = ""
    phone: str = ""
    fax: str = ""
    tags: tuple[str, ...] = ()
    tier: str | None = None  # a manual override of the computed tier


@dataclass(frozen=True, slots=True)
class OrderRecord:
    line: int
    external_id: str
    customer: str
    ordered_at: float
    amount_cents: int
    product: str = ""


@dataclass(frozen=True, slots=True)
class InvoiceRecord:
    line: int
    external_id: str
    customer: str
    due_at: float
    amount_cents: int
    issued_at: float | None = None
    paid_at: float | None = None


Record = CustomerRecord | OrderRecord | InvoiceRecord


@dataclass
class ParsedFile:
    kind: str
    records: list[Record] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, message)
    notes: list[tuple[int, str]] = field(default_factory=list)  # imported, but worth a look


class CsvError(ValueError):
    """The file as a whole cannot be read (encoding, unknown header)."""


def decode(raw: bytes) -> str:
    """UTF-8 (BOM allowed), else Windows-1252 as German Excel writes it."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def parse_amount(text: str, decimal_comma: bool) -> int:
    """``1.234,56`` (German) or ``1234.56`` -> cents."""
    value = text.strip().replace(" ", "").replace("€", "").replace("EUR", "")
    if decimal_comma and "," in value:
        value = value.replace(".", "").replace(",", ".")
    elif not decimal_comma:
        value = value.replace(",", "")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not an amount: {text!r}") from None
    if not amount.is_finite() or abs(amount) > Decimal("1e12"):
        raise ValueError(f"not a plausible amount: {text!r}")
    return int((amount * 100).quantize(Decimal(1)))


def parse_date(text: str) -> float:
    """``2026-11-26``, ``2026-11-26T10:00[:00][+01:00]`` or ``26.11.2026`` -> epoch seconds
    (dates without a time are midnight UTC)."""
    value = text.strip()
    for pattern in ("%d.%m.%Y", "%d.%m.%Y %H:%M"):
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date: {text!r} (use 2026-11-26 or 26.11.2026)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def parse(raw: bytes, name: str = "file") -> ParsedFile:
    """Parse one CSV export; CsvError when it is not one of the documented files."""
    if len(raw) > MAX_BYTES:
        raise CsvError(f"{name}: larger than {MAX_BYTES // (1024 * 1024)} MiB")
    text = decode(raw)
    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    decimal_comma = delimiter == ";"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = [column.strip().lower() for column in next(reader)]
    except StopIteration:
        raise CsvError(f"{name}: the file is empty") from None
    except csv.Error as exc:
        raise CsvError(f"{name}:1: {exc}") from None
    kind = _kind(header)
    if kind is None:
        expected = "; ".join(f"{k}: {', '.join(sorted(cols[0]))}" for k, cols in COLUMNS.items())
        raise CsvError(
            f"{name}:1: unknown columns {header}; expected at least one set of {expected}"
        )
    parsed = ParsedFile(kind)
    seen: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            parsed.errors.append((reader.line_num, str(exc)))
            continue
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            parsed.errors.append((line, f"{len(row)} fields, the header has {len(header)}"))
            continue
        values = {column: cell.strip() for column, cell in zip(header, row, strict=True)}
        try:
            record = _record(kind, line, values, decimal_comma)
        except ValueError as exc:
            parsed.errors.append((line, str(exc)))
            continue
        if record.external_id in seen:
            parsed.errors.append(
                (line, f"id {record.external_id!r} already on line {seen[record.external_id]}")
            )
            continue
        seen[record.external_id] = line
        parsed.records.append(record)
        note = _note(record, values)
        if note is not None:
            parsed.notes.append((line, note))
    return parsed


def _note(record: Record, values: dict[str, str]) -> str | None:
    """What an admin should see about a row that was imported as it says (a negative amount)."""
    if isinstance(record, OrderRecord) and record.amount_cents < 0:
        return (
            f"amount {values['amount']} is negative: imported as a return "
            "(lowers revenue; not counted as an order)"
        )
    if isinstance(record, InvoiceRecord) and record.amount_cents < 0:
        return (
            f"amount {values['amount']} is negative: imported as a credit note "
            "(not counted for punctuality or as overdue)"
        )
    return None


def _kind(header: list[str]) -> str | None:
    for kind, (required, optional) in COLUMNS.items():
        if required <= set(header) and set(header) <= required | optional:
            return kind
    return None


def _required(values: dict[str, str], column: str) -> str:
    value = values[column]
    if not value:
        raise ValueError(f"{column} is empty")
    if len(value) > 500:
        raise ValueError(f"{column} is longer than 500 characters")
    return value


def _record(kind: str, line: int, values: dict[str, str], decimal_comma: bool) -> Record:
    if kind == "customers":
        tier = values.get("tier", "").upper() or None
        if tier is not None and tier not in TIERS:
            raise ValueError(f"tier must be A, B or C, not {values['tier']!r}")
        tags = tuple(t.strip().lower() for t in values.get("tags", "").split("|") if t.strip())
        return CustomerRecord(
            line=line,
            external_id=_required(values, "customer_id"),
            name=_required(values, "name"),
            company=values.get("company", "")[:500],
            email=values.get("email", "")[:320],
            phone=values.get("phone", "")[:64],
            fax=values.get("fax", "")[:64],
            tags=tags,
            tier=tier,
        )
    if kind == "orders":
        return OrderRecord(
            line=line,
            external_id=_required(values, "order_id"),
            customer=_required(values, "customer_id"),
            ordered_at=parse_date(_required(values, "date")),
            amount_cents=parse_amount(_required(values, "amount"), decimal_comma),
            product=values.get("product", "")[:500],
        )
    paid = values.get("paid", "")
    issued = values.get("issued", "")
    return InvoiceRecord(
        line=line,
        external_id=_required(values, "invoice_id"),
        customer=_required(values, "customer_id"),
        due_at=parse_date(_required(values, "due")),
        amount_cents=parse_amount(_required(values, "amount"), decimal_comma),
        issued_at=parse_date(issued) if issued else None,
        paid_at=parse_date(paid) if paid else None,
    )
