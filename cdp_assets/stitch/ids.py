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

import numpy as np
import pandas as pd

from ..warehouse import transaction

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


@dataclass
class IdAssignment:
    ids: pd.DataFrame               # unique_id, cdp_id
    clusters: pd.DataFrame          # unified_changes_clusters
    records: pd.DataFrame           # unified_changes_pks


def assign_stable_ids(clusters: pd.DataFrame, previous: pd.DataFrame, issued: set[str],
                      tenant: str) -> IdAssignment:
    """clusters: unique_id, cluster_id (this run). previous: unique_id, cdp_id (last run's open
    assignment; empty on the first run). issued: every id ever handed out."""
    cur = clusters[["unique_id", "cluster_id"]].merge(
        previous.rename(columns={"cdp_id": "previous_id"}), on="unique_id", how="left")
    overlap = (cur.dropna(subset=["previous_id"])
               .groupby(["cluster_id", "previous_id"]).size().rename("overlap").reset_index())
    kept = _match_previous_ids(overlap)

    anchors = cur.groupby("cluster_id")["unique_id"].min()
    anchors = anchors[~anchors.index.isin(kept.index)]
    new_ids = {}
    taken = set(issued) | set(kept.values)
    for cluster_id, anchor in zip(anchors.index, anchors.values):
        attempt, candidate = 0, cdp_id_for(tenant, anchor)
        while candidate in taken:
            attempt += 1
            candidate = cdp_id_for(tenant, anchor, attempt)
        taken.add(candidate)
        new_ids[cluster_id] = candidate
    id_of_cluster = pd.concat([kept, pd.Series(new_ids, dtype=object)])
    cur["cdp_id"] = cur["cluster_id"].map(id_of_cluster)

    cluster_changes = _cluster_changes(cur, previous, overlap, kept, id_of_cluster)
    record_changes = _record_changes(cur, previous, cluster_changes)
    return IdAssignment(cur[["unique_id", "cdp_id"]], cluster_changes, record_changes)


def _match_previous_ids(overlap: pd.DataFrame) -> pd.Series:
    """cluster_id -> previous id it keeps: greedy by overlap, ties by previous id, then cluster."""
    if overlap.empty:
        return pd.Series(dtype=object)
    per_cluster = overlap.groupby("cluster_id")["previous_id"].transform("size")
    per_previous = overlap.groupby("previous_id")["cluster_id"].transform("size")
    simple = (per_cluster == 1) & (per_previous == 1)  # the common case: nothing moved
    kept = dict(zip(overlap.loc[simple, "cluster_id"], overlap.loc[simple, "previous_id"]))
    contested = overlap[~simple].sort_values(["overlap", "previous_id", "cluster_id"],
                                             ascending=[False, True, True])
    used = set()
    for cluster_id, previous_id in zip(contested["cluster_id"], contested["previous_id"]):
        if cluster_id in kept or previous_id in used:
            continue
        kept[cluster_id] = previous_id
        used.add(previous_id)
    return pd.Series(kept, dtype=object)


def _cluster_changes(cur, previous, overlap, kept, id_of_cluster) -> pd.DataFrame:
    """One row per cluster of this run (new / unchanged / changed / merged / split) and one per
    previous id no cluster kept (retired)."""
    previous_size = previous.groupby("cdp_id").size()
    surviving = overlap.groupby("previous_id")["overlap"].sum()
    info = pd.DataFrame({"records": cur.groupby("cluster_id").size()})
    info["n_previous"] = overlap.groupby("cluster_id").size().reindex(info.index).fillna(0)
    info["main"] = (overlap.sort_values(["overlap", "previous_id"], ascending=[False, True])
                    .drop_duplicates("cluster_id").set_index("cluster_id")["previous_id"]
                    .reindex(info.index))
    info["main_overlap"] = overlap.groupby("cluster_id")["overlap"].max().reindex(info.index)
    info["kept"] = info.index.isin(kept.index)
    main_surviving = info["main"].map(surviving)
    main_size = info["main"].map(previous_size)
    info["change"] = np.select(
        [info["n_previous"] == 0, info["n_previous"] > 1,
         ~info["kept"] | (info["main_overlap"] < main_surviving),
         (info["records"] == main_size) & (main_surviving == main_size)],
        ["new", "merged", "split", "unchanged"], default="changed")
    merged_from = overlap[overlap["cluster_id"].isin(info.index[info["n_previous"] > 1])] \
        .groupby("cluster_id")["previous_id"].agg(sorted)
    merged = merged_from.to_dict()
    out = pd.DataFrame({
        "cdp_id": info.index.map(id_of_cluster), "previous_id": info["main"].values,
        "previous_ids": [merged.get(c) or ([m] if isinstance(m, str) else [])
                         for c, m in zip(info.index, info["main"])],
        "change": info["change"].values, "records": info["records"].values,
        "records_before": main_size.fillna(0).astype(int).values})
    retired = previous_size.index.difference(pd.Index(kept.values))
    if len(retired):
        went_to = (overlap[overlap["previous_id"].isin(retired)]
                   .sort_values(["overlap", "cluster_id"], ascending=[False, True])
                   .drop_duplicates("previous_id").set_index("previous_id")["cluster_id"]
                   .map(id_of_cluster))
        out = pd.concat([out, pd.DataFrame({
            "cdp_id": [went_to.get(r) for r in retired], "previous_id": list(retired),
            "previous_ids": [[r] for r in retired], "change": "retired", "records": 0,
            "records_before": [int(previous_size[r]) for r in retired]})], ignore_index=True)
    return out.sort_values(["change", "cdp_id", "previous_id"], na_position="last").reset_index(drop=True)


