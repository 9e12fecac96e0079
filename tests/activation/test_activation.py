"""Sends on the real demo graph, through the CLI and real Dagster instances: a second `cdp run`
delivers nothing and leaves the sensors nothing to ask for; a sensor tick in the middle of a
Materialize all asks for nothing; a Dagster instance that did not run the sends (`dagster dev`
after an ephemeral `cdp run`) asks once, delivers nothing unchanged, and a restarted daemon does
not ask again; changed data is sent exactly once; the tag cdp/resend=true sends again."""

import re

import dagster as dg
import duckdb

from cdp.cli import main

C360, SEGMENTS = dg.AssetKey(["c360", "customer_360"]), dg.AssetKey(["activation", "segments"])
C360_DROP = dg.AssetKey(["activation", "c360_file_drop"])
SEND_FANS = dg.AssetKey(["activation", "send_bakery_fans_to_drop"])
SENDS = {C360_DROP, SEND_FANS, dg.AssetKey(["activation", "paid_media_audience"]),
         dg.AssetKey(["activation", "households_file_drop"])}
EXPORT_SENSOR, FANS_SENSOR = "export_on_c360_customer_360_refresh", "orchestrate_bakery_fans_to_drop"


def exported(demo_tenant) -> dict[str, set[str]]:
    """Every file the sends dropped, by folder."""
    return {d.name: {p.name for p in d.iterdir()} for d in (demo_tenant.parent / "exports").iterdir()}


def new_files(before: dict, after: dict) -> dict[str, int]:
    return {folder: len(after[folder] - before.get(folder, set()))
            for folder in after if after[folder] - before.get(folder, set())}


def warehouse_rows(demo_tenant, sql: str):
    con = duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def recipients(demo_tenant) -> int:
    return warehouse_rows(demo_tenant, "select count(*) from activation.campaign_recipients")[0][0]


def tick_all(defs, instance, cursors: dict | None = None) -> dict:
    """One evaluation of every sensor, as the daemon makes it."""
    return {s.name: s.evaluate_tick(dg.build_sensor_context(
        instance=instance, cursor=(cursors or {}).get(s.name), definitions=defs)) for s in defs.sensors}


def requested(ticks: dict) -> dict:
    return {name: tick.run_requests for name, tick in ticks.items() if tick.run_requests}


def sent(instance, key: dg.AssetKey) -> bool:
    """Whether the latest materialization of a send delivered anything."""
    [record] = instance.fetch_materializations(key, limit=1).records
    return record.asset_materialization.metadata["sent"].value


def materialize(defs, instance, keys, **tags):
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=list(keys), tags=tags)
    assert result.success
    return result


def launch(defs, instance, sensor_name: str, request: dg.RunRequest):
    """Run what a sensor asked for, as the daemon would."""
    job = defs.resolve_job_def(defs.resolve_sensor_def(sensor_name).job_name)
    result = job.execute_in_process(instance=instance, tags=request.tags, asset_selection=request.asset_selection)
    assert result.success
    return result


def test_sensors_are_stopped_by_default(pipeline_run):
    assert {s.name: s.default_status for s in pipeline_run.defs.sensors} == {
        name: dg.DefaultSensorStatus.STOPPED for name in (
            EXPORT_SENSOR, FANS_SENSOR, "export_on_paid_media_c360_customer_360_refresh",
            "export_on_custom_households_refresh")}


def test_the_daily_rebuild_refreshes_everything_but_the_sends(pipeline_run):
    defs = pipeline_run.defs
    schedule = defs.resolve_schedule_def("daily_rebuild")
    assert schedule.cron_schedule == "0 3 * * *"
    keys = set(defs.resolve_job_def(schedule.job_name).asset_layer.executable_asset_keys)
    assert {C360, SEGMENTS, dg.AssetKey(["activation", "profile_store"])} <= keys
    assert not keys & SENDS


def test_a_second_cdp_run_sends_nothing_and_leaves_the_sensors_nothing_to_ask(
        pipeline_run, dagster_instance, demo_tenant, monkeypatch, capsys):
    defs = pipeline_run.defs
    first = {e.asset_key: e.event_specific_data.materialization.metadata
             for e in pipeline_run.get_asset_materialization_events() if e.asset_key in SENDS}
    assert set(first) == SENDS and all(meta["sent"].value for meta in first.values())
    files, sent_to = exported(demo_tenant), recipients(demo_tenant)

    monkeypatch.setenv("DAGSTER_HOME", dagster_instance.root_directory)  # the same instance
    assert main(["run", "--config", str(demo_tenant)]) == 0
    out = capsys.readouterr().out  # the terminal says so, for every send
    assert all(re.search(f"  ✓ .*: {key.to_user_string()}, [0-9,]+ rows, unchanged since its "
                         "last send: nothing sent", out) for key in SENDS), out

    assert exported(demo_tenant) == files and recipients(demo_tenant) == sent_to
    assert not any(sent(dagster_instance, key) for key in SENDS)
    ticks = tick_all(defs, dagster_instance)
    assert not requested(ticks)
    assert all("up to date" in tick.skip_message for tick in ticks.values()), ticks
    # a daemon started afresh on that instance, with the cursors it stored: nothing either
    restarted = dg.DagsterInstance.from_config(dagster_instance.root_directory)
    assert not requested(tick_all(defs, restarted, {n: t.cursor for n, t in ticks.items()}))


