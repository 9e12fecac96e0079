"""A bad tenant config fails with a message naming the file, the field and the problem."""

from pathlib import Path

import pytest
import yaml

from cdp.config import DEFAULT_CONFIG, ConfigError, TenantConfig, load_config


def write(tmp_path: Path, doc) -> Path:
    p = tmp_path / "tenant.yaml"
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return p


def demo_doc() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def test_demo_config_is_valid():
    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.customer_sources == ["pos_customers", "ecommerce_customers", "email_subscribers",
                                    "loyalty_members"]
    assert cfg.sources["loyalty_members"].format == "parquet"
    assert cfg.merge.rule_for("email").sources[0] == "email_subscribers"
    assert cfg.merge.rule_for("city").rule == "most_recent"  # address group


# the customer 360 databases: each error names the database and its field
DATABASE_ERRORS = [
    (lambda d: d["databases"]["email_c360"]["merge"]["fields"]["email"].update(sources=["crm"]),
     "databases.email_c360.merge.fields.email.sources: 'crm' is not a customers source"),
    (lambda d: d["databases"].update(stitch={}),
     "databases.stitch: 'stitch' is a schema of cdp itself"),
    (lambda d: d["databases"].update({"Email-360": {}}),
     "databases.Email-360: database names must be lowercase identifiers"),
    (lambda d: d["databases"]["email_c360"].update(stitch_mode=0.5),
     "databases.email_c360.stitch_mode: 0.5 is below stitch.match_threshold"),
    (lambda d: d["databases"]["email_c360"].update(stitch_mode="fuzzy"),
     "databases.email_c360.stitch_mode"),
    (lambda d: d["databases"].update(c360={}),
     "merge: the rules of database c360 are set in databases.c360.merge"),
    (lambda d: d["databases"]["paid_media_c360"]["merge"]["fields"].update(
        address_group={"rule": "all_values"}),
     "address_group: the address group is taken from one record"),
    (lambda d: d["databases"]["paid_media_c360"]["merge"]["fields"].update(
        email={"rule": "cheapest"}),
     "databases.paid_media_c360.merge.fields.email.rule: Input should be"),
    (lambda d: d["databases"]["paid_media_c360"]["merge"]["fields"].update(
        email={"rule": "source_priority"}),
     "databases.paid_media_c360.merge.fields.email.sources: source_priority needs a list"),
    (lambda d: d["databases"]["paid_media_c360"]["merge"].update(default={"rule": "all_values"}),
     "all_values is a rule for a field"),
]


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["sources"]["pos_customers"]["columns"].update(FirstName="givenname"),
     "sources.pos_customers.columns.FirstName: 'givenname' is not a semantic tag"),
    (lambda d: d["sources"]["pos_customers"]["columns"].pop("CustomerID"),
     "sources.pos_customers.columns: a 'customers' source must tag a column as 'pk'"),
    (lambda d: d["sources"]["pos_orders"].update(customer_source="nowhere"),
     "sources.pos_orders.customer_source: 'nowhere' is not a customers source"),
    (lambda d: d["sources"]["pos_orders"].pop("customer_source"),
     "sources.pos_orders.customer_source: a transactions source must name"),
    (lambda d: d["sources"]["pos_customers"].update(kind="people"),
     "sources.pos_customers.kind: Input should be 'customers'"),
    (lambda d: d["stitch"].update(match_threshold=1.5),
     "stitch.match_threshold: Input should be less than 1"),
    (lambda d: d.update(extra_thing=1), "extra_thing: Extra inputs are not permitted"),
    (lambda d: d["merge"]["fields"].update(shoe_size={"rule": "most_recent"}),
     "merge.fields: 'shoe_size' is not a profile field"),
    (lambda d: d["merge"]["fields"]["email"].update(sources=["crm"]),
     "merge.fields.email.sources: 'crm' is not a customers source"),
    (lambda d: d["sources"]["pos_customers"]["columns"].update(Email="phone"),
     "sources.pos_customers.columns.Phone: tag 'phone' is already given to column 'Email'"),
    (lambda d: d["destinations"]["c360_file_drop"].update(table="customer_360"),
     "destinations.c360_file_drop.table: 'customer_360' is not schema.table"),
    (lambda d: d["destinations"].update(bi={"kind": "postgres"}),
     "destinations.bi.url_env: Field required"),
    (lambda d: d["destinations"].update(bi={"kind": "postgres", "url_env": "X", "tables": ["dim_date"]}),
     "destinations.bi.tables: 'dim_date' is not schema.table"),
    (lambda d: d["sources"]["order_items"].update(order_source="pos_customers"),
     "sources.order_items.order_source: 'pos_customers' is not a transactions source"),
    (lambda d: d["bi"].update(fiscal_year_start_month=13),
     "bi.fiscal_year_start_month: Input should be less than or equal to 12"),
    (lambda d: d["interactions"].update(as_of_date="yesterday"),
     "interactions.as_of_date: Input should be a valid date"),
    (lambda d: d.update(engine="presto"), "engine: Input should be 'duckdb' or 'spark'"),
    (lambda d: d.update(spark={"master": "localhost"}), "spark.master: 'localhost' is not a Spark master URL"),
    (lambda d: d.update(duckdb={"memory_limit": "lots"}), "duckdb.memory_limit: 'lots' is not a memory size"),
] + DATABASE_ERRORS)
def test_config_errors_name_file_and_field(tmp_path, mutate, expected):
    doc = demo_doc()
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message, message


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "tenant: [unclosed"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_cli_reports_config_error(tmp_path, capsys):
    from cdp.cli import main

    doc = demo_doc()
    doc["sources"]["pos_customers"]["columns"]["FirstName"] = "firstname"
    assert main(["check-config", str(write(tmp_path, doc))]) == 2
    assert "sources.pos_customers.columns.FirstName" in capsys.readouterr().err


