"""Stitch building blocks on hand-built inputs: stable ids and change kinds, analyst labels,
the blocklist, deterministic rules; and the saved model being reused by the real asset."""

import duckdb
import pandas as pd
import pytest
import yaml

from cdp.config import DEFAULT_CONFIG, ConfigError, SourceKind, load_config
from cdp.stages.sources.assets import DOMAIN_COLUMNS
from cdp.stages.stitch import clusters as cl
from cdp.stages.stitch import ids as idm
from cdp.stages.stitch.preprocess import build_blocklist, prepare_for_matching, stage_customer_records

TENANT = "t"


def clusters(mapping: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(r, c) for c, rs in mapping.items() for r in rs], columns=["unique_id", "cluster_id"])


def first_run(mapping):
    result = idm.assign_stable_ids(clusters(mapping), pd.DataFrame(columns=["unique_id", "cdp_id"]),
                                   set(), TENANT)
    return result


def id_of(result, record):
    return result.ids.set_index("unique_id")["cdp_id"][record]


def rerun(before, mapping, issued=None):
    previous = before.ids.rename(columns={})
    return idm.assign_stable_ids(clusters(mapping), previous,
                                 issued if issued is not None else set(previous["cdp_id"]), TENANT)


def kinds(result) -> dict[str, str]:
    return dict(zip(result.clusters["previous_id"].fillna("-") + ">" + result.clusters["cdp_id"].fillna("-"),
                    result.clusters["change"]))


def test_first_run_everything_is_new_and_ids_are_derived_from_the_anchor():
    r = first_run({"A": ["s|1", "s|2"], "B": ["s|3"]})
    assert set(r.clusters["change"]) == {"new"}
    assert id_of(r, "s|1") == id_of(r, "s|2") == idm.cdp_id_for(TENANT, "s|1")
    assert id_of(r, "s|3") == idm.cdp_id_for(TENANT, "s|3")
    assert (r.records["reason"] == "new record").all()


def test_unchanged_input_gives_exactly_the_same_ids():
    before = first_run({"A": ["s|1", "s|2"], "B": ["s|3"]})
    after = rerun(before, {"X": ["s|1", "s|2"], "Y": ["s|3"]})  # cluster labels differ, members not
    assert after.ids.sort_values("unique_id").equals(before.ids.sort_values("unique_id"))
    assert set(after.clusters["change"]) == {"unchanged"}
    assert after.records.empty


def test_record_added_keeps_id_and_is_changed():
    before = first_run({"A": ["s|1", "s|2"]})
    after = rerun(before, {"A": ["s|1", "s|2", "s|9"]})
    assert id_of(after, "s|9") == id_of(before, "s|1")
    assert list(after.clusters["change"]) == ["changed"]
    assert after.records.set_index("pk")["reason"]["9"] == "new record"


def test_merge_keeps_the_id_of_the_larger_previous_cluster():
    before = first_run({"A": ["s|1", "s|2", "s|3"], "B": ["s|4"]})
    after = rerun(before, {"M": ["s|1", "s|2", "s|3", "s|4"]})
    big, small = id_of(before, "s|1"), id_of(before, "s|4")
    assert set(after.ids["cdp_id"]) == {big}
    k = after.clusters.set_index("change")
    assert k.loc["merged", "cdp_id"] == big and sorted(k.loc["merged", "previous_ids"]) == sorted([big, small])
    assert k.loc["retired", "previous_id"] == small and k.loc["retired", "cdp_id"] == big
    moved = after.records.set_index("pk")
    assert moved.loc["4", "previous_id"] == small and moved.loc["4", "reason"] == "clusters merged"


def test_merge_tie_is_broken_deterministically_by_lowest_previous_id():
    before = first_run({"A": ["s|1"], "B": ["s|2"]})
    winner = min(id_of(before, "s|1"), id_of(before, "s|2"))
    for label in ("M", "N"):
        after = rerun(before, {label: ["s|1", "s|2"]})
        assert set(after.ids["cdp_id"]) == {winner}


