"""Stitch, step 5: the published tables - unified_scores, unified_coalesced, detailed_examples -
and the checks evaluated on them. A full run writes each table whole; an incremental run
replaces the rows of the records it re-stitched (insert=True)."""

import dagster as dg

from cdp.config import TenantConfig
from cdp.engine import warehouse_of
from cdp.engine.tables import preview_md
from cdp.stages.stitch.preprocess import customer_union_sql, record_key_sql

UNIFIED_COALESCED = dg.AssetKey(["stitch", "unified_coalesced"])


# ---- tables -------------------------------------------------------------------------------------

def write_scores(con, out: str, evidence: str = "evidence", ids: str = "ids", insert: bool = False) -> None:
    """unified_scores: every candidate pair - the two records' keys, match weight and
    probability, the level of each comparison, the rule or label that applies, whether they
    were linked and whether they ended with the same cdp_id (a record missing from `ids` is
    outside the re-stitched records: in another cluster). The values the matcher compared
    are one join away, in unified_preprocessed_raw."""
    columns = {r[0] for r in con.execute(f"describe {evidence}").fetchall()}
    levels = [f"e.{c} as {c.replace('gamma_', 'level_')}" for c in sorted(columns) if c.startswith("gamma_")]
    con.execute(f"""
        {f"insert into {out} by name" if insert else f"create or replace table {out} as"}
        select {record_key_sql("e.unique_id_l", "_l")}, {record_key_sql("e.unique_id_r", "_r")},
               round(e.match_weight, 4) as match_weight, round(e.match_probability, 6) as match_probability,
               e.deterministic_rule, e.label, e.linked, coalesce(il.cdp_id = ir.cdp_id, false) as same_cdp_id,
               {"e.match_key::varchar as match_key" if "match_key" in columns else "null::varchar as match_key"}
               {"".join(", " + c for c in levels)}
        from {evidence} e
        left join {ids} il on il.unique_id = e.unique_id_l left join {ids} ir on ir.unique_id = e.unique_id_r""")


def write_coalesced(con, cfg: TenantConfig, ids: str, insert: bool = False) -> None:
    """unified_coalesced: every source record of `ids` with its cdp_id and standardised PII
    (joined on source and pk: no key is built for each domain record)."""
    con.execute(f"""
        {"insert into stitch.unified_coalesced by name" if insert else "create or replace table stitch.unified_coalesced as"}
        select i.cdp_id, r.source, r.pk, r.given_name, r.surname, r.full_name, r.email,
               r.phone, r.address, r.address2, r.city, r.state, r.postal, r.country, r.birthdate,
               r.gender, r.loyalty_id{"".join(f", r.{c}" for c in cfg.identifier_columns)},
               r.created_at, r.updated_at{"".join(f", r.{c}" for c in cfg.attribute_columns)}
        from ({customer_union_sql(cfg)}) r
        join (select cdp_id, {record_key_sql("unique_id")} from {ids}) i
          on i.source = r.source and i.pk = r.pk""")


def write_detailed_examples(con, out: str, sample: int, seed: int) -> None:
    """Every record of a sample of clusters (the 10 largest, up to 10 that changed, the rest
    random multi-record clusters) with the pairs scored inside the cluster, as JSON."""
    con.execute(f"""
        create or replace temp table _example_ids as
        with sizes as (select cdp_id, count(*) as size from ids group by 1 having count(*) > 1),
        largest as (select cdp_id, 1 as pick, row_number() over (order by size desc, cdp_id) as n
                    from sizes qualify n <= least(10, {int(sample)})),
        changed as (select cdp_id, 2 as pick, row_number() over (order by change, cdp_id) as n
                    from changes_clusters where change in ('merged', 'split', 'changed')
                    and cdp_id is not null qualify n <= 10),
        random as (select cdp_id, 3 as pick, row_number() over (order by hash(cdp_id, {int(seed)})) as n
                   from sizes),
        picks as (select * from largest union all select * from changed union all select * from random)
        select cdp_id from (select cdp_id, min((pick, n)) as best from picks group by cdp_id)
        order by best limit {int(sample)}""")
    con.execute(f"""
        create or replace table {out} as
        with members as (select i.cdp_id, p.* from ids i join prepared p using (unique_id)
                         where i.cdp_id in (select cdp_id from _example_ids)),
        ends as (select unique_id_l as uid, unique_id_r as other, * from evidence
                 union all
                 select unique_id_r, unique_id_l, * from evidence),
        inside as (
            select e.* from ends e join members m on m.unique_id = e.uid
            join members o on o.unique_id = e.other and o.cdp_id = m.cdp_id),
        pairs as (
            select uid, to_json(list({{'with': other, 'match_probability': round(match_probability, 4),
                                      'match_weight': round(match_weight, 2), 'rule': deterministic_rule,
                                      'label': label, 'linked': linked}} order by other))::varchar as pairs
            from inside group by uid)
        select m.cdp_id, count(*) over (partition by m.cdp_id) as cluster_size, m.source, m.pk,
               m.given_name, m.surname, m.email, m.phone, m.birthdate, m.address, m.postal,
               m.loyalty_id, coalesce(p.pairs, '[]') as pairs
        from members m left join pairs p on p.uid = m.unique_id
        order by cluster_size desc, cdp_id, source, pk""")


