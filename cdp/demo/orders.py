"""The demo's products and purchase histories: repeat buyers, category preferences and a
Nov/Dec peak."""

from __future__ import annotations

import datetime as dt
import random

from cdp.demo.noise import random_timestamp
from cdp.demo.people import Person
from cdp.demo.world import BRANDS, CATEGORIES, END_DATE, MONTH_WEIGHT, STORES


def make_products(rng: random.Random) -> list[dict]:
    products = []
    for category, (nouns, (low, high)) in CATEGORIES.items():
        for noun in nouns:
            for brand in rng.sample(BRANDS, 3):
                products.append({"sku": f"SKU-{len(products) + 1:05d}",
                                 "product_name": f"{brand} {noun}", "category": category,
                                 "brand": brand, "list_price": f"{rng.uniform(low, high):.2f}"})
    return products


def _order_dates(rng: random.Random, p: Person) -> list[dt.datetime]:
    start, end = p.first_seen, min(p.churn_date, END_DATE)
    years = max((end - start).days, 1) / 365
    n = 0
    expected = p.orders_per_year * years
    while expected > 0:  # Poisson-ish count without numpy
        if rng.random() < min(expected, 1.0):
            n += 1
        expected -= 1.0
    dates = []
    while len(dates) < n:
        ts = random_timestamp(rng, start, end)
        if rng.random() < MONTH_WEIGHT[ts.month] / 1.8:
            dates.append(ts)
    return sorted(dates)


def make_orders(rng, people: list[Person], products: list[dict]):
    """Every person's purchase history, drawn from the orders' own random generator: a personal
    purchase rate until they churn, a Nov/Dec peak, baskets from their favourite categories,
    a home store, and some returns and cancellations."""
    by_category: dict[str, list[dict]] = {}
    for prod in products:
        by_category.setdefault(prod["category"], []).append(prod)
    categories = list(CATEGORIES)
    pos_orders, web_orders, items = [], [], []
    for p in people:
        channels = [s for s in ("pos_customers", "ecommerce_customers") if s in p.records]
        if not channels or p.orders_per_year == 0:
            continue
        home_store = rng.choice(STORES)
        for ts in _order_dates(rng, p):
            source = rng.choice(channels)
            lines = []
            for line_no in range(1, rng.choice([1, 2, 2, 3, 3, 4, 5, 6, 8]) + 1):
                category = rng.choices(categories, weights=p.category_weights)[0]
                prod = rng.choice(by_category[category])
                qty = rng.choice([1, 1, 1, 2, 2, 3])
                unit = round(float(prod["list_price"]) * rng.choice([1, 1, 1, 0.9, 0.8]), 2)
                lines.append((line_no, prod["sku"], qty, unit, round(qty * unit, 2)))
            subtotal = round(sum(line[4] for line in lines), 2)
            discount = round(subtotal * 0.1, 2) if rng.random() < 0.15 else 0.0
            total = round(subtotal - discount, 2)
            if source == "pos_customers":
                order_id = f"R{len(pos_orders) + 1:08d}"
                status = "void" if rng.random() < 0.02 else "completed"
                # a refund at the till gives back one line of the basket
                refund = lines[rng.randrange(len(lines))][4] if status == "completed" and \
                    len(lines) > 1 and rng.random() < 0.04 else None
                pos_orders.append({
                    "order_id": order_id, "customer_id": rng.choice(p.records[source]),
                    "store_id": home_store if rng.random() < 0.85 else rng.choice(STORES),
                    "order_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
                    "order_total": f"{total:.2f}", "discount": f"{discount:.2f}",
                    "status": status, "refund_amount": f"{min(refund, total):.2f}" if refund else ""})
            else:
                order_id = f"W{len(web_orders) + 1:08d}"
                status = rng.choices(["completed", "returned", "cancelled"], [0.92, 0.04, 0.04])[0]
                web_orders.append({
                    "order_id": order_id, "customer_id": rng.choice(p.records[source]),
                    "order_ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "channel": rng.choice(["web", "web", "app"]),
                    "order_total": f"{total:.2f}", "discount": f"{discount:.2f}",
                    "status": status})
            for line_no, sku, qty, unit, line_total in lines:
                items.append({"order_id": order_id, "line_number": line_no, "sku": sku,
                              "quantity": qty, "unit_price": f"{unit:.2f}",
                              "line_total": f"{line_total:.2f}"})
    pos_orders.sort(key=lambda o: o["order_ts"])
    web_orders.sort(key=lambda o: o["order_ts"])
    for row in rng.sample(pos_orders, min(len(pos_orders), max(1, len(pos_orders) // 400))):
        row["order_total"] = "N/A"  # till glitch: quarantined as an invalid order revenue
    return pos_orders, web_orders, items