def test_customer_databases_from_config_and_the_default_c360():
    cfg = load_config(DEFAULT_CONFIG)
    dbs = cfg.customer_databases
    assert list(dbs)[0] == "c360" and {"email_c360", "paid_media_c360"} <= set(dbs)
    assert dbs["c360"].merge.rule_for("email").sources[0] == "email_subscribers"  # top-level merge
    assert dbs["paid_media_c360"].merge.rule_for("email").rule == "all_values"
    assert dbs["operations_c360"].stitch_mode == "deterministic"
    # a config without `databases:` has c360 alone, with its `merge:` rules
    doc = demo_doc()
    doc.pop("databases")
    doc["destinations"], doc["orchestrations"] = {}, {}
    only = TenantConfig.model_validate(doc).customer_databases
    assert list(only) == ["c360"] and only["c360"].merge.rule_for("phone").sources[0] == "loyalty_members"




# ---- tenants without purchase data: entries naming what they cannot build are refused -----------

def scoped_doc(kinds=("customers",)) -> dict:
    """The demo config with only sources of `kinds`, and none of its entries on purchase tables."""
    doc = demo_doc()
    doc["sources"] = {n: s for n, s in doc["sources"].items() if s["kind"] in kinds}
    doc["segments"] = {"reachable_by_email": doc["segments"]["reachable_by_email"]}
    doc["orchestrations"] = {}
    return doc


SCOPE_ERRORS = [
    (("customers",), lambda d: d["segments"].update(demo_doc()["segments"]),
     "segments.bakery_fans.all[0].table: predictive.product_category_propensity is not built for this "
     "tenant (no transactions or transaction_items sources)"),
    (("customers",), lambda d: d["segments"].update(repeat={"column": "order_count", "op": ">", "value": 1}),
     "segments.repeat.column: column 'order_count' of c360.customer_360 comes from orders and is left "
     "out (no transactions sources)"),
    (("customers",), lambda d: d["segments"].update(spenders={"any": [
        {"column": "email", "op": "not_null"},
        {"not": {"table": "paid_media_c360.customer_360", "column": "lifetime_revenue", "op": "<", "value": 9}}]}),
     "segments.spenders.any[1].not.column: column 'lifetime_revenue' of paid_media_c360.customer_360"),
    (("customers",), lambda d: d["destinations"].update(attrs={"table": "interactions.transaction_attributes",
                                                               "path": "out"}),
     "destinations.attrs.table: interactions.transaction_attributes is not built for this tenant "
     "(no transactions sources)"),
    (("customers",), lambda d: d["destinations"]["c360_file_drop"].update(columns=["email", "order_count"]),
     "destinations.c360_file_drop.columns: column 'order_count' of c360.customer_360 comes from orders"),
    (("customers",), lambda d: d["destinations"].update(bi={"kind": "postgres", "url_env": "X",
                                                            "tables": ["bi.fact_sales"]}),
     "destinations.bi.tables: bi.fact_sales is not built for this tenant (no transactions sources)"),
    (("customers",), lambda d: d.update(lakehouse={"folder": "lake", "tables": ["predictive.recommendations"]}),
     "lakehouse.tables: predictive.recommendations is not built for this tenant"),
    (("customers",), lambda d: d["orchestrations"].update(o={"segment": "reachable_by_email",
                                                             "destination": "segment_drops",
                                                             "fields": {"spend": "lifetime_revenue"}}),
     "orchestrations.o.fields.spend: column 'lifetime_revenue' of c360.customer_360 comes from orders"),
    (("customers", "transactions"), lambda d: d["segments"].update(bakers={
        "table": "interactions.transaction_attributes_extended", "column": "preferred_category",
        "op": "=", "value": "Bakery"}),
     "segments.bakers.column: column 'preferred_category' of interactions.transaction_attributes_extended "
     "comes from order lines and is left out (no transaction_items sources)"),
    (("customers", "transactions"), lambda d: d["segments"].update(demo_doc()["segments"]),
     "segments.bakery_fans.all[0].table: predictive.product_category_propensity is not built for this "
     "tenant (no transaction_items sources)"),
]


