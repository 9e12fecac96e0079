"""A failed step is told by its root cause: the sentence of cdp's own errors about the user's
files, or the innermost exception with the line it came from - through the real `cdp run`."""

import shutil
import subprocess
import sys
from pathlib import Path

from cdp_assets.errors import explain

TINY = Path(__file__).parent / "tiny"


def cdp_run(config: Path) -> subprocess.CompletedProcess:
    cdp = Path(sys.executable).parent / "cdp"
    return subprocess.run([str(cdp), "run", "--config", str(config)], capture_output=True, text=True, timeout=600)


def test_a_missing_file_and_a_mistyped_column_are_named_without_a_traceback(tmp_path):
    for f in TINY.iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = tmp_path / "tenant.yaml"
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
