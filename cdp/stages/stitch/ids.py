"""Stitch, step 4: stable cdp_ids and what changed since the last run.

A cluster keeps the id of the previous cluster it overlaps most; each previous id goes to at
most one cluster (the one holding most of its records; ties: lowest previous id, then lowest
cluster anchor). Clusters without a previous id get a new one, derived from their lowest
record key and never re-issued. So unchanged input gives exactly the same ids, and a person's
id only changes when their cluster really changed.

The id of every record over time is kept in `stitch.cdp_id_history` (valid_from / valid_to);
its open rows are the previous run's assignment.
"""

import uuid
from dataclasses import dataclass

import pandas as pd

from cdp.engine.tables import transaction
from cdp.stages.stitch.preprocess import record_key_sql

CDP_ID_NAMESPACE = uuid.UUID("6f1c9a52-3b0e-4d8e-9c55-0c4d2b7f0a11")

# why a record's id changed, by the change kind of the cluster it is in now
ID_CHANGE_REASONS = {"merged": "clusters merged", "split": "cluster split",
                     "changed": "cluster changed"}

HISTORY_DDL = """
create table if not exists stitch.cdp_id_history (
    source varchar, pk varchar, cdp_id varchar, valid_from timestamp, valid_to timestamp,
    run_id varchar, change varchar
)"""


def cdp_id_for(tenant: str, anchor_record: str, attempt: int = 0) -> str:
    """A stable, opaque person id derived from a cluster's anchor record."""
    seed = f"{tenant}:{anchor_record}" + (f":{attempt}" if attempt else "")
    return str(uuid.uuid5(CDP_ID_NAMESPACE, seed))


def uuid5_sha1_sql(name_sql: str) -> str:
    """SQL: the SHA-1 (hex) that uuid5(CDP_ID_NAMESPACE, name) is cut from (portable: DuckDB
    and Spark SQL)."""
    return f"sha1(unhex('{CDP_ID_NAMESPACE.bytes.hex()}') || encode({name_sql}))"


def uuid_from_sha1_sql(h: str) -> str:
    """SQL: a uuid5 string from its SHA-1 hex column h - the same value as Python's uuid.uuid5,
    at column speed (portable: DuckDB and Spark SQL)."""
    variant = f"(strpos('0123456789abcdef', substr({h}, 17, 1)) - 1) & 3"
    return (f"substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-5' || substr({h}, 14, 3) || '-' || "
            f"substr('89ab', ({variant}) + 1, 1) || substr({h}, 18, 3) || '-' || substr({h}, 21, 12)")


@dataclass
class IdAssignment:
    ids: pd.DataFrame               # unique_id, cdp_id
    clusters: pd.DataFrame          # unified_changes_clusters
    records: pd.DataFrame           # unified_changes_pks


def assign_stable_ids(clusters: pd.DataFrame, previous: pd.DataFrame, issued: set[str],
                      tenant: str) -> IdAssignment:
    """The SQL assignment below on pandas frames (for callers without a DuckDB workspace)."""
    from cdp.engine.duckdb import local_connection

    con = local_connection()
    try:
        con.register("_in_clusters", clusters[["unique_id", "cluster_id"]].astype(str))
        con.register("_in_previous", previous[["unique_id", "cdp_id"]].astype(object))
        con.register("_in_issued", pd.DataFrame({"cdp_id": sorted(issued)}, dtype=object))
        assign_ids(con, "_in_clusters", "_in_previous", "_in_issued", tenant)
        return IdAssignment(con.execute("select * from ids").df(),
                            con.execute("select * from changes_clusters").df(),
                            con.execute("select * from changes_pks").df())
    finally:
        con.close()


def assign_ids(con, clusters: str, previous: str, issued: str, tenant: str,
               has_history: bool | None = None) -> None:
    """Create temp tables ids (unique_id, cdp_id), changes_clusters and changes_pks.

    clusters: unique_id, cluster_id (this run). previous: unique_id, cdp_id (last run's open
    assignment; empty on the first run). issued: cdp_id of every id ever handed out.
    has_history: whether ids were assigned before (default: previous is not empty); an
    incremental run passes only the affected records, whose previous ids may be none."""
    con.execute(f"""create or replace temp table _cur as
                    select c.unique_id, c.cluster_id::varchar as cluster_id, p.cdp_id as previous_id
                    from {clusters} c left join {previous} p using (unique_id)""")
    con.execute("""create or replace temp table _overlap as
                   select cluster_id, previous_id, count(*) as overlap from _cur
                   where previous_id is not null group by all""")
    _keep_previous_ids(con)
    _issue_new_ids(con, issued, tenant)
    con.execute("""create or replace temp table ids as
                   select c.unique_id, i.cdp_id from _cur c join _id_of_cluster i using (cluster_id)""")
    _cluster_changes(con, previous)
    _record_changes(con, previous, has_history)


