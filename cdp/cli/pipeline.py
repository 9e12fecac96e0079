"""`cdp generate`, `cdp run`, `cdp demo`, `cdp check-config`, `cdp init` and `cdp ui`: building a
tenant's graph from the shell, and the config and Dagster instance it is built with.

The config is loaded with the paths the command was given (`load_config(config,
warehouse=...)`): no command writes os.environ; `cdp ui` hands `dagster dev` an environment of
its own (cdp/config/loader.py: child_process_env)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path

from cdp.cli.progress import RunProgress
from cdp.config import DEFAULT_CONFIG, child_process_env, load_config
from cdp.paths import WORKSPACE_YAML


DEMO_DATA_DIR = DEFAULT_CONFIG.parent / "data"
DEFAULT_PEOPLE = 2000


def cmd_generate(args) -> int:
    from cdp.demo.generate import generate_demo_data

    t0 = time.perf_counter()
    counts = generate_demo_data(args.out, people=args.people, seed=args.seed)
    for name, n in counts.items():
        print(f"  {name:<28} {n:>9,} rows")
    print(f"generated demo data for {args.people:,} people in {args.out} "
          f"({time.perf_counter() - t0:.1f}s)")
    return 0


def left_out_notes(defs) -> list[str]:
    """What the tenant's sources do not let it build, and why (cdp/config/scope.py)."""
    notes = defs.metadata.get("cdp/left_out")
    return list(notes.data) if notes is not None else []


def run_tenant(config: str | None, warehouse: str | None = None, quiet: bool = False,
               instance=None, retrain: bool = False, full_stitch: bool = False):
    """Materialize a tenant's whole graph (sources -> exports) in this process."""
    import dagster as dg

    from cdp.definitions import build_definitions

    cfg = load_config(config, warehouse=warehouse)
    defs = build_definitions(cfg)
    job = dg.define_asset_job("cdp_run", selection=dg.AssetSelection.all())
    defs = dg.Definitions.merge(defs, dg.Definitions(jobs=[job]))
    if instance is None:  # the tenant's instance, the one `cdp ui` opens
        cfg.dagster_home.mkdir(parents=True, exist_ok=True)
        instance = dg.DagsterInstance.from_config(str(cfg.dagster_home))
    log_path = cfg.warehouse_path.parent / "logs" / "cdp_run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    loggers = {"console": {"config": {"log_level": "ERROR"}}}
    if not quiet:
        terminal = sys.stdout

        handler = RunProgress(terminal, log_path)

        @dg.logger(description="one line per step, asset and check on the terminal")
        def cdp_progress(_init_context):
            progress = logging.Logger("cdp_progress", level=logging.DEBUG)
            progress.addHandler(handler)
            return progress

        defs = dg.Definitions.merge(defs, dg.Definitions(loggers={"cdp_progress": cdp_progress}))
        loggers = {"cdp_progress": {}}
        print(f"cdp: tenant {cfg.tenant!r} -> warehouse {cfg.warehouse_path}", flush=True)
        for note in left_out_notes(defs):
            print(f"cdp: {note}", flush=True)
    t0 = time.perf_counter()
    # dbt's own output goes to the log file; the terminal shows one line per step
    with open(log_path, "w", encoding="utf-8") as log, contextlib.redirect_stdout(log):
        result = defs.resolve_job_def("cdp_run").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"loggers": loggers,
                        "ops": {"stitch__match_model": {"config": {"retrain": retrain}},
                                "stitch_preprocess": {"config": {"full": full_stitch}}}})
    write_failures_to_log(result, log_path)
    if not quiet:
        status = "succeeded" if result.success else "FAILED"
        print(f"cdp: run {status} in {time.perf_counter() - t0:.1f}s (dbt output and tracebacks: {log_path})",
              flush=True)
        for line in handler.summary():
            print(f"cdp: {line}", flush=True)
        for step, cause, hint in handler.failures:
            print(f"cdp: {step}: {cause}\n     -> {hint}", flush=True)
    result.defs = defs  # so callers (tests, benchmarks) can reach jobs and sensors
    return result


