"""dbt's manifest.json, which the code location, every run worker and the sensors read, is never
seen half-written: no dbt command writes it in place (each runs in a target folder of its own),
and a re-parse renames the new manifest over the old one."""

import json
import threading
import time

import pytest

from cdp.dbt.project import load_manifest, prepare_manifest, target_path


@pytest.mark.slow
def test_a_manifest_read_during_a_reparse_is_always_whole(tiny_tenant):
    cfg = tiny_tenant
    manifest = prepare_manifest(cfg)
    target = target_path(cfg)
    (target / "cdp_fingerprint").unlink()          # the next prepare re-parses
    stop, reads, broken, during_parse = threading.Event(), [0], [], [0]

    def reader():
        while not stop.is_set():
            parsing = any((target / "invocations").glob("parse-*"))
            try:
                json.loads(manifest.read_bytes())
                load_manifest(manifest)
            except (ValueError, FileNotFoundError) as exc:
                broken.append(repr(exc))
            reads[0] += 1
            during_parse[0] += parsing
            time.sleep(0.002)  # leave the CPU to dbt

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        before = manifest.stat().st_ino
        assert prepare_manifest(cfg) == manifest
    finally:
        stop.set()
        thread.join()
    assert manifest.stat().st_ino != before         # replaced by a rename, not rewritten
    assert not broken, broken[:3]
    assert during_parse[0] > 0 and reads[0] > during_parse[0]
    assert not any((target / "invocations").iterdir())  # the parse's own folder is gone


def test_dbt_build_steps_never_write_the_shared_manifest(pipeline_run, dagster_instance, demo_tenant):
    import dagster as dg

    from cdp.config import load_config

    manifest = target_path(load_config(demo_tenant)) / "manifest.json"
    before = manifest.stat()
    result = pipeline_run.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dagster_instance, asset_selection=[dg.AssetKey(["custom", "households"])])
    assert result.success
    after = manifest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not (manifest.parent / "run_results.json").exists()           # no build wrote here
    assert not any((manifest.parent / "invocations").iterdir())         # each step's folder removed
