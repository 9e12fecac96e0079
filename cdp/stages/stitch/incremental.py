"""Stitch, incremental matching: score, cluster and id only what the pending delta touches.

  1. score the delta's records against every record with the saved model (Splink link_only,
     the delta on one side: DuckDB builds each blocking join on the small side), term
     frequencies counted over ALL records, so a pair scores as in a full run;
  2. the affected records: the stored connected components (stitch.stitched_records) of the
     delta's records, of records linked to them by new evidence (a score at the threshold, a
     deterministic rule key they share with a delta record old or new, a label), and of the
     records the delta's old rows were linked to;
  3. their evidence: stored pairs among them (stitch.unified_scores) minus every pair of a
     delta record, plus the new pairs; deterministic rules recomputed over every record
     holding a rule key of an affected record; labels among them;
  4. the same clustering (cannot-link constraints, households) and the same stable-id logic,
     on the affected records only (previous ids of those records, every id ever issued).
Unaffected records keep their rows and cdp_ids untouched; they are never read into Python.
"""

import logging
import re

import pandas as pd

from cdp.engine import warehouse_of
from cdp.stages.stitch import clusters as cl
from cdp.stages.stitch import state as stm
from cdp.stages.stitch.model import DESIGN_KEY, register_term_frequencies, splink_scratch
from cdp.stages.stitch.preprocess import record_key_sql

DELTA = "_incr_delta"          # present records whose preprocessed row is new or changed
GONE = "_incr_gone"            # every pending record (also the deleted): its old pairs are void
AFFECTED = "_incr_affected"    # the records re-clustered this run


def load_delta(con) -> int:
    con.execute(f"create or replace temp table {GONE} as select distinct unique_id from {stm.PENDING}")
    con.execute(f"""create or replace temp table {DELTA} as select * from prepared
                    where unique_id in (select unique_id from {GONE})""")
    return con.execute(f"select count(*) from {GONE}").fetchall()[0][0]


def score_delta(con, model: dict, threshold: float, out: str = "_incr_scores", narrow: bool = True) -> int:
    """`out`: pairs of a delta record with any other record, scored by the saved model - one
    order of each pair (unique_id_l < unique_id_r), match weight, probability, match key and
    the comparison levels. The other side is narrowed first to the records some blocking rule
    could pair with a delta record (its equalities, either way round), so Splink stacks and
    joins thousands of records, not every one; the pairs are the same."""
    from splink import Linker

    engine = warehouse_of(con)
    settings = {k: v for k, v in model.items() if k != DESIGN_KEY}
    settings["link_type"] = "link_only"
    candidates = candidates_sql([r["blocking_rule"] if isinstance(r, dict) else r
                                 for r in settings["blocking_rules_to_generate_predictions"]])
    others = "prepared"
    if candidates and narrow:
        con.execute(f"create or replace temp table _incr_others as select * from prepared "
                    f"where unique_id in ({candidates})")
        others = "_incr_others"
    with splink_scratch(con):
        db_api = engine.splink_db_api(con)
        linker = Linker([db_api.register(DELTA, table_name="delta_records"),
                         db_api.register(others, table_name="all_records")],
                        engine.splink_model(settings), log_level=logging.ERROR,
                        validate_settings=False)  # validated against these columns when trained
        # over every record (not the two inputs stacked), for the delta's values
        register_term_frequencies(con, linker, db_api, model, "prepared", f"select * from {DELTA}",
                                  prefix="_incr_tf")
        predictions = linker.inference.predict(threshold_match_probability=threshold)
        table = engine.splink_table(predictions.physical_name)
        gammas = [r[0] for r in con.execute(f"describe {table}").fetchall() if r[0].startswith("gamma_")]
        con.execute(f"""
            create or replace temp table {out} as
            select least(unique_id_l, unique_id_r) as unique_id_l, greatest(unique_id_l, unique_id_r) as unique_id_r,
                   any_value(match_weight) as match_weight, any_value(match_probability) as match_probability,
                   any_value(match_key)::varchar as match_key{"".join(f", any_value({g}) as {g}" for g in gammas)}
            from {table} where unique_id_l <> unique_id_r
            group by 1, 2""")
        predictions.drop_table_from_database_and_remove_from_cache()
    return con.execute(f"select count(*) from {out}").fetchall()[0][0]


EQUALITY = re.compile(r"^\(?\s*([lr])\.(\w+)\s*=\s*([lr])\.(\w+)\s*\)?$")


