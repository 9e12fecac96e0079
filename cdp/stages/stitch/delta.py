"""Stitch, incremental preprocessing: find what changed since the last stitched state and
preprocess only that.

The delta, in SQL passes (no Python loop over records), none of which stages every record again:
  * new / changed / deleted: a digest of each domain record's columns that staging reads
    against stitch.record_digests; only the new and changed records are staged, and the staged
    records of the last state (stitch.staged_records) stand for the rest;
  * blocklist: a value's standing depends only on the records that carry it, so only the values
    the new, changed and deleted records carry (before and after) are counted again, over every
    record; the records holding a value that entered or left the blocklist are preprocessed again;
  * initial key: an initial key ('mpoole') is evidence only where it fits one person in its
    postal code, so a delivery can make another record's key ambiguous (or clear again):
    counted from every record's stored keys (stitch.initial_key_uses) for the keys the delta
    touches, and those records are preprocessed again.
Misspelt nicknames are not recomputed: the table of the last full run is used (a record keeps
the alias it was stitched with; the periodic full rebuild refreshes it).

The delta rows are preprocessed exactly as in a full run and replace their rows in
stitch.unified_preprocessed_raw; the delta is added to the pending stitch.stitch_delta (with the
rows they had before in stitch.stitch_delta_old) for stitch_match.
"""

import pandas as pd

from cdp.engine.tables import transaction
from cdp.stages.stitch import state as stm
from cdp.config import TenantConfig
from cdp.stages.stitch.preprocess import (BLOCKED_FIELDS, DETECTED_FIELDS, KEYED, RECORDS, STORED_MISSPELT,
                                          MISSPELT_TABLE, ambiguous_keys_sql, blocklist_frame,
                                          configured_blocklist_rows, configured_values, customer_union_sql,
                                          detected_blocklist_rows, initial_key_uses_sql, key_records,
                                          prepare_for_matching, stage_customer_records,
                                          staged_from_columns)

PREPARED = "stitch.unified_preprocessed_raw"


def digest_sql(cfg: TenantConfig) -> str:
    """SQL (unique_id, digest): a 64-bit hash over the domain columns staging reads, of every
    customer record (md5 over the columns cast to text costs over twice as much; a changed record
    keeps its hash with odds of 1 in 2^64; a DuckDB upgrade that changed the hash would make one
    delivery look whole)."""
    return (f"select source || '|' || pk as unique_id, hash({', '.join(staged_from_columns(cfg))}) as digest "
            f"from ({customer_union_sql(cfg)})")


KEY_USES = "stitch.initial_key_uses"   # key, value, person, unique_id: every initial key as written
STAGED = stm.STAGED                    # every record as staged (RECORDS) in the stitched state
NOW = "_stitch_records_now"            # view: every record as staged after this delivery


def write_full_state(con, cfg: TenantConfig) -> None:
    """After a full preprocessing: every record's digest, staged row and initial keys, the
    misspelt nicknames it used, no pending delta."""
    con.execute(f"create or replace table {stm.DIGESTS} as {digest_sql(cfg)}")
    con.execute(f"create or replace table {STAGED} as select * from {RECORDS}")
    con.execute(f"create or replace table {KEY_USES} as {initial_key_uses_sql(PREPARED)}")
    con.execute(f"create or replace table {STORED_MISSPELT} as select * from {MISSPELT_TABLE}")
    for table in (stm.PENDING, stm.PENDING_OLD):
        con.execute(f"drop table if exists {table}")


def find_delta(con, cfg: TenantConfig) -> tuple[dict[str, int], pd.DataFrame]:
    """Temp table _delta (unique_id, change): new, changed, deleted, blocklist, initial key;
    _digests_now: the digests of the domain records; the view NOW: every record as staged now
    (the stored staged rows, the new and changed ones staged again). Returns the count per
    change and the blocklist after this delivery."""
    con.execute(f"create or replace temp table _digests_now as {digest_sql(cfg)}")
    con.execute(f"""
        create or replace temp table _delta as
        select coalesce(n.unique_id, b.unique_id) as unique_id,
               case when b.unique_id is null then 'new' when n.unique_id is null then 'deleted'
                    else 'changed' end as change
        from _digests_now n full outer join {stm.DIGESTS} b using (unique_id)
        where n.digest is distinct from b.digest""")
    con.execute("create or replace temp table _delta_content as select unique_id from _delta")
    stage_customer_records(con, cfg, stored_misspelt=True, only="_delta_content", out="_restaged")
    con.execute(f"""create or replace temp view {NOW} as
                    select * from {STAGED} where unique_id not in (select unique_id from _delta_content)
                    union all select * from _restaged""")
    blocklist = blocklist_after(con, cfg)
    _blocklist_flips(con, blocklist)
    con.execute(f"create or replace temp table _delta_old as select * from {PREPARED} "
                "where unique_id in (select unique_id from _delta)")
    _initial_key_flips(con, blocklist)
    return dict(con.execute("select change, count(*) from _delta group by 1").fetchall()), blocklist


