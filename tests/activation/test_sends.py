"""The send sensors against a real Dagster instance, on a three-asset graph (no warehouse, so a
second each): a send runs once per new materialization of its upstream, not again after a
Materialize all that sent it, not while the run that materialized the upstream is still going,
and not again after a daemon restart."""

import dagster as dg

from cdp.stages.activation.sends import send_sensor

UP, SEND, PROBE = dg.AssetKey("upstream"), dg.AssetKey("send"), dg.AssetKey("probe")
seen_mid_run: list = []


@dg.asset(key=UP)
def upstream():
    return dg.MaterializeResult()


@dg.asset(key=PROBE, deps=[UP])
def probe(context: dg.AssetExecutionContext):
    """Runs between the upstream and the send: a sensor tick in the middle of a Materialize all."""
    seen_mid_run.append(_tick(context.instance, None))
    return dg.MaterializeResult()


@dg.asset(key=SEND, deps=[UP, PROBE])
def send():
    return dg.MaterializeResult()


JOB = dg.define_asset_job("send_job", selection=[SEND])
SENSOR = send_sensor("send_on_upstream", [UP], [SEND], JOB, description="test")
DEFS = dg.Definitions(assets=[upstream, probe, send], jobs=[JOB], sensors=[SENSOR])


def _tick(instance, cursor):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=DEFS)
    return SENSOR.evaluate_tick(context)


def _materialize(instance, *keys):
    result = DEFS.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=list(keys))
    assert result.success


def test_sensors_are_stopped_by_default():
    assert SENSOR.default_status == dg.DefaultSensorStatus.STOPPED


def test_a_send_runs_once_per_new_upstream_materialization():
    seen_mid_run.clear()
    with dg.instance_for_test() as instance:
        waiting = _tick(instance, None)
        assert not waiting.run_requests and "first materialization" in waiting.skip_message

        # Materialize all: the upstream and the send in one run. Mid-run, the upstream is new but
        # the run will send it itself; afterwards the send is newer than its upstream.
        _materialize(instance, UP, PROBE, SEND)
        assert not seen_mid_run[0].run_requests and "materializes it" in seen_mid_run[0].skip_message
        after_all = _tick(instance, None)
        assert not after_all.run_requests and "up to date" in after_all.skip_message

        # the upstream alone again: one request, then none - also for a restarted daemon (a new
        # context with the stored cursor) and once the send ran
        _materialize(instance, UP)
        first = _tick(instance, after_all.cursor)
        assert len(first.run_requests) == 1 and first.run_requests[0].asset_selection == [SEND]
        assert not _tick(instance, first.cursor).run_requests
        restarted = dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=DEFS)
        assert not SENSOR.evaluate_tick(restarted).run_requests
        assert DEFS.resolve_job_def("send_job").execute_in_process(instance=instance).success
        assert not _tick(instance, None).run_requests  # even without a cursor: the send is newer

        # a new materialization: a new request with a new run key
        _materialize(instance, UP)
        again = _tick(instance, first.cursor)
        assert len(again.run_requests) == 1
        assert again.run_requests[0].run_key != first.run_requests[0].run_key


def test_a_publish_of_several_tables_waits_for_all_of_them():
    a, b, target = dg.AssetKey("a"), dg.AssetKey("b"), dg.AssetKey("publish")
    job = dg.define_asset_job("export_job", selection=[target])
    sensor = send_sensor("publish_ab", [a, b], [target], job, description="test")
    defs = dg.Definitions(assets=[dg.AssetSpec(a), dg.AssetSpec(b),
                                  dg.asset(key=target, deps=[a, b])(lambda: None)],
                          jobs=[job], sensors=[sensor])
    with dg.instance_for_test() as instance:
        def tick(cursor=None):
            return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=cursor,
                                                                definitions=defs))

        instance.report_runless_asset_event(dg.AssetMaterialization(a))
        assert "b" in tick().skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization(b))
        first = tick()
        assert [r.asset_selection for r in first.run_requests] == [[target]]
        assert not tick(first.cursor).run_requests
        instance.report_runless_asset_event(dg.AssetMaterialization(target))    # published
        instance.report_runless_asset_event(dg.AssetMaterialization(a))
        waiting = tick(first.cursor)
        assert not waiting.run_requests and "waiting for b" in waiting.skip_message
        instance.report_runless_asset_event(dg.AssetMaterialization(b))
        assert len(tick(waiting.cursor).run_requests) == 1