def _record_changes(cur, previous, cluster_changes) -> pd.DataFrame:
    kind = cluster_changes[cluster_changes["change"] != "retired"].set_index("cdp_id")["change"]
    moved = cur[cur["previous_id"].notna() & (cur["previous_id"] != cur["cdp_id"])]
    moved = pd.DataFrame({"unique_id": moved["unique_id"], "previous_id": moved["previous_id"],
                          "cdp_id": moved["cdp_id"],
                          "reason": moved["cdp_id"].map(kind).map(ID_CHANGE_REASONS)
                          .fillna(ID_CHANGE_REASONS["changed"])})
    arrived = cur[cur["previous_id"].isna()]
    arrived = pd.DataFrame({"unique_id": arrived["unique_id"], "previous_id": None,
                            "cdp_id": arrived["cdp_id"], "reason": "new record"})
    gone = previous[~previous["unique_id"].isin(cur["unique_id"])]
    gone = pd.DataFrame({"unique_id": gone["unique_id"], "previous_id": gone["cdp_id"],
                         "cdp_id": None, "reason": "record no longer in any source"})
    out = pd.concat([f for f in (moved, arrived, gone) if len(f)], ignore_index=True) \
        if len(moved) + len(arrived) + len(gone) else moved
    parts = out["unique_id"].str.split("|", n=1)
    out.insert(0, "source", parts.str[0])
    out.insert(1, "pk", parts.str[1])
    return out.drop(columns=["unique_id"]).sort_values(["source", "pk"]).reset_index(drop=True)


# ---- history in the warehouse ------------------------------------------------------------------

def previous_assignment(con) -> tuple[pd.DataFrame, set[str]]:
    """(unique_id, cdp_id) of the open history rows, and every id ever issued."""
    con.execute("create schema if not exists stitch")
    con.execute(HISTORY_DDL)
    current = con.execute("""select source || '|' || pk as unique_id, cdp_id
                             from stitch.cdp_id_history where valid_to is null""").df()
    issued = {r[0] for r in con.execute("select distinct cdp_id from stitch.cdp_id_history").fetchall()}
    return current, issued


def record_history(con, ids: pd.DataFrame, run_id: str, at: pd.Timestamp, reasons: pd.DataFrame) -> int:
    """Close the history rows of records whose id changed or that disappeared; open rows for
    new and changed records. Returns the number of rows opened."""
    con.execute(HISTORY_DDL)
    parts = ids["unique_id"].str.split("|", n=1)
    frame = pd.DataFrame({"source": parts.str[0], "pk": parts.str[1], "cdp_id": ids["cdp_id"]})
    why = reasons[["source", "pk", "reason"]] if len(reasons) else \
        pd.DataFrame(columns=["source", "pk", "reason"])
    con.register("_ids_now", frame)
    con.register("_why", why)
    try:
        with transaction(con):
            opened = _close_and_open(con, at, run_id)
    finally:
        con.unregister("_ids_now")
        con.unregister("_why")
    return int(opened)


def _close_and_open(con, at: pd.Timestamp, run_id: str) -> int:
    """Close open rows whose id no longer holds; open rows for records without an open row."""
    con.execute("""
        update stitch.cdp_id_history h set valid_to = ?
        where h.valid_to is null and not exists (
            select 1 from _ids_now n where n.source = h.source and n.pk = h.pk
                                       and n.cdp_id = h.cdp_id)""", [at])
    return con.execute("""
        insert into stitch.cdp_id_history
        select n.source, n.pk, n.cdp_id, ?, null, ?, coalesce(w.reason, 'first run')
        from _ids_now n
        left join _why w on w.source = n.source and w.pk = n.pk
        where not exists (select 1 from stitch.cdp_id_history h
                          where h.valid_to is null and h.source = n.source and h.pk = n.pk)
        """, [at, run_id]).fetchone()[0]
