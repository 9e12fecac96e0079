"""The demo generator: seeded, realistic noise, and a ground truth for every loadable record."""

import csv
import hashlib

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cdp.demo.generate import CUSTOMER_FILES, generate_demo_data


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    counts = generate_demo_data(out, people=600, seed=11)
    return out, counts


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_same_seed_same_files_other_seed_other_files(demo, tmp_path):
    out, _ = demo
    generate_demo_data(tmp_path / "again", people=600, seed=11)
    generate_demo_data(tmp_path / "other", people=600, seed=12)
    assert _digest(out) == _digest(tmp_path / "again")
    assert _digest(out)["pos_customers.csv"] != _digest(tmp_path / "other")["pos_customers.csv"]


def test_four_customer_sources_transactions_and_catalog(demo):
    out, counts = demo
    for name in ["pos_customers.csv", "ecommerce_customers.csv", "email_subscribers.csv",
                 "loyalty_members.parquet", "pos_orders.csv", "ecommerce_orders.csv",
                 "order_items.csv", "products.csv", "ground_truth.csv"]:
        assert (out / name).exists() and counts[name] > 0, name
    assert pq.ParquetFile(out / "loyalty_members.parquet").metadata.num_rows == counts["loyalty_members.parquet"]


def test_ground_truth_covers_every_loadable_customer_record(demo):
    out, _ = demo
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert not truth.duplicated(["source", "pk"]).any()
    assert truth["person_id"].nunique() == 600
    pos = pd.read_csv(out / "pos_customers.csv", dtype=str, keep_default_na=False,
                      on_bad_lines="skip")
    loadable = set(pos.loc[pos["CustomerID"] != "", "CustomerID"])
    assert loadable == set(truth.loc[truth["source"] == "pos_customers", "pk"])
    loyalty = pq.read_table(out / "loyalty_members.parquet").to_pandas()
    assert set(loyalty["member_id"]) == set(truth.loc[truth["source"] == "loyalty_members", "pk"])
    # people appear in several sources, and some more than once in one source
    per_person = truth.groupby("person_id")["source"].agg(["size", "nunique"])
    assert (per_person["nunique"] >= 3).any()
    assert (per_person["size"] > per_person["nunique"]).any()
    # households: several people share one household id
    assert (truth.groupby("household_id")["person_id"].nunique() >= 2).any()


def test_sources_carry_real_world_noise(demo):
    out, _ = demo
    pos = pd.read_csv(out / "pos_customers.csv", dtype=str, keep_default_na=False, on_bad_lines="skip")
    web = pd.read_csv(out / "ecommerce_customers.csv", dtype=str, keep_default_na=False)
    assert pos["Email"].isin(["test@test.com", "none@none.com", "noemail@example.com"]).any()
    assert pos["Phone"].isin(["000-000-0000", "999-999-9999", "111-111-1111"]).any()
    assert (pos["Email"] == "").mean() > 0.2  # missing fields
    assert pos["Phone"].str.match(r"^\(\d{3}\) \d{3}-\d{4}$").any()  # formats differ per source
    assert web["phone_number"].str.match(r"^\+1 \d{3}-\d{3}-\d{4}$").any()
    assert web["postal_code"].str.match(r"^\d{5}-\d{4}$").any()
    assert (pos["Zip"].str.len() < 5).any()  # leading zero lost by a spreadsheet
    assert (pos["BirthDate"] == "02/30/1985").any()
    # a shared household email used by different people
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    emails = pd.concat([
        pos[["CustomerID", "Email"]].set_axis(["pk", "email"], axis=1).assign(source="pos_customers"),
        web[["customer_id", "email_address"]].set_axis(["pk", "email"], axis=1)
        .assign(source="ecommerce_customers")])
    emails = emails[emails["email"].str.startswith("the")].merge(truth, on=["source", "pk"])
    assert (emails.groupby("email")["person_id"].nunique() > 1).any()


def test_broken_lines_are_present_in_pos_customers(demo):
    out, _ = demo
    with open(out / "pos_customers.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert any(len(r) != len(header) for r in body)  # a stray comma
    ids = [r[0] for r in body if len(r) == len(header)]
    assert "" in ids  # a record without a key
    assert len(ids) != len(set(ids))  # a re-used key
    orders = pd.read_csv(out / "pos_orders.csv", dtype=str, keep_default_na=False)
    assert (orders["order_total"] == "N/A").any()


def test_purchases_have_structure(demo):
    out, _ = demo
    items = pd.read_csv(out / "order_items.csv")
    products = pd.read_csv(out / "products.csv")
    web = pd.read_csv(out / "ecommerce_orders.csv")
    pos = pd.read_csv(out / "pos_orders.csv", keep_default_na=False)
    orders = pd.concat([web[["order_id", "customer_id", "order_ts"]],
                        pos[["order_id", "customer_id", "order_ts"]]])
    assert set(items["order_id"]) <= set(orders["order_id"])
    assert set(items["sku"]) <= set(products["sku"])
    per_customer = orders.groupby("customer_id").size()
    assert (per_customer >= 5).any() and (per_customer == 1).any()  # repeat and one-time buyers
    months = pd.to_datetime(orders["order_ts"].str.slice(0, 10)).dt.month
    assert (months == 12).mean() > (months == 2).mean()  # holiday peak
    assert set(web["status"]) >= {"completed", "returned", "cancelled"}
    assert (pos["status"] == "void").any() and (pos["refund_amount"] != "").any()  # till voids, refunds
    # people have favourite categories: a buyer's top category takes far more than 1/10 of lines
    lines = items.merge(products[["sku", "category"]], on="sku").merge(orders, on="order_id")
    shares = lines.groupby(["customer_id", "category"]).size() / lines.groupby("customer_id").size()
    busy = lines.groupby("customer_id").size() >= 20
    assert shares.groupby(level=0).max()[busy].mean() > 0.3


def test_customer_files_do_not_depend_on_the_order_stream(demo, tmp_path):
    out, _ = demo
    generate_demo_data(tmp_path, people=600, seed=11, customers_only=True)
    for name in CUSTOMER_FILES + ["ground_truth.csv"]:
        assert _digest(out)[name] == _digest(tmp_path)[name], name


def test_too_few_people_is_refused(tmp_path):
    with pytest.raises(ValueError, match="at least 10"):
        generate_demo_data(tmp_path, people=3)
