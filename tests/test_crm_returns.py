"""Negative amounts in CRM exports (issue 14 item 15): they were accepted silently, and a
return counted as an order — the latest one, so it became the customer's "last purchase". A
negative order is now a return, a negative invoice a credit note, both noted with file:line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hub.customers import csvimport
from hub.customers.valuation import DAY, Invoice, Order, compute

ROOT = Path(__file__).resolve().parent.parent


def test_negative_amounts_are_imported_and_noted_with_their_line() -> None:
    orders = csvimport.parse(
        b"order_id,customer_id,date,amount,product\n"
        b"O1,K1,2026-11-01,100.00,Espressomaschine\n"
        b"R1,K1,2026-11-10,-30.00,Ruecksendung Tassen\n",
        "o.csv",
    )
    assert orders.errors == []
    assert [r.amount_cents for r in orders.records] == [10_000, -3_000]  # type: ignore[union-attr]
    [(line, note)] = orders.notes
    assert line == 3 and "-30.00" in note and "return" in note
    german = csvimport.parse(
        "invoice_id;customer_id;due;amount\nG1;K1;15.11.2026;-1.234,50 €\n".encode("cp1252"),
        "i.csv",
    )
    assert german.records[0].amount_cents == -123_450  # type: ignore[union-attr]
    [(line, note)] = german.notes
    assert line == 2 and "credit note" in note


def test_a_return_lowers_revenue_but_is_not_an_order() -> None:
    now = 400 * DAY
    orders = [
        Order("a", now - 20 * DAY, 10_000, "Espressomaschine"),
        Order("a", now - 5 * DAY, -3_000, "Rücksendung Tassen"),
        Order("b", now - 10 * DAY, 1_000, "Tee"),
    ]
    invoices = [
        Invoice("a", now - 15 * DAY, 10_000, paid_at=now - 16 * DAY),  # paid on time
        Invoice("a", now - 4 * DAY, -3_000),  # the credit note: nothing is due on it
    ]
    stats = compute("ab", orders, invoices, now)
    a = stats["a"]
    assert (a.lifetime_value_cents, a.revenue_window_cents) == (7_000, 7_000)
    assert (a.orders_window, a.orders_12m) == (1, 1)
    assert (a.last_purchase, a.last_order_at) == ("Espressomaschine", now - 20 * DAY)
    assert (a.payment_punctuality, a.overdue_invoices) == (1.0, 0)
    assert (a.abc, stats["b"].abc) == ("A", "B")  # net 70 of 80: a's return counts


def test_the_import_command_names_each_negative_amount(tmp_path: Path) -> None:
    config = tmp_path / "hub.yaml"
    config.write_text(
        f"storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/hub.db', blobs: '{tmp_path}/blobs'}}\n"
    )
    (tmp_path / "c.csv").write_text("customer_id,name\nK1,Anna\n")
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,date,amount,product\n"
        "O1,K1,2026-11-01,100.00,Espressomaschine\n"
        "R1,K1,2026-11-10,-30.00,Ruecksendung\n"
        "R2,K9,2026-11-10,-5.00,unknown customer\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "customers",
            "import",
            str(tmp_path / "c.csv"),
            str(tmp_path / "o.csv"),
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
    )
    assert result.returncode == 1  # R2's customer is unknown: rejected, not noted
    orders = tmp_path / "o.csv"
    assert f"{orders}:3: note: amount -30.00 is negative: imported as a return" in result.stderr
    assert f"{orders}:4: unknown customer_id 'K9'" in result.stderr
    assert f"{orders}:4: note" not in result.stderr
    assert "orders: 2 new" in result.stdout and "1 rejected, 1 noted" in result.stdout