def test_split_largest_piece_keeps_id_others_get_new_ids_never_reissued():
    before = first_run({"A": ["s|1", "s|2", "s|3"]})
    old = id_of(before, "s|1")
    after = rerun(before, {"P": ["s|1", "s|2"], "Q": ["s|3"]})
    assert id_of(after, "s|1") == old
    assert id_of(after, "s|3") != old
    assert set(after.clusters["change"]) == {"split"}
    assert after.records.set_index("pk").loc["3", "reason"] == "cluster split"
    # s|3 alone would get the id derived from itself; an id issued before is never handed out again
    issued = {old, idm.cdp_id_for(TENANT, "s|3")}
    again = rerun(before, {"P": ["s|1", "s|2"], "Q": ["s|3"]}, issued=issued)
    assert id_of(again, "s|3") not in issued
    # and neither is the first alternative when it was issued too: the next one is taken
    issued.add(idm.cdp_id_for(TENANT, "s|3", 1))
    again = rerun(before, {"P": ["s|1", "s|2"], "Q": ["s|3"]}, issued=issued)
    assert id_of(again, "s|3") == idm.cdp_id_for(TENANT, "s|3", 2)


def test_retired_when_all_records_are_gone():
    before = first_run({"A": ["s|1"], "B": ["s|2"]})
    after = rerun(before, {"A": ["s|1"]})
    retired = after.clusters[after.clusters["change"] == "retired"]
    assert list(retired["previous_id"]) == [id_of(before, "s|2")] and retired["cdp_id"].isna().all()
    gone = after.records.set_index("pk").loc["2"]
    assert gone["cdp_id"] is None and gone["reason"] == "record no longer in any source"


def test_history_keeps_every_id_a_record_had(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))

    def record(result, run, day):
        con.register("_ids", result.ids)
        con.register("_why", result.records)
        idm.record_history(con, "_ids", "_why", run, pd.Timestamp(day))

    previous, issued = idm.previous_assignment(con)
    r1 = idm.assign_stable_ids(clusters({"A": ["s|1", "s|2"], "B": ["s|3"]}), previous, issued, TENANT)
    record(r1, "run1", "2026-01-01")
    previous, issued = idm.previous_assignment(con)
    r2 = idm.assign_stable_ids(clusters({"A": ["s|1", "s|2", "s|3"]}), previous, issued, TENANT)
    record(r2, "run2", "2026-01-02")
    rows = con.execute("select pk, cdp_id, valid_to is null as open, change from stitch.cdp_id_history "
                       "where pk = '3' order by valid_from").fetchall()
    assert [r[2] for r in rows] == [False, True]
    assert rows[0][1] == id_of(r1, "s|3") and rows[1][1] == id_of(r1, "s|1")
    assert rows[1][3] == "clusters merged"
    previous, _ = idm.previous_assignment(con)
    assert len(previous) == 3 and set(previous["cdp_id"]) == {id_of(r1, "s|1")}


def test_ids_computed_in_sql_are_python_uuid5():
    con = duckdb.connect()
    names = ["t:s|1", "tenant:pos|ü 42", "x:" + "9" * 200]
    got = [r[0] for r in con.execute(
        f"select {idm.uuid_from_sha1_sql('h')} from (select {idm.uuid5_sha1_sql('n')} as h, i "
        "from (select unnest(?) as n, generate_subscripts(?, 1) as i)) order by i", [names, names]).fetchall()]
    assert got == [str(__import__("uuid").uuid5(idm.CDP_ID_NAMESPACE, n)) for n in names]


# ---- labels and clustering ----------------------------------------------------------------------

def evidence(pairs: list[tuple[str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"unique_id_l": a, "unique_id_r": b, "match_probability": p, "match_weight": 0.0}
                         for a, b, p in pairs])