def blocklist_after(con, cfg: TenantConfig) -> pd.DataFrame:
    """The blocklist a full recount over NOW would give, counting again only what the delta
    can change: the configured values' records, and the detected standing of the values the
    new, changed and deleted records carry before or after (a value no delta record carries
    keeps its records, so its standing). Same rows, same order as preprocess.build_blocklist.
    Two scans of the stored staged rows, whatever the fields: the delta's rows before, then
    every record carrying a value counted again (_carriers), which the counts read."""
    configured = configured_values(cfg)
    before = con.execute("select field, value, reason, records_touched from stitch.blocklist "
                         "where reason <> 'configured'").df()
    con.execute(f"""create or replace temp table _delta_staged_before as select * from {STAGED}
                    where unique_id in (select unique_id from _delta_content)""")
    con.register("_configured_values", pd.DataFrame(
        [(f, v) for f, values in configured.items() for v in values], columns=["field", "value"]).astype(str))
    try:
        con.execute(f"""create or replace temp table _touched_values as
                        select distinct field, value from (
                            {" union all ".join(f"select '{f}' as field, {f} as value from _delta_staged_before "
                                                f"union all select '{f}', {f} from _restaged" for f in DETECTED_FIELDS)})
                        where value is not null
                        union select field, value from _configured_values""")
    finally:
        con.unregister("_configured_values")
    carried = " or ".join(f"{f} in (select value from _touched_values where field = '{f}')"
                          for f in dict.fromkeys([*DETECTED_FIELDS, *configured]))
    columns = ", ".join(dict.fromkeys([*DETECTED_FIELDS, *configured, "given_name_alias"]))
    con.execute(f"create or replace temp table _carriers as select {columns} from {NOW} where {carried}")
    rows = configured_blocklist_rows(con, cfg, "_carriers")
    touched = con.execute("select field, value from _touched_values").df()
    for field in DETECTED_FIELDS:
        kept = before[(before["field"] == field)
                      & ~before["value"].isin(touched.loc[touched["field"] == field, "value"])]
        counted = detected_blocklist_rows(
            con, cfg, field, f"select {field} as value, given_name_alias as given from _carriers "
                             f"where {field} in (select value from _touched_values where field = '{field}')")
        rows += sorted([*kept.to_dict("records"), *counted], key=lambda r: r["value"])
    for table in ("_touched_values", "_carriers", "_delta_staged_before"):
        con.execute(f"drop table if exists {table}")
    return blocklist_frame(rows)


def _blocklist_flips(con, blocklist: pd.DataFrame) -> None:
    """Records (unchanged otherwise) holding a value that entered or left the blocklist."""
    con.register("_blocklist_now", blocklist[["field", "value"]])
    try:
        con.execute("""create or replace temp table _blocklist_flips as
                       (select field, value from _blocklist_now except select field, value from stitch.blocklist)
                       union all
                       (select field, value from stitch.blocklist except select field, value from _blocklist_now)""")
    finally:
        con.unregister("_blocklist_now")
    holders = " or ".join(f"{f} in (select value from _blocklist_flips where field = '{f}')"
                          for f in BLOCKED_FIELDS)
    con.execute(f"""insert into _delta
                    select unique_id, 'blocklist' from {NOW} where ({holders})
                    and unique_id not in (select unique_id from _delta)""")