def borderline_pairs(con, n: int = 4) -> list[tuple[str, str]]:
    """Pairs just above and just below the threshold, for the waterfall chart."""
    return [tuple(r) for r in con.execute(f"""
        (select unique_id_l, unique_id_r from evidence where linked and match_probability is not null
         order by match_probability, unique_id_l, unique_id_r limit {n})
        union all
        (select unique_id_l, unique_id_r from evidence where not linked and match_probability is not null
         order by match_probability desc, unique_id_l, unique_id_r limit {n})""").fetchall()]


# ---- checks -------------------------------------------------------------------------------------
# Evaluated inside the stitch_match step, on the tables it has just published: no second step
# re-opens the warehouse to scan a million records again.

def check_specs(cfg: TenantConfig) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("every_domain_record_once", asset=UNIFIED_COALESCED,
                          description="Every customer domain row appears exactly once in unified_coalesced."),
        dg.AssetCheckSpec("no_implausible_clusters", asset=UNIFIED_COALESCED,
                          description=f"No cdp_id holds more than stitch.max_cluster_size "
                                      f"({cfg.stitch.max_cluster_size}) records (a sign of junk values "
                                      "or a chain of weak links)."),
    ]


def every_domain_record_once(con, cfg: TenantConfig) -> dg.AssetCheckResult:
    """Every domain customer record is in unified_coalesced once, and no other record is. First a
    fingerprint of each side (the engine's rows_digest, a scan of two columns): the rows and the
    sum of a 64-bit hash of (source, pk), equal only when both hold the same records as often
    (unless hashes collide: odds of about 1 in 2^64). Where they differ, one full join counts the missing,
    duplicated and extra records (at 1M records the fingerprints take ~0.05 s, the join ~0.4 s:
    a run's fixed cost)."""
    union = " union all ".join(f"select source, pk from domain.\"{s}\"" for s in cfg.customer_sources)
    engine = warehouse_of(con)
    keys = "select cast(source as varchar) as source, cast(pk as varchar) as pk from ({}) k"
    if (engine.rows_digest(con, keys.format(union))[1:]
            == engine.rows_digest(con, keys.format("select source, pk from stitch.unified_coalesced"))[1:]):
        missing = duplicated = extra = 0
    else:
        missing, duplicated, extra = con.execute(f"""
            with d as ({union}),
                 u as (select source, pk, count(*) n from stitch.unified_coalesced group by all)
            select count(*) filter (where u.n is null),
                   count(distinct u.source || '|' || u.pk) filter (where u.n > 1),
                   count(*) filter (where d.source is null)
            from d full join u on d.source = u.source and d.pk = u.pk""").fetchone()
    return dg.AssetCheckResult(
        asset_key=UNIFIED_COALESCED, check_name="every_domain_record_once",
        passed=missing == duplicated == extra == 0,
        metadata={"domain_records_missing": missing, "records_duplicated": duplicated,
                  "records_not_in_domain": extra})


CLUSTER_SIZES = "_cluster_sizes"   # temp (cdp_id, records) of unified_coalesced, for metadata and check


def count_cluster_sizes(con) -> tuple[int, int, int]:
    """Temp table CLUSTER_SIZES; returns (records, people, largest cluster)."""
    con.execute(f"create or replace temp table {CLUSTER_SIZES} as "
                "select cdp_id, count(*) as records from stitch.unified_coalesced group by cdp_id")
    return con.execute(f"select coalesce(sum(records), 0), count(*), coalesce(max(records), 0) "
                       f"from {CLUSTER_SIZES}").fetchone()


def no_implausible_clusters(con, cfg: TenantConfig, sizes_counted: bool = False) -> dg.AssetCheckResult:
    """From CLUSTER_SIZES (counted here unless `sizes_counted`: count_cluster_sizes ran on con
    after the table was last written); the sources are counted for the clusters over the
    limit only."""
    if not sizes_counted:
        count_cluster_sizes(con)
    limit = cfg.stitch.max_cluster_size
    big = con.execute(f"""select s.cdp_id, s.records, count(distinct u.source) as sources
                          from {CLUSTER_SIZES} s join stitch.unified_coalesced u using (cdp_id)
                          where s.records > ? group by s.cdp_id, s.records
                          order by records desc, s.cdp_id""", [limit]).df()
    return dg.AssetCheckResult(
        asset_key=UNIFIED_COALESCED, check_name="no_implausible_clusters",
        passed=big.empty, severity=dg.AssetCheckSeverity.WARN,
        metadata={"clusters_over_limit": len(big), "max_cluster_size": limit,
                  "largest": dg.MetadataValue.md(preview_md(big, 10, raw=cfg.dagster.raw_previews))})