def test_no_match_label_splits_a_chain_and_match_label_joins():
    con = duckdb.connect()
    con.register("prepared", pd.DataFrame({"unique_id": ["s|a", "s|b", "s|c", "s|d"],
                                           "given_name_alias": ["ann"] * 4}))
    con.register("scores", evidence([("s|a", "s|b", 0.99), ("s|b", "s|c", 0.95)]))
    labels = cl.Labels(same=pd.DataFrame([("s|c", "s|d")], columns=["unique_id_l", "unique_id_r"]),
                       different=pd.DataFrame([("s|a", "s|c")], columns=["unique_id_l", "unique_id_r"]))
    cl.deterministic_links(con, "prepared", [])
    cl.combine_evidence(con, "scores", "rule_links", labels, 0.9)
    rebuilt = cl.cluster_records(con, "prepared", "evidence")
    cluster = dict(con.execute("select unique_id, cluster_id from clusters").fetchall())
    assert rebuilt == {"label": 1, "birthdate": 0}
    assert cluster["s|a"] == cluster["s|b"]          # strongest link kept
    assert cluster["s|c"] == cluster["s|d"]          # analyst said same
    assert cluster["s|a"] != cluster["s|c"]          # analyst said different, even via s|b
    linked = dict(con.execute("select unique_id_l || '-' || unique_id_r, linked from evidence").fetchall())
    assert linked == {"s|a-s|b": True, "s|b-s|c": True, "s|c-s|d": True, "s|a-s|c": False}


def test_with_household_protections_the_model_alone_never_links_conflicting_given_names():
    """A household's family email + address + surname can outweigh a name conflict at scale;
    the veto holds whatever the probability, and a deterministic rule still links."""
    from cdp.stages.stitch.model import HOUSEHOLD_VETO

    con = duckdb.connect()
    con.register("prepared", pd.DataFrame({"unique_id": ["s|regina", "s|phillip", "s|jo", "s|joe"],
                                           "loyalty_id": [None, None, "L1", "L1"],
                                           "given_name_alias": ["regina", "phillip", "jo", "joe"]}))
    scores = evidence([("s|regina", "s|phillip", 0.93), ("s|jo", "s|joe", 0.5)])
    scores["gamma_given_name"] = [0, 0]
    con.register("scores", scores)
    cl.deterministic_links(con, "prepared", [["loyalty_id"]])
    cl.combine_evidence(con, "scores", "rule_links", cl.Labels(), 0.9, model_veto=HOUSEHOLD_VETO)
    linked = dict(con.execute("select unique_id_l || '-' || unique_id_r, linked from evidence").fetchall())
    assert linked == {"s|regina-s|phillip": False, "s|jo-s|joe": True}
    cl.combine_evidence(con, "scores", "rule_links", cl.Labels(), 0.9)
    assert con.execute("select linked from evidence where unique_id_l = 's|regina'").fetchone() == (True,)


def test_birthdates_years_apart_never_share_a_cluster():
    """A chain parent - shared family email - child is cut at its weakest link."""
    con = duckdb.connect()
    con.register("prepared", pd.DataFrame({
        "unique_id": ["s|mom", "s|mom2", "s|kid", "s|kid2"],
        "given_name_alias": ["ann", "ann", "anna", "anna"],
        "birthdate": pd.to_datetime(["1965-03-01", "1965-03-10", "1990-07-07", None]).date}))
    con.register("scores", evidence([("s|mom", "s|mom2", 0.99), ("s|mom2", "s|kid", 0.91),
                                     ("s|kid", "s|kid2", 0.97)]))
    cl.deterministic_links(con, "prepared", [])
    cl.combine_evidence(con, "scores", "rule_links", cl.Labels(), 0.9)
    rebuilt = cl.cluster_records(con, "prepared", "evidence", birthdate_gap_days=366)
    cluster = dict(con.execute("select unique_id, cluster_id from clusters").fetchall())
    assert rebuilt == {"label": 0, "birthdate": 1}
    assert cluster["s|mom"] == cluster["s|mom2"] != cluster["s|kid"] == cluster["s|kid2"]
    cl.cluster_records(con, "prepared", "evidence", birthdate_gap_days=None)
    assert len({c for _, c in con.execute("select * from clusters").fetchall()}) == 1


def test_labels_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("source_l,pk_l,source_r,pk_r,label\ns,1,s,2,maybe\n")
    with pytest.raises(cl.LabelFileError, match=r"labels.csv: line 2: label 'maybe'"):
        cl.read_labels(path, {"s|1", "s|2"})
    path.write_text("source_l,pk_l,label\ns,1,match\n")
    with pytest.raises(cl.LabelFileError, match="missing columns"):
        cl.read_labels(path, set())
    path.write_text("source_l,pk_l,source_r,pk_r,label,note\ns,1,s,2,match,same card\ns,1,s,404,no_match,\n")
    labels = cl.read_labels(path, {"s|1", "s|2"})
    assert len(labels.same) == 1 and labels.unknown_records == 1


