"""The export sensor fires when customer_360 is materialized again, and each export run drops
exactly one new file."""

import dagster as dg

SENSOR = "export_on_c360_customer_360_refresh"


def _tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def(SENSOR)
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    return sensor.evaluate_tick(context)


def test_sensor_runs_export_when_customer_360_refreshes(pipeline_run, dagster_instance, demo_tenant):
    defs = pipeline_run.defs
    exports = demo_tenant.parent / "exports" / "c360"

    # customer_360 was materialized by the pipeline run: the sensor asks for an export run
    assert defs.resolve_sensor_def(SENSOR).job_name == "activation_exports"
    first = _tick(defs, dagster_instance, None)
    assert len(first.run_requests) == 1

    # it sends the destinations of customer_360 only, not those of other exported tables
    assert first.run_requests[0].asset_selection == [dg.AssetKey(["activation", "c360_file_drop"])]
    households = demo_tenant.parent / "exports" / "households"
    before, other_before = set(exports.glob("*.csv")), set(households.glob("*.csv"))
    result = defs.resolve_job_def("activation_exports").execute_in_process(
        instance=dagster_instance, tags=first.run_requests[0].tags,
        asset_selection=first.run_requests[0].asset_selection)
    assert result.success
    assert len(set(exports.glob("*.csv")) - before) == 1
    assert set(households.glob("*.csv")) == other_before

    # nothing new: no run
    idle = _tick(defs, dagster_instance, first.cursor)
    assert not idle.run_requests

    # customer_360 rebuilt (dbt) -> the sensor fires again
    rebuild = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance, asset_selection=[dg.AssetKey(["c360", "customer_360"])])
    assert rebuild.success
    again = _tick(defs, dagster_instance, idle.cursor or first.cursor)
    assert len(again.run_requests) == 1
    assert again.run_requests[0].run_key != first.run_requests[0].run_key


def test_daily_rebuild_schedule_targets_everything_but_exports(pipeline_run):
    defs = pipeline_run.defs
    schedule = defs.resolve_schedule_def("daily_rebuild")
    assert schedule.cron_schedule == "0 3 * * *"
    job = defs.resolve_job_def(schedule.job_name)
    keys = {k.to_user_string() for k in job.asset_layer.executable_asset_keys}
    assert "c360/customer_360" in keys and "stitch/unified_coalesced" in keys
    assert not any(k.startswith("activation/") for k in keys)


def test_bi_connect_publishes_once_all_its_tables_were_rebuilt(tiny_tenant):
    """A destination that publishes several tables waits until every one of them was
    materialized again, then runs once; it does not run again until they all refresh anew."""
    from cdp_assets.definitions import build_definitions

    defs = build_definitions(tiny_tenant)
    sensor = defs.resolve_sensor_def("publish_warehouse_bi_when_its_tables_refresh")
    tables = [dg.AssetKey(t.split(".")) for t in tiny_tenant.destinations["warehouse_bi"].tables]
    assert len(tables) > 1
    with dg.instance_for_test() as instance:
        def tick(cursor=None):
            context = dg.build_multi_asset_sensor_context(
                monitored_assets=tables, instance=instance, definitions=defs, cursor=cursor)
            return sensor(context), context.cursor

        for key in tables[:-1]:
            instance.report_runless_asset_event(dg.AssetMaterialization(key))
        waiting, cursor = tick()
        assert isinstance(waiting, dg.SkipReason) and tables[-1].to_user_string() in waiting.skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization(tables[-1]))
        request, cursor = tick(cursor)
        assert isinstance(request, dg.RunRequest)
        assert request.asset_selection == [dg.AssetKey(["activation", "warehouse_bi"])]
        again, _ = tick(cursor)
        assert isinstance(again, dg.SkipReason)