def test_a_sensor_tick_during_materialize_all_asks_for_nothing(pipeline_run, dagster_instance, demo_tenant):
    defs = pipeline_run.defs
    mid_run: list[tuple[str, dict]] = []

    @dg.success_hook
    def tick_sensors(context: dg.HookContext):
        mid_run.append((context.step_key, tick_all(defs, context.instance)))

    everything = dg.define_asset_job("materialize_all", selection=[C360, SEGMENTS, C360_DROP, SEND_FANS],
                                     hooks={tick_sensors})
    files, sent_to = exported(demo_tenant), recipients(demo_tenant)
    result = dg.Definitions.merge(defs, dg.Definitions(jobs=[everything])).resolve_job_def(
        "materialize_all").execute_in_process(instance=dagster_instance)
    assert result.success and len(mid_run) == 4

    assert not any(requested(ticks) for _, ticks in mid_run)
    # while customer_360 and the segments were new but the sends still to come, the sensors saw
    # that this run sends them
    waited = {name for _, ticks in mid_run for name, tick in ticks.items() if "materializes it" in tick.skip_message}
    assert waited == {EXPORT_SENSOR, FANS_SENSOR}
    assert exported(demo_tenant) == files and recipients(demo_tenant) == sent_to


def test_another_instance_asks_once_sends_only_changes_and_resends_on_request(pipeline_run, demo_tenant):
    """`dagster dev` after an ephemeral `cdp run`: its instance never saw the sends run."""
    defs = pipeline_run.defs
    with dg.instance_for_test() as instance:
        assert all("first materialization" in t.skip_message for t in tick_all(defs, instance).values())
        materialize(defs, instance, [C360, SEGMENTS])
        ticks = tick_all(defs, instance)
        asked = requested(ticks)
        assert {n: [r.asset_selection for r in rs] for n, rs in asked.items()} == {
            EXPORT_SENSOR: [[C360_DROP]], FANS_SENSOR: [[SEND_FANS]]}
        cursors = {n: t.cursor for n, t in ticks.items()}
        # the daemon restarts before the runs went: with its stored cursors it does not ask again
        restarted = dg.DagsterInstance.from_config(instance.root_directory)
        assert not requested(tick_all(defs, restarted, cursors))

        # the runs go; the warehouse knows this data was delivered by the first `cdp run`
        files, sent_to = exported(demo_tenant), recipients(demo_tenant)
        for name, [request] in asked.items():
            launch(defs, instance, name, request)
        assert exported(demo_tenant) == files and recipients(demo_tenant) == sent_to
        assert not sent(instance, C360_DROP) and not sent(instance, SEND_FANS)
        ticks = tick_all(defs, instance, cursors)
        assert not requested(ticks)

        # changed data: a bakery fan's first name. The segments are rebuilt -> one send of them
        [(fan, members)] = warehouse_rows(demo_tenant, "select min(cdp_id), count(*) from activation.segment_bakery_fans")
        con = duckdb.connect(str(demo_tenant.parent / "warehouse.duckdb"))
        con.execute("update c360.customer_360 set given_name = 'Changed' where cdp_id = ?", [fan])
        con.close()
        try:
            materialize(defs, instance, [SEGMENTS])
            ticks = tick_all(defs, instance, {n: t.cursor for n, t in ticks.items()})
            [request] = requested(ticks)[FANS_SENSOR]
            assert set(requested(ticks)) == {FANS_SENSOR}
            launch(defs, instance, FANS_SENSOR, request)
            assert new_files(files, exported(demo_tenant)) == {"segments": 1}
            assert recipients(demo_tenant) == sent_to + members
            assert not requested(tick_all(defs, instance, {n: t.cursor for n, t in ticks.items()}))

            # the export of customer_360, materialized by hand: the change once, then nothing
            materialize(defs, instance, [C360_DROP])
            materialize(defs, instance, [C360_DROP])
            assert new_files(files, exported(demo_tenant)) == {"segments": 1, "c360": 1}

            # a deliberate resend of unchanged data
            materialize(defs, instance, [SEND_FANS], **{"cdp/resend": "true"})
            assert new_files(files, exported(demo_tenant)) == {"segments": 2, "c360": 1}
            assert recipients(demo_tenant) == sent_to + 2 * members
            deliveries = warehouse_rows(demo_tenant, "select send_name, count(*) from activation.sends "
                                                     "group by 1 order by 1")
            assert dict(deliveries)["activation/send_bakery_fans_to_drop"] == 3  # cdp run, change, resend
        finally:
            materialize(defs, instance, [C360])  # dbt rebuilds customer_360 as it was


def test_bi_connect_publishes_once_all_its_tables_were_rebuilt(tiny_tenant):
    """A destination that publishes several tables waits until every one of them was
    materialized again, then runs once; it does not run again until they all refresh anew."""
    from cdp.definitions import build_definitions

    defs = build_definitions(tiny_tenant)
    sensor = defs.resolve_sensor_def("publish_warehouse_bi_when_its_tables_refresh")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    tables = [dg.AssetKey(t.split(".")) for t in tiny_tenant.destinations["warehouse_bi"].tables]
    assert len(tables) > 1
    with dg.instance_for_test() as instance:
        def tick(cursor=None):
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                definitions=defs))

        for key in tables[:-1]:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        waiting = tick()
        assert not waiting.run_requests and tables[-1].to_user_string() in waiting.skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization(tables[-1]))
        first = tick(waiting.cursor)
        assert [r.asset_selection for r in first.run_requests] == [[dg.AssetKey(["activation", "warehouse_bi"])]]
        assert not tick(first.cursor).run_requests