def write_failures_to_log(result, log_path: Path) -> None:
    """Every failed step's full error chain, appended to the run's log file (the terminal shows
    the root cause only)."""
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if not failures:
        return
    with open(log_path, "a", encoding="utf-8") as log:
        for event in failures:
            log.write(f"\n==== {event.step_key} failed ====\n{event.event_specific_data.error.to_string()}\n")


def cmd_run(args) -> int:
    result = run_tenant(args.config, args.warehouse, retrain=args.retrain, full_stitch=args.full_stitch)
    return 0 if result.success else 1


def cmd_demo(args) -> int:
    args.out, args.seed = DEMO_DATA_DIR, 42
    cmd_generate(args)
    result = run_tenant(str(DEFAULT_CONFIG), None)
    if result.success:
        cfg = load_config(DEFAULT_CONFIG)
        from cdp.engine import warehouse_for

        con = warehouse_for(cfg).open_reader()
        rec, ppl = con.execute("select count(*), count(distinct cdp_id) from stitch.unified_coalesced").fetchone()
        c360 = con.execute("select count(*) from c360.customer_360").fetchone()[0]
        con.close()
        print(f"\n{rec:,} source records -> {ppl:,} people; c360.customer_360 has {c360:,} rows.")
        print(f"warehouse: {cfg.warehouse_path}\nexports:   {cfg.resolve('exports')}")
        print("open the UI on this run with:  .venv/bin/cdp ui   (then http://localhost:3000)")
    return 0 if result.success else 1


def cmd_check_config(args) -> int:
    """The config, then its files, queries and segments: every problem found, at once."""
    from cdp.preflight import check_tenant, kinds_summary

    cfg = load_config(args.config)
    problems = check_tenant(cfg)
    for problem in problems:
        print(problem.line(cfg.config_path))
    errors = sum(p.severity == "error" for p in problems)
    warned = len(problems) - errors
    if errors:
        print(f"cdp: {errors} error{'s' * (errors != 1)}" + (f", {warned} warning{'s' * (warned != 1)}" if warned else ""))
        return 1
    print(f"{cfg.config_path}: ok - tenant {cfg.tenant!r}, sources: {kinds_summary(cfg)}, "
          f"{len(cfg.destinations)} destinations" + (f"; {warned} warning{'s' * (warned != 1)}" if warned else ""))
    return 0


def cmd_init(args) -> int:
    """Write a starting tenant config from data files (cdp/onboarding/)."""
    from cdp.onboarding import InitError, init_config, summary

    try:
        out, guesses = init_config(args.files, args.out, tenant=args.tenant, country=args.country,
                                   force=args.force)
    except InitError as exc:
        print(f"cdp init: {exc}", file=sys.stderr)
        return 2
    print("\n".join(summary(guesses)))
    print(f"wrote {out}: check the lines marked '# unsure', then: cdp check-config {out}")
    return 0


def cmd_ui(args) -> int:
    """Dagster's UI and daemon (`dagster dev`) on the tenant's own instance, the one `cdp run`
    and `cdp demo` record into, so the asset graph shows what they built."""
    import shutil
    import subprocess

    cfg = load_config(args.config)
    cfg.dagster_home.mkdir(parents=True, exist_ok=True)
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which("dagster")
    if dagster is None:
        print("cdp ui: the `dagster` command is not installed beside cdp", file=sys.stderr)
        return 2
    env = child_process_env(cfg, dagster_home=True)  # dagster dev's code location loads the tenant again
    workspace = WORKSPACE_YAML
    where = ["-w", str(workspace)] if workspace.exists() else ["-m", "cdp.definitions"]
    print(f"cdp ui: tenant {cfg.tenant!r}, Dagster instance {cfg.dagster_home}; "
          f"open http://{args.host}:{args.port}", flush=True)
    try:
        return subprocess.call([dagster, "dev", *where, "-h", args.host, "-p", str(args.port)], env=env,
                               cwd=workspace.parent if workspace.exists() else None)
    except KeyboardInterrupt:
        return 0