def _initial_key_flips(con, blocklist: pd.DataFrame) -> None:
    """_ambiguous_after (key, value): the standing after this delivery of every initial key a
    record to preprocess carries (those that fit two or more people); the records holding a
    key whose standing changed join _delta ('initial key'). Counted from the stored keys of
    every record (KEY_USES) for the keys the delta touches, not from the records themselves.
    A record's stored keys follow from its preprocessed row (KEY_USES is written from them), so
    the keys the delta's records held before are read off their old rows (_delta_old), not
    looked up in KEY_USES: two scans of it (every use of a touched key, then of the keys the
    records drawn in also hold), not four."""
    con.execute(f"""create or replace temp table _delta_records as select * from {NOW}
                    where unique_id in (select unique_id from _delta)""")
    con.register("_stitch_blocklist", blocklist[["field", "value"]])
    try:
        key_records(con, "_delta_records")
    finally:
        con.unregister("_stitch_blocklist")
    old_keys = initial_key_uses_sql("_delta_old")
    drawn_in_keys = initial_key_uses_sql("(select * from _delta_old where unique_id in "
                                         "(select unique_id from _delta where change = 'initial key'))")
    con.execute(f"""
        create or replace temp table _key_uses_delta as {initial_key_uses_sql(KEYED)};
        create or replace temp table _touched as
            select distinct key, value from (select key, value from _key_uses_delta union all
                select key, value from ({old_keys}));
        create or replace temp table _key_uses_before as
            select u.* from {KEY_USES} u semi join _touched t on t.key = u.key and t.value = u.value;
        create or replace temp table _ambiguous_before as {ambiguous_keys_sql("select * from _key_uses_before")};
        create or replace temp table _ambiguous_after as {ambiguous_keys_sql(
            "select * from _key_uses_before where unique_id not in (select unique_id from _delta) "
            "union all select * from _key_uses_delta")};
        create or replace temp table _key_flips as
            (select * from _ambiguous_before except select * from _ambiguous_after)
            union all (select * from _ambiguous_after except select * from _ambiguous_before);
        insert into _delta
            select distinct unique_id, 'initial key' from _key_uses_before u
            where exists (select 1 from _key_flips f where f.key = u.key and f.value = u.value)
              and unique_id not in (select unique_id from _delta);
        insert into _delta_old select * from {PREPARED}
            where unique_id in (select unique_id from _delta where change = 'initial key');
        insert into _delta_records select * from {NOW}
            where unique_id in (select unique_id from _delta where change = 'initial key');
        -- their other keys are untouched by the delivery: they stand as they stood
        insert into _ambiguous_after {ambiguous_keys_sql(
            f"select u.* from {KEY_USES} u semi join (select key, value from ({drawn_in_keys}) "
            "except select key, value from _touched) o on o.key = u.key and o.value = u.value")}""")
    con.execute(f"drop table if exists {KEYED}")


def apply_delta(con, blocklist: pd.DataFrame, identifiers: list[str]) -> None:
    """Preprocess the delta rows (as a full run would, with the initial keys' standing over
    every record) and put them in place of their rows; record the pending delta."""
    prepare_for_matching(con, blocklist, "_delta_prepared", identifiers, records="_delta_records",
                         ambiguous="_ambiguous_after")
    con.execute(f"create table if not exists {stm.PENDING} (unique_id varchar, change varchar)")
    con.execute(f"create table if not exists {stm.PENDING_OLD} as select * from {PREPARED} limit 0")
    with transaction(con):
        con.execute(f"delete from {PREPARED} where unique_id in (select unique_id from _delta)")
        con.execute(f"insert into {PREPARED} by name select * from _delta_prepared")
        con.execute(f"delete from {KEY_USES} where unique_id in (select unique_id from _delta)")
        con.execute(f"insert into {KEY_USES} {initial_key_uses_sql('_delta_prepared')}")
        con.execute(f"delete from {STAGED} where unique_id in (select unique_id from _delta)")
        con.execute(f"insert into {STAGED} select * from _delta_records")
        con.execute(f"delete from {stm.DIGESTS} where unique_id in (select unique_id from _delta)")
        con.execute(f"""insert into {stm.DIGESTS} select * from _digests_now
                        where unique_id in (select unique_id from _delta)""")
        # the rows of the last stitched state: a record already pending keeps its first old row
        con.execute(f"""insert into {stm.PENDING_OLD} by name select * from _delta_old
                        where unique_id not in (select unique_id from {stm.PENDING})""")
        con.execute(f"""insert into {stm.PENDING} select * from _delta
                        where unique_id not in (select unique_id from {stm.PENDING})""")
        con.execute("delete from stitch.blocklist")
        con.register("_blocklist_now", blocklist)
        try:
            con.execute("insert into stitch.blocklist by name select * from _blocklist_now")
        finally:
            con.unregister("_blocklist_now")
    con.execute(f"drop view if exists {NOW}")
    for table in ("_delta_prepared", "_delta_records", "_digests_now", "_key_uses_before", "_key_uses_delta",
                  "_delta_content", "_restaged"):
        con.execute(f"drop table if exists {table}")
