"""Writes the demo CRM data in this folder (customers.csv, orders.csv, invoices.csv).

Deterministic (seeded), so the committed files can be regenerated exactly:
``python config/demo/generate.py``. Dates lie before 2026-11-26.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).parent
FIRST = [
    "Anna",
    "Ben",
    "Clara",
    "David",
    "Emma",
    "Felix",
    "Greta",
    "Hannes",
    "Ida",
    "Jonas",
    "Karla",
    "Lukas",
    "Mia",
    "Noah",
    "Olivia",
    "Paul",
    "Rosa",
    "Simon",
    "Tara",
    "Uwe",
]
LAST = [
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Koch",
    "Richter",
    "Klein",
    "Wolf",
    "Schröder",
    "Neumann",
]
COMPANY = [
    "Apotheke am Markt",
    "Bäckerei Sonnenschein",
    "Praxis Dr. Lang",
    "Hotel Lindenhof",
    "Kanzlei Berg & Partner",
    "Autohaus Kraft",
    "Stadtwerke Nord",
    "",
]
PRODUCTS = [
    "Espressomaschine Pro",
    "Kaffeebohnen 1 kg",
    "Milchaufschäumer",
    "Wartungsset",
    "Filterkartuschen (6er)",
    "Barista-Kurs",
    "Tassen-Set",
    "Entkalker",
]
TODAY = date(2026, 11, 26)


def main() -> None:
    rng = random.Random(2026)
    customers, orders, invoices = [], [], []
    for number in range(1, 301):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        customer_id = f"K{number:05d}"
        ascii_last = last.replace("ü", "ue").replace("ö", "oe").replace("ä", "ae").lower()
        customers.append(
            {
                "customer_id": customer_id,
                "name": f"{first} {last}",
                "company": rng.choice(COMPANY),
                "email": f"{first.lower()}.{ascii_last}{number}@example.com",
                "phone": f"+49 {rng.randint(151, 179)} {rng.randint(1000000, 9999999)}",
                "tags": "|".join(
                    rng.sample(["wholesale", "newsletter", "b2b", "key-account"], rng.randint(0, 2))
                ),
                "tier": "A" if number in (7, 42) else "",
            }
        )
        # a few big spenders, many small ones: revenue follows a long tail
        scale = rng.paretovariate(1.3) * 40
        for _ in range(rng.randint(0, 12)):
            ordered = TODAY - timedelta(days=rng.randint(1, 720))
            amount = round(scale * rng.uniform(0.5, 3.0), 2)
            order_id = f"A{len(orders) + 1:06d}"
            orders.append(
                {
                    "order_id": order_id,
                    "customer_id": customer_id,
                    "date": ordered.isoformat(),
                    "amount": f"{amount:.2f}",
                    "product": rng.choice(PRODUCTS),
                }
            )
            due = ordered + timedelta(days=14)
            late = rng.random()
            paid = (
                ""
                if late < 0.05 and due < TODAY
                else (
                    due + timedelta(days=rng.randint(1, 30))
                    if late < 0.2
                    else due - timedelta(days=rng.randint(0, 10))
                )
            )
            if isinstance(paid, date) and paid > TODAY:
                paid = ""
            invoices.append(
                {
                    "invoice_id": f"R{len(invoices) + 1:06d}",
                    "customer_id": customer_id,
                    "issued": ordered.isoformat(),
                    "due": due.isoformat(),
                    "paid": paid.isoformat() if isinstance(paid, date) else "",
                    "amount": f"{amount:.2f}",
                }
            )
    for name, rows in (("customers", customers), ("orders", orders), ("invoices", invoices)):
        with open(HERE / f"{name}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
