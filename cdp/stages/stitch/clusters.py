"""Stitch, step 3: from evidence to clusters.

Three kinds of evidence link two records: a deterministic rule (equal values that belong to one
person), an analyst label ("these two are the same person"), or a Splink score at or above the
match threshold. Analyst labels saying "not the same person", and birth dates too far apart for
one person, are constraints: no cluster may contain both records, even through other records.
Clusters are the connected components of the links (Splink's clustering); a component that
breaks a constraint is rebuilt greedily, strongest link first, skipping any link that would
join a constrained pair.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cdp.errors import UserError
from cdp.engine import splink_db_api
from cdp.stages.stitch.model import splink_scratch
from cdp.stages.stitch.preprocess import people_per_value

LABEL_MATCH = {"match", "same", "yes", "1", "true"}
LABEL_NO_MATCH = {"no_match", "no-match", "different", "no", "0", "false"}
LABEL_COLUMNS = ["source_l", "pk_l", "source_r", "pk_r", "label"]
LABEL_STRENGTH = 3.0        # an analyst's word beats any rule or score
DETERMINISTIC_STRENGTH = 2.0


class LabelFileError(UserError, ValueError):
    """The labels file is malformed; the message names the file, the row and the problem."""


# ---- deterministic rules ------------------------------------------------------------------------

RULE_LINKS_COLUMNS = "unique_id_l varchar, unique_id_r varchar, deterministic_rule varchar"


def deterministic_links(con, prepared: str, rules: list[list[str]], out: str = "rule_links") -> int:
    """Create `out`: pairs linked outright by a rule - equal, non-null values on every field of
    the rule, and the value belongs to one person (the given names that carry it are one name,
    allowing nicknames and typos), so a family email or a shared loyalty card links nobody.

    Each group of records sharing a key becomes a star (n-1 edges from its lowest record).
    Columns unique_id_l < unique_id_r, deterministic_rule. Returns the number of links."""
    con.execute(f"create or replace temp table {out} ({RULE_LINKS_COLUMNS})")
    for rule in rules:
        key = " || chr(31) || ".join(f"cast({c} as varchar)" for c in rule)
        present = " and ".join(f"{c} is not null" for c in rule)
        con.execute(f"""
            create or replace temp table _rule_keyed as
            select {key} as key, unique_id, given_name_alias as given from {prepared}
            where {present}
            qualify count(*) over (partition by {key}) > 1""")
        shared = people_per_value(con, "select key as value, given from _rule_keyed", more_than=1)
        con.register("_rule_shared", shared[["value"]])
        try:
            con.execute(f"""
                insert into {out}
                select anchor, unique_id, ? from (
                    select unique_id, min(unique_id) over (partition by key) as anchor
                    from _rule_keyed where key not in (select value from _rule_shared))
                where unique_id <> anchor
                  and not exists (select 1 from {out} o where o.unique_id_l = anchor
                                  and o.unique_id_r = unique_id)""", ["same " + " + ".join(rule)])
        finally:
            con.unregister("_rule_shared")
    con.execute("drop table if exists _rule_keyed")
    return con.execute(f"select count(*) from {out}").fetchall()[0][0]


# ---- analyst labels -----------------------------------------------------------------------------

@dataclass
class Labels:
    same: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["unique_id_l", "unique_id_r"]))
    different: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["unique_id_l", "unique_id_r"]))
    unknown_records: int = 0

    @property
    def count(self) -> int:
        return len(self.same) + len(self.different)


def read_labels(path: Path | None, known_ids) -> Labels:
    """Analyst labels: CSV with source_l, pk_l, source_r, pk_r, label (match | no_match), note.
    Labels on records that no longer exist are counted and ignored. `known_ids` is a set of
    record keys ("source|pk") or a function returning which of the given keys exist."""
    if path is None:
        return Labels()
    if not path.exists():
        raise LabelFileError(f"{path}: labels file not found")
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise LabelFileError(f"{path}: missing columns {missing}; expected {LABEL_COLUMNS} (+ note)")
        for line, row in enumerate(reader, start=2):
            label = (row["label"] or "").strip().lower()
            left = f"{row['source_l'].strip()}|{row['pk_l'].strip()}"
            right = f"{row['source_r'].strip()}|{row['pk_r'].strip()}"
            if label not in LABEL_MATCH | LABEL_NO_MATCH:
                raise LabelFileError(f"{path}: line {line}: label {row['label']!r} is not one of "
                                     "match / no_match")
            if left == right:
                raise LabelFileError(f"{path}: line {line}: a record cannot be labelled against itself")
            rows.append((left, right, label in LABEL_MATCH))
    mentioned = {uid for left, right, _ in rows for uid in (left, right)}
    known = known_ids(mentioned) if callable(known_ids) else mentioned & set(known_ids)
    same, different, unknown = [], [], 0
    for left, right, is_match in rows:
        if left not in known or right not in known:
            unknown += 1
            continue
        (same if is_match else different).append((left, right))
    cols = ["unique_id_l", "unique_id_r"]
    return Labels(pd.DataFrame(same, columns=cols), pd.DataFrame(different, columns=cols), unknown)


# ---- links and clusters -------------------------------------------------------------------------

def register_labels(con, labels: Labels) -> None:
    """The labels as temp tables _labels_same / _labels_different (unique_id_l, unique_id_r)."""
    for name, frame in (("_labels_same", labels.same), ("_labels_different", labels.different)):
        con.execute(f"create or replace temp table {name} (unique_id_l varchar, unique_id_r varchar)")
        if len(frame):
            con.executemany(f"insert into {name} values (?, ?)",
                            list(zip(frame["unique_id_l"], frame["unique_id_r"])))


def combine_evidence(con, scores: str, rule_links: str, labels: Labels, threshold: float,
                     out: str = "evidence", model_veto: str | None = None) -> None:
    """Create `out`: one row per scored or linked pair - the score columns + deterministic_rule +
    label + linked + strength (label 3, rule 2, else the match probability). A pair labelled
    both ways counts as different; a no_match label unlinks whatever else says. `model_veto`
    (SQL on the score columns): pairs the model alone never links, whatever their probability;
    a rule or a label still can."""
    register_labels(con, labels)
    con.execute(f"""
        create or replace temp table _annotations as
        with a as (
            select unique_id_l as l, unique_id_r as r, null::varchar as rule, 'no_match' as label,
                   1 as prio from _labels_different
            union all
            select unique_id_l, unique_id_r, null, 'match', 2 from _labels_same
            union all
            select unique_id_l, unique_id_r, deterministic_rule, null, 3 from {rule_links})
        select least(l, r) as l, greatest(l, r) as r, min(rule) as deterministic_rule,
               arg_min(label, prio) filter (where label is not null) as label
        from a group by all""")
    con.execute(f"""
        create or replace temp table {out} as
        select coalesce(s.unique_id_l, a.l) as unique_id_l, coalesce(s.unique_id_r, a.r) as unique_id_r,
               s.* exclude (unique_id_l, unique_id_r), a.deterministic_rule, a.label,
               (coalesce(s.match_probability >= {float(threshold)}
                         and not coalesce({model_veto or 'false'}, false), false)
                or a.deterministic_rule is not null or coalesce(a.label = 'match', false))
               and a.label is distinct from 'no_match' as linked,
               case when a.label = 'match' then {LABEL_STRENGTH}
                    when a.deterministic_rule is not null then {DETERMINISTIC_STRENGTH}
                    else coalesce(s.match_probability, 0.0) end as strength
        from {scores} s
        full outer join _annotations a
          on a.l = least(s.unique_id_l, s.unique_id_r) and a.r = greatest(s.unique_id_l, s.unique_id_r)""")


def cluster_records(con, nodes: str, evidence: str, out: str = "clusters",
                    birthdate_gap_days: int | None = None) -> dict[str, int]:
    """Create `out` (unique_id, cluster_id): the connected components of the linked pairs
    (Splink's clustering). A component that would hold two records an analyst labelled
    different, or (with birthdate_gap_days) two birth dates further apart than that, is
    rebuilt greedily, strongest link first. Needs combine_evidence first. Returns how many
    components were rebuilt for labels and for birth dates."""
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    con.execute(f"create or replace temp table _nodes as select unique_id from {nodes}")
    con.execute(f"""create or replace temp table _links as
                    select unique_id_l, unique_id_r from {evidence} where linked""")
    with splink_scratch(con):
        components = cluster_pairwise_predictions_at_threshold(
            "_nodes", "_links", splink_db_api(con), node_id_column_name="unique_id")
        con.execute(f"create or replace temp table {out} as "
                    f"select unique_id, cluster_id from {components.physical_name}")
        components.drop_table_from_database_and_remove_from_cache()
    # the connected components before constraints split them: what an incremental run re-clusters
    con.execute(f"create or replace temp table _components as select unique_id, cluster_id from {out}")
    _cannot_link(con, nodes, out, birthdate_gap_days)
    counts = dict(con.execute(f"""
        select d.reason, count(distinct l.cluster_id) from _cannot_link d
        join {out} l on l.unique_id = d.unique_id_l join {out} r on r.unique_id = d.unique_id_r
        where l.cluster_id = r.cluster_id group by 1""").fetchall())
    broken = [r[0] for r in con.execute(f"""
        select distinct l.cluster_id from _cannot_link d
        join {out} l on l.unique_id = d.unique_id_l join {out} r on r.unique_id = d.unique_id_r
        where l.cluster_id = r.cluster_id""").fetchall()]
    if broken:
        _rebuild(con, evidence, out, broken)
    return {"label": counts.get("label", 0), "birthdate": counts.get("birthdate", 0)}


def _cannot_link(con, nodes: str, clusters: str, birthdate_gap_days: int | None) -> None:
    """_cannot_link (unique_id_l, unique_id_r, reason): pairs no cluster may hold - analyst
    no_match labels, and inside a component, records whose birth dates are too far apart to be
    one person's (typos stay within a year; a household's members do not)."""
    con.execute("""create or replace temp table _cannot_link as
                   select unique_id_l, unique_id_r, 'label' as reason from _labels_different""")
    if birthdate_gap_days is None:
        return
    con.execute(f"""
        insert into _cannot_link
        with dated as (select c.cluster_id, n.unique_id, n.birthdate from {clusters} c
                       join {nodes} n using (unique_id) where n.birthdate is not null),
        wide as (select cluster_id from dated group by cluster_id
                 having datediff('day', min(birthdate), max(birthdate)) > {int(birthdate_gap_days)})
        select a.unique_id, b.unique_id, 'birthdate'
        from dated a join dated b on a.cluster_id = b.cluster_id and a.unique_id < b.unique_id
        where a.cluster_id in (select cluster_id from wide)
          and abs(datediff('day', a.birthdate, b.birthdate)) > {int(birthdate_gap_days)}""")


def _rebuild(con, evidence: str, clusters: str, broken: list) -> None:
    members = con.execute(f"select unique_id from {clusters} where cluster_id in (select unnest(?))",
                          [broken]).df()["unique_id"].tolist()
    links = con.execute(f"""select unique_id_l, unique_id_r, strength from {evidence}
                            where linked and unique_id_l in (select unnest(?))""", [members]).df()
    different = con.execute("select unique_id_l, unique_id_r from _cannot_link").df()
    rebuilt = greedy_clusters(members, links, different)
    con.register("_rebuilt", pd.DataFrame({"unique_id": rebuilt.index, "cluster_id": rebuilt.values}))
    try:
        con.execute(f"""update {clusters} set cluster_id = b.cluster_id from _rebuilt b
                        where {clusters}.unique_id = b.unique_id""")
    finally:
        con.unregister("_rebuilt")


def greedy_clusters(records: list[str], links: pd.DataFrame, different: pd.DataFrame) -> pd.Series:
    """Union-find over links strongest first; a link that would put two records labelled
    different into one cluster is skipped. Returns unique_id -> cluster_id (its lowest id)."""
    parent = {r: r for r in records}
    members = {r: {r} for r in records}
    cannot: dict[str, set[str]] = {r: set() for r in records}
    for left, right in zip(different["unique_id_l"], different["unique_id_r"]):
        if left in cannot and right in cannot:
            cannot[left].add(right)
            cannot[right].add(left)

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    ordered = links.sort_values(["strength", "unique_id_l", "unique_id_r"], ascending=[False, True, True])
    for left, right in zip(ordered["unique_id_l"], ordered["unique_id_r"]):
        a, b = find(left), find(right)
        if a == b:
            continue
        if any(cannot[m] & members[b] for m in members[a]):
            continue
        if len(members[a]) < len(members[b]):
            a, b = b, a
        parent[b] = a
        members[a] |= members.pop(b)
    roots = {r: find(r) for r in records}
    lowest = {}
    for record, root in roots.items():
        lowest[root] = min(lowest.get(root, record), record)
    return pd.Series({r: lowest[roots[r]] for r in records}, name="cluster_id")