def candidates_sql(rules: list[str]) -> str | None:
    """SQL: unique_id of every record that some blocking rule could pair with a delta record -
    each rule's top-level equalities (l.a = r.b) checked either way round, a superset of the
    rule - in one scan of the records (a membership test per equality pattern, not a semi-join
    and a scan each: ~30 patterns at 1M records took 1.8 s as scans, 1.2 s as one). None when a
    rule has no such equality or an 'or' at its top level (then every record is a candidate)."""
    patterns = set()
    for rule in rules:
        if re.search(r"\bor\b", re.sub(r"\([^()]*\)", "", rule), flags=re.IGNORECASE):
            return None
        terms = []
        for part in re.split(r"\band\b", rule, flags=re.IGNORECASE):
            m = EQUALITY.match(part.strip())
            if m and m.group(1) != m.group(3):
                terms.append((m.group(2), m.group(4)) if m.group(1) == "l" else (m.group(4), m.group(2)))
        if not terms:
            return None
        patterns.add(tuple(sorted((right, left) for left, right in terms)))  # (the other's column, the delta's)
        patterns.add(tuple(sorted((left, right) for left, right in terms)))
    # a pattern that holds another (birthdate and city; birthdate) adds no candidate: dropped;
    # patterns on the same columns of the other record are one membership test (one hash
    # table of the delta's values, one probe per record): the 32 patterns of 32 rules, 18 tests
    kept = [p for p in patterns if not any(set(q) < set(p) for q in patterns)]
    tests: dict[tuple, list[tuple]] = {}
    for pattern in sorted(kept):
        tests.setdefault(tuple(other for other, _ in pattern), []).append(pattern)
    return "select p.unique_id from prepared p where " + "\n or ".join(
        _member_of_delta(others, group) for others, group in tests.items())


def _member_of_delta(others: tuple, patterns: list[tuple]) -> str:
    """SQL on record p: its columns `others` equal, pairwise, the columns of some delta record
    that one of `patterns` pairs them with (no null among them: an equality with a null never
    blocks a pair)."""
    def delta_side(pattern):
        present = " and ".join(f"d.{m} is not null" for _, m in pattern)
        if len(pattern) == 1:
            return f"select d.{pattern[0][1]} from {DELTA} d where {present}"
        mine = ", ".join(f"k{i} := d.{m}" for i, (_, m) in enumerate(pattern))
        return f"select struct_pack({mine}) from {DELTA} d where {present}"

    mine = " union all ".join(delta_side(p) for p in patterns)
    if len(others) == 1:
        return f"p.{others[0]} in ({mine})"
    other = ", ".join(f"k{i} := p.{o}" for i, o in enumerate(others))
    return f"struct_pack({other}) in ({mine})"


def _uid(side: str = "") -> str:
    return f"source{side} || '|' || pk{side}"


def _keys(table: str) -> str:
    """Temp table `table`_keys (source, pk) of a table of unique_ids: unified_scores is joined
    on its two key columns, not on a key built for each of its rows."""
    return f"create or replace temp table {table}_keys as select {record_key_sql('unique_id')} from {table}"


def _touching(keys: str, side: str, alias: str = "s") -> str:
    """SQL: the unified_scores row `alias` has its `side` record in `keys`."""
    return (f"exists (select 1 from {keys} k where k.source = {alias}.source{side} "
            f"and k.pk = {alias}.pk{side})")


def find_affected(con, rules: list[list[str]], labels: cl.Labels, threshold: float) -> int:
    """AFFECTED: the records (present now) of every stored component the delta touches, and
    the delta's records. Returns how many."""
    keys = [f"{' || chr(31) || '.join(f'cast({c} as varchar)' for c in rule)}" for rule in rules]
    present = [" and ".join(f"{c} is not null" for c in rule) for rule in rules]
    rule_partners = " union ".join(
        f"select unique_id from prepared where {p} and {k} in "
        f"(select {k} from {DELTA} where {p} union select {k} from {stm.PENDING_OLD} where {p})"
        for k, p in zip(keys, present))
    con.execute(_keys(GONE))
    con.register("_incr_label_pairs", pd.concat([labels.same, labels.different])[["unique_id_l", "unique_id_r"]])
    try:
        con.execute(f"""
            create or replace temp table _incr_seeds as
            select unique_id from {GONE}
            union select unique_id_l from _incr_scores where match_probability >= {float(threshold)}
            union select unique_id_r from _incr_scores where match_probability >= {float(threshold)}
            union select {_uid('_l')} from stitch.unified_scores s
                  where linked and {_touching(GONE + "_keys", "_r")}
            union select {_uid('_r')} from stitch.unified_scores s
                  where linked and {_touching(GONE + "_keys", "_l")}
            union select unique_id_l from _incr_label_pairs where unique_id_r in (select unique_id from {GONE})
            union select unique_id_r from _incr_label_pairs where unique_id_l in (select unique_id from {GONE})
            {f"union {rule_partners}" if rule_partners else ""}""")
    finally:
        con.unregister("_incr_label_pairs")
    con.execute(f"""
        create or replace temp table {AFFECTED} as
        select unique_id from prepared
        where unique_id in (select unique_id from _incr_seeds)
           or unique_id in (select s.unique_id from {stm.STITCHED} s where s.component in (
                select component from {stm.STITCHED} where unique_id in (select unique_id from _incr_seeds)))""")
    con.execute(f"create or replace temp table _incr_nodes as select * from prepared "
                f"where unique_id in (select unique_id from {AFFECTED})")
    return con.execute(f"select count(*) from {AFFECTED}").fetchall()[0][0]


