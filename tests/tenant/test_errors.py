"""A failed step is told by its root cause: the sentence of cdp's own errors about the user's
files, or the innermost exception with the line it came from - through the real `cdp run`."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cdp.errors import explain


def user_env() -> dict[str, str]:
    """The environment of a person running cdp: without the DAGSTER_HOME the test session's
    instance_for_test sets, so cdp uses the tenant's own instance."""
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def cdp_run(config: Path) -> subprocess.CompletedProcess:
    cdp = Path(sys.executable).parent / "cdp"
    return subprocess.run([str(cdp), "run", "--config", str(config)], capture_output=True, text=True, timeout=600,
                          env=user_env())


@pytest.mark.slow
def test_a_missing_file_and_a_mistyped_column_are_named_without_a_traceback(tiny_copy, tmp_path):
    config = tiny_copy
    config.write_text(config.read_text().replace("customers.csv", "customerz.csv"))
    run = cdp_run(config)
    assert run.returncode == 1
    assert f"✗ domain__shop_customers failed: source 'shop_customers': file not found: {tmp_path}/customerz.csv" \
        in run.stdout
    assert "-> fix the file, or the source's path" in run.stdout
    assert "Traceback" not in run.stdout + run.stderr and "DagsterExecutionStepExecutionError" not in run.stdout
    assert "Warning" not in run.stderr          # third-party deprecation notices are filtered
    log = (tmp_path / "logs" / "cdp_run.log").read_text()
    assert "==== domain__shop_customers failed ====" in log and "in read_source_file" in log  # the stack
    config.write_text(config.read_text().replace("customerz.csv", "customers.csv").replace("email: email", "emial: email"))
    run = cdp_run(config)
    assert "columns ['emial'] are tagged in the config but not in" in run.stdout and "(it has ['id'," in run.stdout


def test_an_unexpected_error_says_where_it_came_from():
    def deep():
        raise KeyError("no_such_column")

    try:
        try:
            deep()
        except KeyError as exc:
            raise RuntimeError("Error occurred while executing op") from exc
    except RuntimeError as wrapped:
        cause, hint = explain(wrapped, "/x/cdp_run.log")
    assert cause.startswith("KeyError: 'no_such_column' (at ") and "test_errors.py" in cause
    assert hint.endswith("the full traceback is in /x/cdp_run.log")


@pytest.mark.slow
def test_the_dagster_run_log_shows_the_root_cause_not_dagsters_wrapper(tiny_copy, tmp_path, free_port):
    """The run is recorded in the tenant's Dagster instance (the one `cdp ui` opens): its step
    failure is cdp's sentence, with what to do in its metadata, as the Dagster UI shows it."""
    import dagster as dg

    config = tiny_copy
    config.write_text(config.read_text().replace("customers.csv", "customerz.csv"))
    assert cdp_run(config).returncode == 1
    homes = list(tmp_path.rglob("dagster_home"))
    assert len(homes) == 1
    with dg.DagsterInstance.from_config(str(homes[0])) as instance:
        [run] = instance.get_runs()
        failures = [e.dagster_event for e in instance.all_logs(run.run_id)
                    if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"]
        assert instance.get_latest_materialization_event(dg.AssetKey(["bi", "holiday_calendar"]))
    failure = next(f for f in failures if f.step_key == "domain__shop_customers")
    data = failure.event_specific_data
    assert data.error.message.startswith("cdp.stages.sources.assets.SourceFileError: source 'shop_customers': file not found")
    assert "Error occurred while executing op" not in data.error.to_string()
    assert data.user_failure_data.metadata["what to do"].text.startswith("fix the file, or the source's path")
    ui_shows_the_run(config, run.run_id, free_port())


def ui_shows_the_run(config: Path, run_id: str, port: int) -> None:
    """`cdp ui` (dagster dev on the tenant's instance), on port, serves the run `cdp run` recorded."""
    cdp = Path(sys.executable).parent / "cdp"
    ui = subprocess.Popen([str(cdp), "ui", "--config", str(config), "--port", str(port)], env=user_env(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    query = json.dumps({"query": '{ runOrError(runId: "%s") { ... on Run { status } } }' % run_id}).encode()
    try:
        deadline, answer = time.monotonic() + 180, None
        while time.monotonic() < deadline and answer is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                answer = json.load(urllib.request.urlopen(req, timeout=5))
            except OSError:
                time.sleep(0.5)
        assert answer == {"data": {"runOrError": {"status": "FAILURE"}}}, answer
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=20)
        except subprocess.TimeoutExpired:   # dagster dev's children can take long to stop under load
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(timeout=20)