# ---- blocklist and deterministic rules ----------------------------------------------------------

def stage(cfg, rows: list[dict]):
    """A warehouse whose first customer domain table holds these rows (the others empty), staged
    for matching."""
    con = duckdb.connect()
    con.execute("create schema domain")
    columns = DOMAIN_COLUMNS[SourceKind.customers]
    for n, name in enumerate(cfg.customer_sources):
        frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in (rows if n == 0 else [])],
                             columns=columns).astype(object)
        con.register("_rows", frame)
        con.execute(f'create table domain."{name}" as select * from _rows')
        con.unregister("_rows")
    stage_customer_records(con, cfg)
    return con


def test_blocklist_configured_and_detected_households_spared():
    cfg = load_config(DEFAULT_CONFIG)
    shared_by_seven = [{"source": "s", "pk": str(i), "given_name": name, "email": "front@desk.com",
                        "address": "1 main st"}
                       for i, name in enumerate(["Ann", "Bob", "Cy", "Dee", "Eve", "Flo", "Gus"])]
    household = [{"source": "h", "pk": str(i), "given_name": name, "phone": "+12125550100",
                  "email": "thesmiths@x.com", "address": "9 oak st"}
                 for i, name in enumerate(["Katherine", "Kathy", "Kathhy", "John", "Jon", "Mary"])]
    junk = [{"source": "j", "pk": "1", "given_name": "Zed", "email": "test@test.com",
             "phone": "+10000000000"}]
    con = stage(cfg, shared_by_seven + household + junk)
    bl = build_blocklist(con, cfg).set_index(["field", "value"])
    assert bl.loc[("email", "test@test.com"), "reason"] == "configured"
    assert bl.loc[("email", "test@test.com"), "records_touched"] == 1
    assert bl.loc[("phone", "+10000000000"), "reason"] == "configured"
    assert "shared by 7 different people" in bl.loc[("email", "front@desk.com"), "reason"]
    assert bl.loc[("email", "front@desk.com"), "records_touched"] == 7
    assert ("address", "1 main st") in bl.index
    # Katherine/Kathy/Kathhy, John/Jon and Mary are three people: a household, not junk
    assert ("email", "thesmiths@x.com") not in bl.index and ("address", "9 oak st") not in bl.index
    prepare_for_matching(con, bl.reset_index(), "prepared")
    prepared = con.execute("select * from prepared").df()
    assert len(prepared) == len(shared_by_seven + household + junk)
    assert prepared["email"].isin(["test@test.com", "front@desk.com"]).sum() == 0
    assert prepared["email_user"].isin(["test", "front"]).sum() == 0
    assert prepared["email_user"].eq("thesmiths").sum() == 6
    assert set(prepared.loc[prepared["given_name"] == "kathy", "given_name_alias"]) == {"katherine"}


