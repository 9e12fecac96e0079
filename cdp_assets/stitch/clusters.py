"""Stitch, step 3: from evidence to clusters.

Three kinds of evidence link two records: a deterministic rule (equal values that belong to one
person), an analyst label ("these two are the same person"), or a Splink score at or above the
match threshold. Analyst labels saying "not the same person" are constraints: no cluster may
contain both records, even through other records. Clusters are the connected components of
the links (Splink's clustering); a component that breaks a constraint is rebuilt greedily,
strongest link first, skipping any link that would join a labelled pair.
"""

import csv
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from .preprocess import people_per_value

LABEL_MATCH = {"match", "same", "yes", "1", "true"}
LABEL_NO_MATCH = {"no_match", "no-match", "different", "no", "0", "false"}
LABEL_COLUMNS = ["source_l", "pk_l", "source_r", "pk_r", "label"]
LABEL_STRENGTH = 3.0        # an analyst's word beats any rule or score
DETERMINISTIC_STRENGTH = 2.0


class LabelFileError(ValueError):
    """The labels file is malformed; the message names the file, the row and the problem."""


# ---- deterministic rules ------------------------------------------------------------------------

def deterministic_links(prepared: pd.DataFrame, rules: list[list[str]]) -> pd.DataFrame:
    """Pairs linked outright by a rule: equal, non-null values on every field of the rule, and
    the value belongs to one person (the given names that carry it are one name, allowing
    nicknames and typos), so a family email or a shared loyalty card links nobody.

    Returns unique_id_l, unique_id_r, deterministic_rule (a star per group: n-1 edges)."""
    edges = []
    for rule in rules:
        keyed = prepared.dropna(subset=rule)
        if keyed.empty:
            continue
        key = keyed[rule[0]].astype(str)
        for column in rule[1:]:
            key = key + "\x1f" + keyed[column].astype(str)
        groups = pd.DataFrame({"key": key, "unique_id": keyed["unique_id"],
                               "given": keyed["given_name_alias"]})
        size = groups.groupby("key")["unique_id"].transform("size")
        groups = groups[size > 1]
        shared = people_per_value(groups["key"], groups["given"], more_than=1).index
        groups = groups[~groups["key"].isin(shared)].sort_values(["key", "unique_id"])
        anchor = groups.groupby("key")["unique_id"].transform("first")
        pairs = groups[groups["unique_id"] != anchor]
        edges.append(pd.DataFrame({"unique_id_l": anchor[pairs.index], "unique_id_r": pairs["unique_id"],
                                   "deterministic_rule": "same " + " + ".join(rule)}))
    if not edges:
        return pd.DataFrame(columns=["unique_id_l", "unique_id_r", "deterministic_rule"])
    out = pd.concat(edges, ignore_index=True)
    return out.drop_duplicates(subset=["unique_id_l", "unique_id_r"]).reset_index(drop=True)


# ---- analyst labels -----------------------------------------------------------------------------

@dataclass
class Labels:
    same: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["unique_id_l", "unique_id_r"]))
    different: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["unique_id_l", "unique_id_r"]))
    unknown_records: int = 0

    @property
    def count(self) -> int:
        return len(self.same) + len(self.different)


def read_labels(path: Path | None, known_ids: set[str]) -> Labels:
    """Analyst labels: CSV with source_l, pk_l, source_r, pk_r, label (match | no_match), note.
    Labels on records that no longer exist are counted and ignored."""
    if path is None:
        return Labels()
    if not path.exists():
        raise LabelFileError(f"{path}: labels file not found")
    same, different, unknown = [], [], 0
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
            if left not in known_ids or right not in known_ids:
                unknown += 1
                continue
            (same if label in LABEL_MATCH else different).append((left, right))
    cols = ["unique_id_l", "unique_id_r"]
    return Labels(pd.DataFrame(same, columns=cols), pd.DataFrame(different, columns=cols), unknown)


# ---- links and clusters -------------------------------------------------------------------------

def _pair_key(left: pd.Series, right: pd.Series) -> pd.Series:
    return left.where(left < right, right) + "\x1e" + right.where(left < right, left)


def combine_evidence(scores: pd.DataFrame, rules: pd.DataFrame, labels: Labels,
                     threshold: float) -> pd.DataFrame:
    """One row per scored or linked pair: Splink columns + deterministic_rule + label +
    linked + strength (label 3, rule 2, else the match probability). A pair labelled both
    ways counts as different."""
    annotations = pd.concat([
        labels.different.assign(deterministic_rule=None, label="no_match"),
        labels.same.assign(deterministic_rule=None, label="match"),
        rules.assign(label=None),
    ], ignore_index=True)
    annotations["pair"] = _pair_key(annotations["unique_id_l"], annotations["unique_id_r"])
    annotations = annotations.groupby("pair", as_index=False).first()
    scores = scores.copy()
    scores["pair"] = _pair_key(scores["unique_id_l"], scores["unique_id_r"])
    scores = scores.merge(annotations[["pair", "deterministic_rule", "label"]], on="pair", how="left")
    unscored = annotations[~annotations["pair"].isin(scores["pair"])]
    scores = pd.concat([scores, unscored], ignore_index=True).drop(columns=["pair"])
    prob = scores["match_probability"]
    linked = (prob >= threshold) | scores["deterministic_rule"].notna() | (scores["label"] == "match")
    scores["linked"] = linked & (scores["label"] != "no_match")
    strength = prob.fillna(0.0).where(scores["deterministic_rule"].isna(), DETERMINISTIC_STRENGTH)
    scores["strength"] = strength.where(scores["label"] != "match", LABEL_STRENGTH)
    return scores


def connected_components(record_ids: pd.Series, links: pd.DataFrame) -> pd.DataFrame:
    """unique_id -> cluster_id for the linked pairs (Splink's connected components)."""
    from splink import DuckDBAPI
    from splink.clustering import cluster_pairwise_predictions_at_threshold

    con = duckdb.connect()
    try:
        clusters = cluster_pairwise_predictions_at_threshold(
            pd.DataFrame({"unique_id": record_ids}), links[["unique_id_l", "unique_id_r"]],
            DuckDBAPI(connection=con), node_id_column_name="unique_id")
        return clusters.as_pandas_dataframe()[["unique_id", "cluster_id"]]
    finally:
        con.close()


def cluster_records(record_ids: pd.Series, evidence: pd.DataFrame, labels: Labels) -> tuple[pd.DataFrame, int]:
    """Clusters of the linked pairs that never join two records labelled different.
    Returns (unique_id, cluster_id) and the number of components that had to be rebuilt."""
    links = evidence[evidence["linked"]]
    clusters = connected_components(record_ids, links)
    if labels.different.empty:
        return clusters, 0
    cluster_of = clusters.set_index("unique_id")["cluster_id"]
    diff = labels.different
    broken = set(cluster_of[diff["unique_id_l"]].values[
        cluster_of[diff["unique_id_l"]].values == cluster_of[diff["unique_id_r"]].values])
    if not broken:
        return clusters, 0
    members = clusters[clusters["cluster_id"].isin(broken)]
    in_broken = set(members["unique_id"])
    component_links = links[links["unique_id_l"].isin(in_broken)]
    rebuilt = greedy_clusters(members["unique_id"].tolist(), component_links, diff)
    clusters = clusters.set_index("unique_id")
    clusters.loc[rebuilt.index, "cluster_id"] = rebuilt
    return clusters.reset_index(), len(broken)


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