def affected_evidence(con, rules: list[list[str]], labels: cl.Labels, threshold: float,
                      model_veto: str | None) -> None:
    """`evidence` (as combine_evidence makes it) of the affected records: the stored scored
    pairs among them but those of delta records, every new pair, rules recomputed, labels."""
    new_cols = [r[0] for r in con.execute("describe _incr_scores").fetchall()]
    stored_cols = {r[0] for r in con.execute("describe stitch.unified_scores").fetchall()}
    levels = [c for c in new_cols if c.startswith("gamma_")]
    stored_levels = ", ".join(
        f"s.{c.replace('gamma_', 'level_')} as {c}" if c.replace("gamma_", "level_") in stored_cols
        else f"null::integer as {c}" for c in levels)
    in_affected = f"in (select unique_id from {AFFECTED})"
    con.execute(_keys(AFFECTED))
    con.execute(f"""
        create or replace temp table _incr_pairs as
        select * from _incr_scores
        union all by name
        select {_uid('_l')} as unique_id_l, {_uid('_r')} as unique_id_r, s.match_weight,
               s.match_probability, s.match_key::varchar as match_key{", " + stored_levels if stored_levels else ""}
        from stitch.unified_scores s
        where s.match_probability is not null
          and {_touching(AFFECTED + "_keys", "_l")} and {_touching(AFFECTED + "_keys", "_r")}
          and not {_touching(GONE + "_keys", "_l")} and not {_touching(GONE + "_keys", "_r")}""")
    # every record sharing a rule key with an affected one: whole key groups, so a key's
    # owners (one person or several) and its anchor are judged as in a full run
    holders = " union ".join(
        f"select unique_id from prepared where {' and '.join(f'{c} is not null' for c in rule)} and "
        f"{' || chr(31) || '.join(f'cast({c} as varchar)' for c in rule)} in (select "
        f"{' || chr(31) || '.join(f'cast({c} as varchar)' for c in rule)} from _incr_nodes)" for rule in rules)
    con.execute(f"create or replace temp table _incr_rule_scope as select * from prepared "
                f"where unique_id in ({holders or 'select null'})")
    cl.deterministic_links(con, "_incr_rule_scope", rules, out="_incr_rules_all")
    con.execute(f"""create or replace temp table _incr_rules as select * from _incr_rules_all
                    where unique_id_l {in_affected} and unique_id_r {in_affected}""")
    cl.combine_evidence(con, "_incr_pairs", "_incr_rules", among(con, labels), threshold,
                        out="evidence", model_veto=model_veto)


def among(con, labels: cl.Labels) -> cl.Labels:
    """The labels between two affected records."""
    affected = {r[0] for r in con.execute(f"select unique_id from {AFFECTED}").fetchall()}

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["unique_id_l"].isin(affected) & frame["unique_id_r"].isin(affected)]

    return cl.Labels(keep(labels.same), keep(labels.different), labels.unknown_records)


def load_previous(con) -> None:
    """previous: the open ids of the affected and the deleted records; issued: every id (a view:
    assign_ids looks up the few it could give, it does not need them distinct)."""
    con.execute(f"""create or replace temp table previous as
                    select source || '|' || pk as unique_id, cdp_id from stitch.cdp_id_history
                    where valid_to is null and source || '|' || pk in
                          (select unique_id from {AFFECTED} union select unique_id from {GONE})""")
    con.execute("create or replace temp view issued as select cdp_id from stitch.cdp_id_history")
    con.execute(f"create or replace temp table _incr_scope as select unique_id from {AFFECTED} "
                f"union select unique_id from {GONE}")


def publish_stitched(con) -> None:
    """The affected records' and the deleted records' rows replaced in the stitched state:
    unified_scores (their pairs), stitched_records (their components)."""
    scope = "(select unique_id from _incr_scope)"
    con.execute(_keys("_incr_scope"))
    con.execute(f"""delete from stitch.unified_scores s
                    where ({_touching("_incr_scope_keys", "_l")} and {_touching("_incr_scope_keys", "_r")})
                       or {_touching(GONE + "_keys", "_l")} or {_touching(GONE + "_keys", "_r")}""")
    con.execute(f"delete from {stm.STITCHED} where unique_id in {scope}")
    con.execute(f"insert into {stm.STITCHED} select unique_id, cluster_id from _components")
