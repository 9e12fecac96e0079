"""Interaction models (real dbt on DuckDB) against values computed by hand on a tiny tenant.

tests/tiny/ holds 4 customer records (c1 and c2 are one person, P1), 8 orders (a partial
return, a cancellation, a full return, an order after the as-of date, an unknown customer),
10 order lines (one of an unknown order, one of a product in no catalogue) and 3 products.
Stitch is not run: the cdp_ids are fixed here so every expected value can be worked out.
"""

import pandas as pd

def _rows(con, sql):
    df = con.execute(sql).df()
    return {r[df.columns[0]]: r for r in df.to_dict("records")}


def test_unified_transactions_handle_returns_and_cancellations(tiny):
    orders = _rows(tiny, "select * from interactions.unified_transactions")
    assert len(orders) == 8
    o3 = orders["shop_orders:O3"]  # partial return of 30
    assert (o3["returned_revenue"], o3["net_revenue"], o3["is_return"], o3["is_fully_returned"]) == \
        (30.0, 50.0, True, False)
    o4 = orders["shop_orders:O4"]
    assert o4["is_cancelled"] and o4["net_revenue"] == 0 and o4["returned_revenue"] == 0
    o5 = orders["shop_orders:O5"]  # status 'returned', no amount: the whole order
    assert o5["is_fully_returned"] and o5["returned_revenue"] == 60.0 and o5["net_revenue"] == 0
    assert orders["shop_orders:O1"]["cdp_id"] == "P1" and orders["shop_orders:O2"]["cdp_id"] == "P1"
    assert pd.isna(orders["shop_orders:O8"]["cdp_id"])  # unknown customer kept, not dropped
    assert (orders["shop_orders:O1"]["item_count"], orders["shop_orders:O1"]["item_units"]) == (2, 3)
    assert orders["shop_orders:O2"]["order_discount"] == 5.0
    assert orders["shop_orders:O1"]["store_id"] == "S1" and orders["shop_orders:O2"]["channel"] == "web"


def test_itemized_transactions_and_catalog(tiny):
    items = _rows(tiny, "select * from interactions.unified_itemized_transactions")
    assert len(items) == 10  # every line, including the one of an unknown order
    assert pd.isna(items["shop_items:O99:1"]["order_key"])
    assert items["shop_items:O3:1"]["net_item_revenue"] == 50.0   # 80 less the 30 returned
    assert items["shop_items:O4:1"]["net_item_revenue"] == 0      # cancelled
    assert items["shop_items:O1:1"]["product_category"] == "Bakery"
    assert items["shop_items:O1:1"]["cdp_id"] == "P1"
    catalog = _rows(tiny, "select * from interactions.unified_product_catalog")
    assert set(catalog) == {"A1", "B1", "C1", "ZZ"}
    assert not catalog["ZZ"]["in_catalog"] and catalog["A1"]["in_catalog"]
    assert catalog["ZZ"]["product_category"] == "Unknown" and catalog["A1"]["product_name"] == "Sourdough"


def test_transaction_attributes_match_hand_computed_values(tiny):
    attrs = _rows(tiny, "select * from interactions.transaction_attributes")
    assert set(attrs) == {"P1", "P2"}  # P3 only bought after the as-of date
    p1 = attrs["P1"]  # O1 100 (store), O2 50 (web), O3 80-30 (store); O4 cancelled
    assert str(p1["first_order_date"])[:10] == "2025-01-10" and str(p1["last_order_date"])[:10] == "2026-03-01"
    assert (p1["first_order_revenue"], p1["first_order_channel"]) == (100.0, "store")
    assert (p1["last_order_revenue"], p1["last_order_channel"]) == (50.0, "store")
    assert (p1["order_count"], p1["return_count"]) == (3, 1)
    assert (p1["lifetime_revenue"], p1["returned_revenue"], p1["average_order_value"]) == (200.0, 30.0, 66.67)
    assert (p1["orders_12m"], p1["revenue_12m"], p1["days_since_last_order"]) == (1, 50.0, 121)
    p2 = attrs["P2"]  # O5 60 returned in full, O6 25
    assert (p2["order_count"], p2["return_count"], p2["lifetime_revenue"], p2["returned_revenue"]) == \
        (1, 1, 25.0, 60.0)
    assert (p2["first_order_revenue"], p2["average_order_value"], p2["days_since_last_order"]) == (0.0, 25.0, 20)


def test_extended_attributes_match_hand_computed_values(tiny):
    ext = _rows(tiny, "select * from interactions.transaction_attributes_extended")
    p1 = ext["P1"]
    # Bakery: 60 (O1) + 50 (O3 net) = 110 beats Dairy: 40 + 50 = 90
    assert (p1["first_product_category"], p1["last_product_category"], p1["preferred_category"]) == \
        ("Bakery", "Bakery", "Bakery")
    assert (p1["category_count"], p1["units_purchased"]) == (2, 5)
    assert (p1["preferred_channel"], p1["preferred_store"]) == ("store", "S1")
    assert str(p1["second_order_date"])[:10] == "2025-02-01"
    assert (p1["is_one_and_done"], p1["is_early_repeat_purchaser"], p1["is_multichannel_buyer"]) == \
        (False, True, True)
    p2 = ext["P2"]  # the returned order is not a repeat purchase
    assert (p2["is_one_and_done"], p2["is_early_repeat_purchaser"], p2["is_multichannel_buyer"]) == \
        (True, False, False)
    assert pd.isna(p2["second_order_date"]) and p2["preferred_store"] == "S2"
    assert (p2["preferred_category"], p2["units_purchased"]) == ("Snacks", 1)
