"""Stitch quality against a ground truth (generator output or a labelled sample)."""

import pandas as pd


def _pairs(counts: pd.Series) -> int:
    return int((counts * (counts - 1) // 2).sum())


def pairwise_quality(assigned: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Pairwise and cluster-level precision / recall / F1 of cdp_ids against true person ids.

    assigned: source, pk, cdp_id; truth: source, pk, person_id. Records missing from either side
    (e.g. quarantined rows) are ignored. Pairwise: every pair of records of one person.
    Cluster-level: a cluster is correct when it holds exactly one person's records, all of them.
    """
    df = assigned.merge(truth, on=["source", "pk"], how="inner")
    predicted = _pairs(df.groupby("cdp_id").size())
    actual = _pairs(df.groupby("person_id").size())
    true_pos = _pairs(df.groupby(["cdp_id", "person_id"]).size())
    precision = true_pos / predicted if predicted else 1.0
    recall = true_pos / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    members = df.groupby("cdp_id")["person_id"].agg(["nunique", "first", "size"])
    person_size = df.groupby("person_id").size()
    exact = members[(members["nunique"] == 1) &
                    (members["size"] == members["first"].map(person_size))]
    c_precision = len(exact) / len(members) if len(members) else 1.0
    c_recall = len(exact) / len(person_size) if len(person_size) else 1.0
    c_f1 = 2 * c_precision * c_recall / (c_precision + c_recall) if c_precision + c_recall else 0.0
    return {"records": len(df), "people_true": int(df["person_id"].nunique()),
            "people_found": int(df["cdp_id"].nunique()), "pairs_true": actual,
            "pairs_predicted": predicted, "pairs_correct": true_pos,
            "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "clusters_exact": len(exact), "cluster_precision": round(c_precision, 4),
            "cluster_recall": round(c_recall, 4), "cluster_f1": round(c_f1, 4)}


def id_stability(before: pd.DataFrame, after: pd.DataFrame, truth: pd.DataFrame,
                 touched: set[str]) -> dict:
    """Share of untouched people whose cdp_id changed between two runs.

    before / after: source, pk, cdp_id of each run; truth: source, pk, person_id (after the
    change); touched: person ids whose records were edited, added or deleted. A person's ids
    are the set of cdp_ids on their records; it changed when the sets differ.
    """
    def ids_per_person(assigned: pd.DataFrame) -> pd.Series:
        df = assigned.merge(truth, on=["source", "pk"])
        return df.groupby("person_id")["cdp_id"].agg(lambda s: tuple(sorted(set(s))))

    old, new = ids_per_person(before), ids_per_person(after)
    untouched = old.index.intersection(new.index).difference(pd.Index(sorted(touched)))
    changed = [p for p in untouched if old[p] != new[p]]
    return {"people_untouched": len(untouched), "people_touched": len(touched),
            "untouched_with_changed_id": len(changed),
            "share_changed": round(len(changed) / len(untouched), 6) if len(untouched) else 0.0,
            "examples": changed[:5]}