def test_a_mailbox_that_spells_a_name_is_compared_only_within_its_postal_code():
    """A newsletter sign-up (mailbox, maybe a first name) meets the named records whose full name
    its mailbox spells, in its own postal code; never a namesake elsewhere. A nickname spells the
    formal name too. Initials count only where a single person in the postal code fits them."""
    from cdp.stages.stitch.design import _name_in_email_rules

    cfg = load_config(DEFAULT_CONFIG)
    con = stage(cfg, [
        {"source": "pos", "pk": "1", "given_name": "Mary", "surname": "Poole", "postal": "02494"},
        {"source": "pos", "pk": "2", "given_name": "Mary", "surname": "Poole", "postal": "90210"},
        {"source": "pos", "pk": "3", "given_name": "Juan", "surname": "Galloway", "postal": "49844"},
        {"source": "pos", "pk": "4", "given_name": "Michael", "surname": "Poole", "postal": "02494"},
        {"source": "pos", "pk": "5", "given_name": "Maggie", "surname": "Fleming", "postal": "28833"},
        {"source": "news", "pk": "a", "email": "poole.mary47@gmail.com", "postal": "02494"},
        {"source": "news", "pk": "b", "given_name": "Juan", "email": "juan_galloway@yahoo.com",
         "postal": "49844"},
        {"source": "news", "pk": "c", "email": "jgalloway@yahoo.com", "postal": "49844"},
        {"source": "news", "pk": "d", "email": "mpoole@gmail.com", "postal": "02494"},
        {"source": "news", "pk": "e", "email": "margaret.fleming@comcast.net", "postal": "28833"},
    ])
    prepare_for_matching(con, pd.DataFrame({"field": [], "value": []}, dtype=str), "prepared")
    rules = " or ".join(f"({r.sql})" for r in _name_in_email_rules())
    pairs = {tuple(sorted(p)) for p in con.execute(
        f"select l.unique_id, r.unique_id from prepared l join prepared r "
        f"on l.unique_id < r.unique_id and ({rules})").fetchall()}
    # 'mpoole' fits Mary and Michael Poole in 02494: evidence for neither
    assert pairs == {("news|a", "pos|1"), ("news|b", "pos|3"), ("news|c", "pos|3"), ("news|e", "pos|5")}


def test_a_misspelt_nickname_takes_the_alias_of_the_more_common_name():
    cfg = load_config(DEFAULT_CONFIG)
    names = ["Jeff", "Jeff", "Jtff", "Steph", "Steph", "Stpeh", "Regina", "Tom", "Tomm"]
    con = stage(cfg, [{"source": "s", "pk": str(i), "given_name": n} for i, n in enumerate(names)])
    alias = dict(con.execute("select given_name, given_name_alias from _stitch_records").fetchall())
    assert alias["jtff"] == "jeffrey" and alias["stpeh"] == "stephanie"
    assert alias["regina"] == "regina"        # no known name one typo away
    assert alias["tomm"] == "tomm"            # as common as 'tom': a name in its own right


def test_a_value_carried_by_hundreds_of_names_is_counted_up_to_a_cap():
    cfg = load_config(DEFAULT_CONFIG)
    names = [f"{a}{b}" for a in "bcdfghjklm" for b in ("ax", "oy", "uz", "el", "ir", "on", "ut", "ek")]
    con = stage(cfg, [{"source": "s", "pk": str(i), "given_name": n, "phone": "+12125550199"}
                      for i, n in enumerate(names)])
    bl = build_blocklist(con, cfg).set_index(["field", "value"])
    assert "shared by at least 50 different people" in bl.loc[("phone", "+12125550199"), "reason"]
    assert bl.loc[("phone", "+12125550199"), "records_touched"] == len(names)


def test_deterministic_rule_skips_values_several_people_carry():
    con = duckdb.connect()
    con.register("prepared", pd.DataFrame({
        "unique_id": ["a|1", "b|1", "c|1", "a|2", "b|2"],
        "given_name_alias": ["robert", "robert", None, "mary", "john"],
        "email": ["bob@x.com", "bob@x.com", "bob@x.com", "fam@x.com", "fam@x.com"],
    }))
    assert cl.deterministic_links(con, "prepared", [["email"]]) == 2
    links = con.execute("select * from rule_links").df()
    pairs = {frozenset(p) for p in zip(links["unique_id_l"], links["unique_id_r"])}
    assert pairs == {frozenset({"a|1", "b|1"}), frozenset({"a|1", "c|1"})}
    assert set(links["deterministic_rule"]) == {"same email"}


def test_deterministic_rule_fields_are_validated(tmp_path):
    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["stitch"]["deterministic_rules"] = [["email", "shoe_size"]]
    path = tmp_path / "tenant.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError, match=r"stitch.deterministic_rules: .*'shoe_size' cannot be matched on"):
        load_config(path)


# ---- the real model asset: saved, reused, retrained on request ---------------------------------

