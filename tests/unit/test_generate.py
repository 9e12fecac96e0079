"""The demo generator: seeded, realistic noise, and a ground truth for every loadable record."""

import csv
import hashlib

import pandas as pd
import pyarrow.parquet as pq
import pytest

from cdp.demo.generate import CUSTOMER_FILES, generate_demo_data
from cdp.demo.keys import DemoKeys, StreamedKeys, TakenEmails


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


# ---- the streamed generator (customers only, written in batches) ------------------------------

STREAM_PEOPLE, STREAM_BATCH = 3000, 700  # 5 batches; 3000 // 500 = 6 broken lines of each kind,
# where 5 batches each deciding on their own would write max(1, 700 // 500) = 1 each, 5 in all


@pytest.fixture(scope="module")
def streamed(tmp_path_factory):
    out = tmp_path_factory.mktemp("streamed")
    counts = generate_demo_data(out, people=STREAM_PEOPLE, seed=5, customers_only=True,
                                batch_size=STREAM_BATCH)
    return out, counts


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_shot")
    generate_demo_data(out, people=STREAM_PEOPLE, seed=5, customers_only=True)
    return out


def _pos_lines(folder):
    with open(folder / "pos_customers.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def _loadable(folder) -> dict[str, pd.DataFrame]:
    """Each customer file's records that should load (POS: a key and the right column count)."""
    header, body = _pos_lines(folder)
    pos = pd.DataFrame([r for r in body if len(r) == len(header) and r[0] != ""], columns=header)
    return {"pos_customers": pos,
            "ecommerce_customers": pd.read_csv(folder / "ecommerce_customers.csv", dtype=str,
                                               keep_default_na=False),
            "email_subscribers": pd.read_csv(folder / "email_subscribers.csv", dtype=str,
                                             keep_default_na=False),
            "loyalty_members": pq.read_table(folder / "loyalty_members.parquet").to_pandas()}


PK = {"pos_customers": "CustomerID", "ecommerce_customers": "customer_id",
      "email_subscribers": "subscriber_key", "loyalty_members": "member_id"}


def test_streamed_keys_are_unique_across_batches(streamed):
    out, counts = streamed
    records = _loadable(out)
    for source, frame in records.items():
        if source == "pos_customers":  # the deliberately re-used key aside
            frame = frame[frame["FirstName"] != "Duplicate"]
        assert frame[PK[source]].is_unique, source
    assert pq.ParquetFile(out / "loyalty_members.parquet").num_row_groups == 5  # one per batch
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    assert not truth.duplicated(["source", "pk"]).any()
    assert set(truth["person_id"]) == {f"T{n:07d}" for n in range(1, STREAM_PEOPLE + 1)}
    households = truth.drop_duplicates("person_id").groupby("household_id").size()
    assert set(households.index) == {f"H{n:07d}" for n in range(1, len(households) + 1)}
    assert households.max() <= 4  # a counter restarting per batch would merge households
    assert counts["ground_truth.csv"] == len(truth)


def test_streamed_truth_and_records_match_one_for_one(streamed):
    out, _ = streamed
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    for source, frame in _loadable(out).items():
        assert set(frame[PK[source]]) == set(truth.loc[truth["source"] == source, "pk"]), source
        if source != "pos_customers":
            assert len(frame) == (truth["source"] == source).sum(), source


def test_streamed_broken_lines_scale_with_the_whole_set(streamed):
    out, _ = streamed
    header, body = _pos_lines(out)
    k = STREAM_PEOPLE // 500
    assert sum(len(r) != len(header) for r in body) == k  # a stray comma
    whole = [r for r in body if len(r) == len(header)]
    assert sum(r[0] == "" for r in whole) == k  # no key
    assert sum(r[1] == "Duplicate" for r in whole) == k  # a re-used key
    birth = header.index("BirthDate")
    assert sum(r[birth] == "02/30/1985" and r[0] != "" and r[1] != "Duplicate" for r in whole) == k


def test_streamed_emails_stay_unique_across_batches(streamed):
    out, _ = streamed
    truth = pd.read_csv(out / "ground_truth.csv", dtype=str, keep_default_na=False)
    web = _loadable(out)["ecommerce_customers"].merge(
        truth[truth["source"] == "ecommerce_customers"], left_on="customer_id", right_on="pk")
    # a mailbox is one person's, or one household's family address, never two households'
    assert web.groupby("email_address")["household_id"].nunique().max() == 1


def _filled(frame: pd.DataFrame) -> pd.Series:
    return frame.apply(lambda c: (c.notna() & (c.astype(str) != "")).mean())


def test_streamed_columns_fill_like_the_one_shot_generator(streamed, one_shot):
    out, _ = streamed
    fresh, reference = _loadable(out), _loadable(one_shot)
    for source in fresh:
        assert abs(len(fresh[source]) / len(reference[source]) - 1) < 0.1, source
        gap = (_filled(fresh[source]) - _filled(reference[source])).abs()
        assert gap.max() < 0.05, (source, gap.idxmax(), gap.max())


def test_streamed_path_is_seeded(streamed, tmp_path):
    out, _ = streamed
    generate_demo_data(tmp_path, people=STREAM_PEOPLE, seed=5, customers_only=True,
                       batch_size=STREAM_BATCH)
    assert _digest(out) == _digest(tmp_path)


def test_batches_write_customer_sources_only(tmp_path):
    with pytest.raises(ValueError, match="customers_only=True"):
        generate_demo_data(tmp_path, people=100, batch_size=50)


def test_streamed_keys_never_clash_and_ids_widen_together():
    keys = StreamedKeys(5_012_531, secret=7)
    subscriber_keys = {keys.subscriber_key(None) for _ in range(50_000)}
    assert len(subscriber_keys) == 50_000 and all(len(k) == 12 for k in subscriber_keys)
    assert keys.person_id() == "T0000001" and keys.household_id() == "H0000001"
    assert keys.pos_key() == "P00000001"  # two till records a person may pass 9,999,999
    assert keys.loyalty_key() == "M0100001"
    assert DemoKeys(2000).pos_key() == "P0000001"


def test_taken_emails_remember_earlier_batches():
    taken = TakenEmails()
    taken.add("ann.lee@gmail.com")
    taken.seal()
    taken.add("bob.ray@yahoo.com")
    assert "ann.lee@gmail.com" in taken and "bob.ray@yahoo.com" in taken
    assert "ann.lee2@gmail.com" not in taken
    taken.seal()
    assert "bob.ray@yahoo.com" in taken and "carl@aol.com" not in taken