def _keep_previous_ids(con) -> None:
    """_kept (cluster_id, previous_id): each previous id goes to at most one cluster, greedy by
    overlap, ties by previous id, then cluster. The common case - a cluster that holds exactly the
    records of one previous id - is settled in SQL; only contested ones come to Python."""
    con.execute("""create or replace temp table _kept as
                   select cluster_id, previous_id from _overlap
                   qualify count(*) over (partition by cluster_id) = 1
                       and count(*) over (partition by previous_id) = 1""")
    contested = con.execute("""select cluster_id, previous_id from _overlap
                               anti join _kept using (cluster_id)
                               order by overlap desc, previous_id, cluster_id""").fetchall()
    kept, used = {}, set()
    for cluster_id, previous_id in contested:
        if cluster_id in kept or previous_id in used:
            continue
        kept[cluster_id] = previous_id
        used.add(previous_id)
    if kept:
        con.executemany("insert into _kept values (?, ?)", list(kept.items()))


def _issue_new_ids(con, issued: str, tenant: str) -> None:
    """_id_of_cluster (cluster_id, cdp_id): kept ids, and for every other cluster an id derived
    from its lowest record key, never one issued before (then :1, :2 ... is appended)."""
    con.execute(f"""create or replace temp table _id_of_cluster as
                    select cluster_id, previous_id as cdp_id from _kept
                    union all
                    select cluster_id, {uuid_from_sha1_sql("h")} from (
                        select cluster_id, {uuid5_sha1_sql("? || min(unique_id)")} as h from _cur
                        anti join _kept using (cluster_id) group by cluster_id)""", [f"{tenant}:"])
    # of the ids issued before, those this run's clusters were given (a scan of issued, not a
    # copy of it: an incremental run's issued is every id in the history)
    con.execute(f"""create or replace temp table _taken as
                    select cdp_id from {issued} where cdp_id in (select cdp_id from _id_of_cluster)
                    union select previous_id from _kept""")
    clashes = con.execute("""select n.cluster_id, min(c.unique_id) from _id_of_cluster n
                             join _cur c using (cluster_id)
                             where n.cluster_id not in (select cluster_id from _kept)
                               and n.cdp_id in (select cdp_id from _taken)
                             group by n.cluster_id order by 1""").fetchall()
    for cluster_id, anchor in clashes:
        attempt, candidate = 1, cdp_id_for(tenant, anchor, 1)
        while con.execute(f"select count(*) from (select cdp_id from {issued} union all "
                          "select previous_id from _kept) t where cdp_id = ?", [candidate]).fetchall()[0][0] \
                or con.execute("select count(*) from _id_of_cluster where cdp_id = ?", [candidate]).fetchall()[0][0]:
            attempt += 1
            candidate = cdp_id_for(tenant, anchor, attempt)
        con.execute("update _id_of_cluster set cdp_id = ? where cluster_id = ?", [candidate, cluster_id])


def _cluster_changes(con, previous: str) -> None:
    """changes_clusters: one row per cluster of this run (new / unchanged / changed / merged /
    split) and one per previous id no cluster kept (retired)."""
    con.execute(f"""
        create or replace temp table changes_clusters as
        with previous_size as (select cdp_id as previous_id, count(*) as size from {previous} group by 1),
        surviving as (select previous_id, sum(overlap) as surviving from _overlap group by 1),
        per_cluster as (
            select c.cluster_id, count(*) as records, any_value(i.cdp_id) as cdp_id
            from _cur c join _id_of_cluster i using (cluster_id) group by c.cluster_id),
        main as (
            select cluster_id, count(*) as n_previous,
                   arg_min(previous_id, (-overlap, previous_id)) as main,
                   max(overlap) as main_overlap,
                   list(previous_id order by previous_id) as all_previous
            from _overlap group by cluster_id),
        info as (
            select p.cluster_id, p.cdp_id, p.records, coalesce(m.n_previous, 0) as n_previous, m.main,
                   m.main_overlap, m.all_previous, k.cluster_id is not null as kept,
                   s.surviving, z.size as main_size
            from per_cluster p left join main m using (cluster_id)
            left join _kept k using (cluster_id)
            left join surviving s on s.previous_id = m.main
            left join previous_size z on z.previous_id = m.main)
        select cdp_id, main as previous_id,
               case when n_previous > 1 then all_previous
                    when main is not null then [main] else []::varchar[] end as previous_ids,
               case when n_previous = 0 then 'new'
                    when n_previous > 1 then 'merged'
                    when not kept or main_overlap < surviving then 'split'
                    when records = main_size and surviving = main_size then 'unchanged'
                    else 'changed' end as change,
               records, coalesce(main_size, 0) as records_before
        from info
        union all
        select (select i.cdp_id from _overlap o join _id_of_cluster i using (cluster_id)
                where o.previous_id = z.previous_id order by o.overlap desc, o.cluster_id limit 1),
               z.previous_id, [z.previous_id], 'retired', 0, z.size
        from previous_size z where z.previous_id not in (select previous_id from _kept)
        order by change, cdp_id nulls last, previous_id nulls last""")