def test_match_model_is_reused_until_retrain_is_asked(pipeline_run, dagster_instance, demo_tenant):
    import dagster as dg

    defs = pipeline_run.defs
    job = defs.resolve_implicit_global_asset_job_def()
    key = dg.AssetKey(["stitch", "match_model"])

    def materialize(retrain: bool):
        result = job.execute_in_process(
            instance=dagster_instance, asset_selection=[key],
            run_config={"ops": {"stitch__match_model": {"config": {"retrain": retrain}}}})
        assert result.success
        return result.get_asset_materialization_events()[0].materialization.metadata

    first = pipeline_run.get_asset_materialization_events()
    trained = next(m.materialization.metadata for m in first if m.asset_key == key)
    assert trained["reused"].value is False
    reused = materialize(False)
    assert reused["reused"].value is True and reused["version"].value == trained["version"].value
    retrained = materialize(True)
    assert retrained["reused"].value is False
    assert retrained["version"].value == trained["version"].value + 1
    models = demo_tenant.parent / "stitch_artefacts" / "models"
    assert len(list(models.glob("model_v*.json"))) == retrained["version"].value
    for chart in ("match_weights", "m_u_parameters"):
        html = (demo_tenant.parent / "stitch_artefacts" / "charts" / f"{chart}.html").read_text()
        assert "vega" in html.lower()


def test_clusters_over_the_size_limit_are_flagged(pipeline_run, warehouse, demo_tenant):
    """The check runs in the stitch step on the published table; a limit below the largest real
    cluster flags exactly the clusters over it, as a warning (the run goes on)."""
    import dagster as dg

    from cdp.stages.stitch.assets import no_implausible_clusters

    evaluations = {c.check_name: c for c in pipeline_run.get_asset_check_evaluations()
                   if c.asset_key == dg.AssetKey(["stitch", "unified_coalesced"])}
    assert evaluations["no_implausible_clusters"].passed
    assert evaluations["every_domain_record_once"].passed
    cfg = load_config(demo_tenant)
    sizes = warehouse.execute("select count(*) n from stitch.unified_coalesced group by cdp_id").df()["n"]
    cfg.stitch.max_cluster_size = int(sizes.max()) - 1
    result = no_implausible_clusters(warehouse, cfg)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN
    assert result.metadata["clusters_over_limit"].value == int((sizes > cfg.stitch.max_cluster_size).sum()) > 0


# ---- end to end: the next delivery changes only the people it touches --------------------------

@pytest.mark.slow
def test_ids_of_untouched_people_survive_a_perturbed_rerun(tmp_path):
    import shutil

    import duckdb

    import dagster as dg

    from cdp.definitions import build_definitions
    from cdp.demo.generate import generate_demo_data, perturb_demo_data
    from cdp.stages.stitch.quality import id_stability

    shutil.copy(DEFAULT_CONFIG, tmp_path / "tenant.yaml")
    generate_demo_data(tmp_path / "data", people=300, seed=5)

    def run_and_read():
        # what a delivery changes in Stitch: the sources and stitch groups, as a run materializes
        # them (the stages after Stitch do not feed back into it)
        defs = build_definitions(load_config(tmp_path / "tenant.yaml"))
        job = dg.define_asset_job("stitch_run", selection=dg.AssetSelection.groups("sources", "stitch"))
        defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
        assert defs.resolve_job_def("stitch_run").execute_in_process(
            instance=instance, run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}}).success
        con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
        try:
            return (con.execute("select source, pk, cdp_id from stitch.unified_coalesced").df(),
                    dict(con.execute("select change, count(*) from stitch.unified_changes_clusters "
                                     "group by 1").fetchall()))
        finally:
            con.close()

    # an instance of its own: this tenant shares the demo's asset keys, and its runs must not
    # make the session's demo tables look stale to the tests that share that instance
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        before, first_changes = run_and_read()
        assert set(first_changes) == {"new"}
        touched = perturb_demo_data(tmp_path / "data", share=0.03, seed=5)
        after, changes = run_and_read()
    truth = pd.read_csv(tmp_path / "data" / "ground_truth.csv", dtype=str, keep_default_na=False)
    result = id_stability(before, after, truth, touched)
    assert result["people_untouched"] > 250
    assert result["untouched_with_changed_id"] == 0, result
    assert changes.get("unchanged", 0) > 250 and set(changes) - {"unchanged"}