@pytest.mark.parametrize("kinds, mutate, expected", SCOPE_ERRORS)
def test_entries_on_tables_a_tenant_does_not_build_are_config_errors(tmp_path, kinds, mutate, expected):
    doc = scoped_doc(kinds)
    load_config(write(tmp_path, doc))  # valid as it is
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)


def test_what_a_tenant_builds_follows_from_its_source_kinds(tmp_path):
    from cdp.config.scope import ORDER_LINES, ORDERS, tenant_scope

    doc = scoped_doc()
    doc["destinations"]["bi"] = {"kind": "postgres", "url_env": "X"}
    cfg = load_config(write(tmp_path, doc))
    scope = tenant_scope(cfg)
    assert not scope.has(ORDERS) and not scope.has(ORDER_LINES)
    assert scope.builds("c360.customer_360") and not scope.builds("interactions.unified_transactions")
    # a postgres destination's default tables are those of them the tenant builds
    assert cfg.destinations["bi"].tables == ["c360.customer_360"]
    assert scope.dbt_vars() == {"purchase_data": {"orders": False, "order_lines": False}}

    orders = tenant_scope(load_config(write(tmp_path, scoped_doc(("customers", "transactions")))))
    assert orders.has(ORDERS) and not orders.has(ORDER_LINES)
    assert orders.builds("bi.fact_sales") and not orders.builds("bi.fact_sales_items")
    assert tenant_scope(load_config(DEFAULT_CONFIG)).left_out_tables() == {}


def test_duckdb_settings_reach_cdp_connections_and_dbt(tmp_path):
    """duckdb: memory_limit and temp_directory apply to the run's connections to the warehouse
    and are handed to dbt's profile; unset, DuckDB's defaults."""
    import duckdb

    from cdp.dbt.project import dbt_env
    from cdp.engine.duckdb import DuckDBWarehouse

    doc = demo_doc()
    doc["duckdb"] = {"memory_limit": "700MB", "temp_directory": "spill"}
    cfg = load_config(write(tmp_path, doc), warehouse=str(tmp_path / "w.duckdb"))
    with DuckDBWarehouse(cfg).connect() as con:
        limit, temp = con.execute("select current_setting('memory_limit'), current_setting('temp_directory')").fetchone()
    assert limit.replace(" ", "") in ("667.5MiB", "700.0MB") and temp == str(tmp_path / "spill")
    assert dbt_env(cfg)["CDP_DUCKDB_MEMORY_LIMIT"] == "700MB"
    assert dbt_env(cfg)["CDP_DUCKDB_TEMP_DIRECTORY"] == str(tmp_path / "spill")
    plain = load_config(write(tmp_path, demo_doc()), warehouse=str(tmp_path / "w.duckdb"))
    assert plain.duckdb_connection_config == {} and dbt_env(plain)["CDP_DUCKDB_MEMORY_LIMIT"] == "80%"
    with duckdb.connect() as con:
        default = con.execute("select current_setting('memory_limit')").fetchone()[0]
    with DuckDBWarehouse(plain).connect() as con:
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == default