def _record_changes(con, previous: str, has_history: bool | None = None) -> None:
    """changes_pks: every record whose id changed, that arrived, or that left, and why."""
    reasons = ", ".join(f"('{kind}', '{why}')" for kind, why in ID_CHANGE_REASONS.items())
    con.execute(f"""
        create or replace temp table changes_pks as
        with kind as (select cdp_id, change from changes_clusters where change <> 'retired'),
        why(change, reason) as (values {reasons}),
        rows as (
            select c.unique_id, c.previous_id, i.cdp_id,
                   coalesce(w.reason, '{ID_CHANGE_REASONS["changed"]}') as reason
            from _cur c join ids i using (unique_id)
            left join kind k on k.cdp_id = i.cdp_id left join why w on w.change = k.change
            where c.previous_id is not null and c.previous_id <> i.cdp_id
            union all
            -- arrivals since the last run (on the first run every record is new: none listed)
            select c.unique_id, null, i.cdp_id, 'new record'
            from _cur c join ids i using (unique_id)
            where c.previous_id is null and {f"exists (select 1 from {previous})" if has_history is None
                                             else str(bool(has_history)).lower()}
            union all
            select p.unique_id, p.cdp_id, null, 'record no longer in any source'
            from {previous} p anti join _cur using (unique_id))
        select {record_key_sql("unique_id")}, previous_id, cdp_id, reason
        from rows""")


# ---- history in the warehouse ------------------------------------------------------------------

PREVIOUS_SQL = """select source || '|' || pk as unique_id, cdp_id
                  from stitch.cdp_id_history where valid_to is null"""
ISSUED_SQL = "select distinct cdp_id from stitch.cdp_id_history"


def ensure_history(con) -> None:
    con.execute("create schema if not exists stitch")
    con.execute(HISTORY_DDL)


def previous_assignment(con) -> tuple[pd.DataFrame, set[str]]:
    """(unique_id, cdp_id) of the open history rows, and every id ever issued."""
    ensure_history(con)
    issued = {r[0] for r in con.execute(ISSUED_SQL).fetchall()}
    return con.execute(PREVIOUS_SQL).df(), issued


def record_history(con, ids: str, reasons: str, run_id: str, at: pd.Timestamp,
                   scope: str | None = None) -> int:
    """Close the history rows of records whose id changed or that disappeared; open rows for
    new and changed records. `ids` (unique_id, cdp_id) and `reasons` (source, pk, reason) are
    tables or views visible to con. With `scope` (a table of unique_id: an incremental run's
    affected records), only those records' rows are looked at. Returns the number of rows opened."""
    ensure_history(con)
    with transaction(con):
        con.execute(f"""create or replace temp table _ids_now as
                        select {record_key_sql("unique_id")}, cdp_id from {ids}""")
        con.execute("""
            update stitch.cdp_id_history h set valid_to = ?
            where h.valid_to is null and not exists (
                select 1 from _ids_now n where n.source = h.source and n.pk = h.pk
                                           and n.cdp_id = h.cdp_id)"""
            + (f" and h.source || '|' || h.pk in (select unique_id from {scope})" if scope else ""), [at])
        opened = con.execute(f"""
            insert into stitch.cdp_id_history
            select n.source, n.pk, n.cdp_id, ?, null, ?, coalesce(w.reason, 'first run')
            from _ids_now n
            left join {reasons} w on w.source = n.source and w.pk = n.pk
            where not exists (select 1 from stitch.cdp_id_history h
                              where h.valid_to is null and h.source = n.source and h.pk = n.pk)
            """, [at, run_id]).fetchall()[0][0]
    con.execute("drop table if exists _ids_now")
    return int(opened)
