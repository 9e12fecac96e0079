"""`cdp` command line: generate demo data, run a tenant's whole graph, or both.

    cdp generate [--people N] [--seed S] [--out DIR]
    cdp run [--config PATH] [--warehouse PATH] [--retrain]
    cdp demo [--people N]
    cdp check-config PATH
    cdp init DATA_FILES... [--out tenant.yaml] [--tenant NAME] [--country XX] [--force]
    cdp query "SQL" | --file F [--config PATH] [--csv OUT] [--limit N]
    cdp serve [--config PATH] [--host H] [--port P] [--workers N]
    cdp segment preview NAME [--config PATH] [--sample N]
    cdp user add NAME [--role admin|analyst|marketer] [--config PATH] [--password-stdin]
    cdp user list | remove NAME | role NAME ROLE [--config PATH]
    cdp key create NAME --scope S [--scope S...] | list | rotate NAME | revoke NAME [--config PATH]
    cdp audit [--user U] [--action A] [--since DATE] [--until DATE] [--limit N] [--json] [--config PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from cdp.serve.access import ROLES, SCOPES
from cdp.config import DEFAULT_CONFIG, ConfigError, load_config
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


# an info message a step logs with this prefix is shown in `cdp run`'s output, not only the log
RUN_NOTE = "cdp: "


class _Progress(logging.Handler):
    """One line per finished step with its outcome (rows written, checks), a note while a long
    step runs, and a summary at the end, instead of Dagster's debug stream."""

    TICK_SECONDS = 30   # a step still running after this long says so, and again every as long

    def __init__(self, out=None, log_path=None):
        super().__init__(logging.DEBUG)
        self.started: dict[str, float] = {}
        self.out = out or sys.stdout
        self.log_path = log_path
        self.failures: list[tuple[str, str, str]] = []   # step, root cause, hint
        self.rows: dict[str, list[tuple[str, int | None, bool]]] = {}   # step -> (asset, rows, not sent)
        self.checks = {"passed": 0, "warnings": [], "failed": []}
        self.quarantined: dict[str, int] = {}
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self._ticker.start()

    def say(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def _tick(self) -> None:
        while True:
            time.sleep(5)
            now = time.perf_counter()
            for step, t0 in list(self.started.items()):
                running = now - t0
                if running >= self.TICK_SECONDS and int(running) % self.TICK_SECONDS < 5:
                    self.say(f"  … {step} still running ({running:.0f}s)")

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            text = meta.get("orig_message") or record.getMessage()
            if record.levelno >= logging.WARNING and not text.startswith("Dependencies for step"):
                self.say(f"  ! {text[:400]}")
            elif text.startswith(RUN_NOTE):  # what a step wants the person running it to know
                self.say(f"    {text[len(RUN_NOTE):][:400]}")
            return
        step = event.step_key or ""
        kind = event.event_type_value
        if kind == "STEP_START":
            self.started[step] = time.perf_counter()
        elif kind == "STEP_SUCCESS":
            took = time.perf_counter() - self.started.pop(step, time.perf_counter())
            if step in self.rows or took >= 1:  # a step that only ran checks: in the summary
                self.say(f"  ✓ {step} ({took:.1f}s){self._written(step)}")
        elif kind == "STEP_FAILURE":
            from cdp.errors import explain

            self.started.pop(step, None)
            cause, hint = explain(event.event_specific_data.error, self.log_path)
            self.failures.append((step, cause, hint))
            self.say(f"  ✗ {step} failed: {cause[:2000]}")
            self.say(f"    -> {hint}")
        elif kind == "ASSET_MATERIALIZATION":
            mat = event.event_specific_data.materialization
            rows = mat.metadata.get("dagster/row_count")
            sent = mat.metadata.get("sent")
            unsent = sent is not None and not sent.value   # a send whose data had been delivered already
            self.rows.setdefault(step, []).append((mat.asset_key.to_user_string(), rows.value if rows else None,
                                                   unsent))
            quarantined = mat.metadata.get("rows_quarantined")
            if quarantined is not None and quarantined.value:
                self.quarantined[mat.asset_key.path[-1]] = quarantined.value
        elif kind == "ASSET_CHECK_EVALUATION":
            ev = event.event_specific_data
            name = f"{ev.asset_key.to_user_string()}:{ev.check_name}"
            if ev.passed:
                self.checks["passed"] += 1
            elif ev.severity is not None and ev.severity.value == "WARN":
                self.checks["warnings"].append(name)
                self.say(f"  ! check {name}: warning")
            else:
                self.checks["failed"].append(name)
                self.say(f"  ✗ check {name} FAILED")

    def _written(self, step: str) -> str:
        written = self.rows.pop(step, [])
        if not written:
            return ""
        if len(written) == 1:
            asset, rows, unsent = written[0]
            return (f": {asset}" + (f", {rows:,} rows" if rows is not None else "")
                    + (", unchanged since its last send: nothing sent" if unsent else ""))
        total = sum(r for _, r, _ in written if r is not None)
        return f": {len(written)} tables, {total:,} rows"

    def summary(self) -> list[str]:
        c = self.checks
        warned = len(c["warnings"])
        lines = [f"checks: {c['passed']} passed, {warned} warning{'s' * (warned != 1)}, {len(c['failed'])} failed"
                 + (f" ({', '.join(c['failed'])})" if c["failed"] else "")
                 + (f"; warnings: {', '.join(c['warnings'])}" if c["warnings"] else "")]
        if self.quarantined:
            lines.append("quarantined rows (domain.quarantine): "
                         + ", ".join(f"{s} {n:,}" for s, n in sorted(self.quarantined.items())))
        return lines


def left_out_notes(defs) -> list[str]:
    """What the tenant's sources do not let it build, and why (cdp/scope.py)."""
    notes = defs.metadata.get("cdp/left_out")
    return list(notes.data) if notes is not None else []


def run_tenant(config: str | None, warehouse: str | None = None, quiet: bool = False,
               instance=None, retrain: bool = False):
    """Materialize a tenant's whole graph (sources -> exports) in this process."""
    import dagster as dg

    from cdp.definitions import build_definitions

    if config:
        os.environ["CDP_CONFIG"] = str(Path(config).resolve())
    if warehouse:
        os.environ["CDP_WAREHOUSE"] = str(Path(warehouse).resolve())
    cfg = load_config(config)
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

        handler = _Progress(terminal, log_path)

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
                        "ops": {"stitch__match_model": {"config": {"retrain": retrain}}}})
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
    result = run_tenant(args.config, args.warehouse, retrain=args.retrain)
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
    """Write a starting tenant config from data files (cdp/onboarding.py)."""
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


def cmd_query(args) -> int:
    """Run one Presto query ad hoc on the tenant's warehouse (read-only)."""
    import duckdb

    from cdp.stages.activation.queries import QueryError, run_query

    if (args.sql is None) == (args.file is None):
        print("cdp query: give either the SQL text or --file F", file=sys.stderr)
        return 2
    sql = Path(args.file).read_text() if args.file else args.sql
    cfg = load_config(args.config)
    try:
        from cdp.engine import warehouse_for  # the engine's reader: the DuckDB file or the lakehouse

        con = warehouse_for(cfg).open_reader({"enable_external_access": False})  # no files, no network
    except duckdb.Error as exc:
        print(f"cdp query: cannot open the warehouse {cfg.warehouse_path}: {exc}", file=sys.stderr)
        return 1
    try:
        df = run_query(con, sql, source=args.file or "query", limit=None if args.csv else args.limit)
    except QueryError as exc:
        print(f"cdp query: {exc}", file=sys.stderr)
        return 2
    except duckdb.Error as exc:
        print(f"cdp query: the warehouse refused the query: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    if args.csv:
        df.to_csv(args.csv, index=False)
        print(f"wrote {len(df):,} rows to {args.csv}")
    else:
        import pandas as pd

        with pd.option_context("display.max_columns", None, "display.width", 200):
            print(df.to_string(index=False) if len(df) else "(no rows)")
        print(f"({len(df):,} rows{'' if len(df) < args.limit else f', first {args.limit} shown'})")
    return 0


def cmd_segment_preview(args) -> int:
    """Count a segment's members and show a sample, without writing anything."""
    import pandas as pd

    from cdp.engine import warehouse_for
    from cdp.stages.activation.segments import SegmentError, preview_segment

    cfg = load_config(args.config)
    con = warehouse_for(cfg).open_reader()
    try:
        count, sample = preview_segment(cfg, args.name, con, args.sample)
    except SegmentError as exc:
        print(f"cdp segment: {exc}", file=sys.stderr)
        return 2
    finally:
        con.close()
    print(f"segment {args.name}: {count:,} members")
    with pd.option_context("display.max_columns", 8, "display.width", 200):
        print(sample.to_string(index=False) if len(sample) else "(no members)")
    return 0


def cmd_audit(args) -> int:
    """Print the audit log (newest first): who ran, exported, saved and viewed what."""
    import json

    from cdp.serve.audit import AuditLog

    cfg = load_config(args.config)
    log = AuditLog(cfg.resolve(cfg.audit.path))
    try:
        events = log.read(user=args.user, action=args.action, since=args.since, until=args.until,
                          limit=args.limit)
    except ValueError as exc:
        print(f"cdp audit: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for e in events:
            print(json.dumps(e, default=str))
        return 0
    if not events:
        print(f"cdp audit: no events{' matching the filters' if args.user or args.action or args.since or args.until else ''}"
              f" in {log.path}")
        return 0
    print(f"{'when (UTC)':<23}  {'who':<16} {'action':<15} {'rows':>9}  {'client':<15} what")
    for e in events:
        who = f"{e['principal']}{' (key)' if e['kind'] == 'key' else ''}"
        what = " ".join(e["what"].split())
        rows = "" if e["rows"] is None else f"{e['rows']:,}"
        print(f"{e['at']:<23}  {who:<16} {e['action']:<15} {rows:>9}  {e['client_ip'] or '':<15} "
              f"{what[:120] + ('…' if len(what) > 120 else '')}")
    print(f"{len(events)} event{'s' * (len(events) != 1)} (newest first) from {log.path}"
          + (f"; --limit {args.limit} reached" if len(events) >= args.limit else ""))
    return 0


def cmd_serve(args) -> int:
    """Serve the Profile API from the tenant's profile store."""
    from cdp.serve.api import serve

    cfg = load_config(args.config)
    try:
        serve(cfg, host=args.host, port=args.port, workers=args.workers)
    except RuntimeError as exc:
        print(f"cdp serve: {exc}", file=sys.stderr)
        return 2
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
    env = {**os.environ, "DAGSTER_HOME": str(cfg.dagster_home), "CDP_CONFIG": str(cfg.config_path)}
    workspace = WORKSPACE_YAML
    where = ["-w", str(workspace)] if workspace.exists() else ["-m", "cdp.definitions"]
    print(f"cdp ui: tenant {cfg.tenant!r}, Dagster instance {cfg.dagster_home}; "
          f"open http://{args.host}:{args.port}", flush=True)
    try:
        return subprocess.call([dagster, "dev", *where, "-h", args.host, "-p", str(args.port)], env=env,
                               cwd=workspace.parent if workspace.exists() else None)
    except KeyboardInterrupt:
        return 0


def cmd_user_add(args) -> int:
    """Add a person who may log in to the analyst workspace (role and scrypt hash in workspace.users_file)."""
    import getpass

    from cdp.serve.workspace.auth import UsersFileError, add_user

    cfg = load_config(args.config)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("cdp user add: the passwords differ", file=sys.stderr)
            return 2
    path = cfg.resolve(cfg.workspace.users_file)
    try:
        user = add_user(path, args.name, password, args.role)
    except UsersFileError as exc:
        print(f"cdp user add: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name} ({user.role}) can log in to the workspace ({path})")
    return 0


def _end_sessions(cfg, name: str) -> str:
    """End a person's live sessions now (the server also refuses them at their next request)."""
    from cdp.serve.workspace.sessions import SessionStore

    path = cfg.resolve(cfg.workspace.sessions_file)
    if not path.exists():
        return ""
    try:
        ended = SessionStore(path).end_user(name)
    except Exception as exc:  # noqa: BLE001 - a read-only or locked file: the server still refuses them
        return f"; their sessions in {path} could not be ended here ({exc}), the server refuses them anyway"
    return f"; {ended} session{'s' * (ended != 1)} ended" if ended else ""


def cmd_user_list(args) -> int:
    from cdp.serve.workspace.auth import UsersFileError, load_users
    from cdp.serve.workspace.sessions import SessionStore

    cfg = load_config(args.config)
    path = cfg.resolve(cfg.workspace.users_file)
    try:
        users = load_users(path)
    except UsersFileError as exc:
        print(f"cdp user list: {exc}", file=sys.stderr)
        return 2
    sessions_path = cfg.resolve(cfg.workspace.sessions_file)
    store = None
    if sessions_path.exists():
        ws = cfg.workspace
        store = SessionStore(sessions_path, idle=ws.session_idle_minutes * 60, absolute=ws.session_max_hours * 3600)
    if not users:
        print(f"no users in {path}: cdp user add NAME --role analyst")
        return 0
    print(f"{'user':<24} {'role':<9} sessions")
    for user in users.values():
        print(f"{user.name:<24} {user.role:<9} {store.count(user.name) if store else 0}")
    return 0


def cmd_user_remove(args) -> int:
    from cdp.serve.workspace.auth import UsersFileError, remove_user

    cfg = load_config(args.config)
    path = cfg.resolve(cfg.workspace.users_file)
    try:
        remove_user(path, args.name)
    except UsersFileError as exc:
        print(f"cdp user remove: {exc}", file=sys.stderr)
        return 2
    print(f"removed {args.name} from {path}{_end_sessions(cfg, args.name)}")
    return 0


def cmd_user_role(args) -> int:
    from cdp.serve.workspace.auth import UsersFileError, set_role

    cfg = load_config(args.config)
    path = cfg.resolve(cfg.workspace.users_file)
    try:
        set_role(path, args.name, args.role)
    except UsersFileError as exc:
        print(f"cdp user role: {exc}", file=sys.stderr)
        return 2
    print(f"{args.name} is now {args.role} ({path}); it applies from their next request")
    return 0


def cmd_key(args) -> int:
    """Named API keys (profile_api.keys_file): create, list, rotate, revoke."""
    from cdp.serve.access import KeysFileError, create_key, load_keys, revoke_key, rotate_key

    cfg = load_config(args.config)
    path = cfg.resolve(cfg.profile_api.keys_file)
    try:
        if args.key_command == "create":
            token = create_key(path, args.name, args.scope)
            print(f"created key {args.name} ({', '.join(dict.fromkeys(args.scope))}) in {path}; the token, shown "
                  f"only now (send it in X-API-Key):\n{token}")
        elif args.key_command == "rotate":
            token = rotate_key(path, args.name)
            print(f"new token for {args.name}; the old one stops working within a second:\n{token}")
        elif args.key_command == "revoke":
            revoke_key(path, args.name)
            print(f"revoked {args.name} ({path}); it is refused within a second")
        else:
            keys = load_keys(path)
            if not keys:
                print(f"no keys in {path}: cdp key create NAME --scope profiles:read")
            else:
                print(f"{'key':<24} {'id':<11} {'created':<26} scopes")
                for k in keys.values():
                    print(f"{k.name:<24} {k.id:<11} {k.created:<26} {', '.join(k.scopes)}")
    except KeysFileError as exc:
        print(f"cdp key {args.key_command}: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cdp", description="Open customer data platform on Dagster")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="write realistic demo sources with ground truth")
    g.add_argument("--people", type=int, default=DEFAULT_PEOPLE)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--out", default=str(DEMO_DATA_DIR))
    g.set_defaults(func=cmd_generate)

    r = sub.add_parser("run", help="materialize a tenant's whole asset graph")
    r.add_argument("--config", default=None, help=f"tenant YAML (default: $CDP_CONFIG or {DEFAULT_CONFIG})")
    r.add_argument("--warehouse", default=None, help="DuckDB file (default: the config's warehouse)")
    r.add_argument("--retrain", action="store_true",
                   help="train a new Splink model version instead of reusing the saved one")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("demo", help="generate demo data and run the demo tenant end to end")
    d.add_argument("--people", type=int, default=DEFAULT_PEOPLE)
    d.set_defaults(func=cmd_demo)

    c = sub.add_parser("check-config", help="validate a tenant config")
    c.add_argument("config")
    c.set_defaults(func=cmd_check_config)

    i = sub.add_parser("init", help="write a starting tenant config from CSV/Parquet data files")
    i.add_argument("files", nargs="+", metavar="DATA_FILES")
    i.add_argument("--out", default="tenant.yaml", help="the config to write (default tenant.yaml)")
    i.add_argument("--tenant", default=None, help="tenant name (default: the --out folder's name)")
    i.add_argument("--country", default=None, help="ISO country of the customers (default: from the data)")
    i.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    i.set_defaults(func=cmd_init)

    q = sub.add_parser("query", help="run a Presto SQL query (SELECT only) on the warehouse")
    q.add_argument("sql", nargs="?", default=None, help="the query text")
    q.add_argument("--file", default=None, help="read the query from this .sql file")
    q.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    q.add_argument("--csv", default=None, help="write every row to this CSV file instead of printing")
    q.add_argument("--limit", type=int, default=50, help="rows printed (default 50)")
    q.set_defaults(func=cmd_query)

    au = sub.add_parser("audit", help="print the audit log: queries, exports, saves, profile views, API key use")
    au.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    au.add_argument("--user", default=None, help="only this user (or key) name")
    au.add_argument("--action", default=None, help="only this action, or its prefix (query, api, ...)")
    au.add_argument("--since", default=None, help="from this date (YYYY-MM-DD) or ISO time, UTC")
    au.add_argument("--until", default=None, help="up to and including this date, or before this ISO time")
    au.add_argument("--limit", type=int, default=200, help="newest events printed (default 200)")
    au.add_argument("--json", action="store_true", help="one JSON object per line")
    au.set_defaults(func=cmd_audit)

    sg = sub.add_parser("segment", help="work with segments")
    sg_sub = sg.add_subparsers(dest="segment_command", required=True)
    sp = sg_sub.add_parser("preview", help="count a segment's members and show a sample")
    sp.add_argument("name")
    sp.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    sp.add_argument("--sample", type=int, default=10, help="members shown (default 10)")
    sp.set_defaults(func=cmd_segment_preview)

    us = sub.add_parser("user", help="people who may log in to the analyst workspace")
    us_sub = us.add_subparsers(dest="user_command", required=True)
    ua = us_sub.add_parser("add", help="add a user (or set a new password)")
    ua.add_argument("name")
    ua.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    ua.add_argument("--role", choices=ROLES, default=None,
                    help="admin, analyst or marketer (a new user: analyst; an existing one keeps theirs)")
    ua.set_defaults(func=cmd_user_add)
    ul = us_sub.add_parser("list", help="users, their roles and live sessions")
    ul.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    ul.set_defaults(func=cmd_user_list)
    ur = us_sub.add_parser("remove", help="remove a user; their sessions end")
    ur.add_argument("name")
    ur.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    ur.set_defaults(func=cmd_user_remove)
    uo = us_sub.add_parser("role", help="change a user's role (applies from their next request)")
    uo.add_argument("name")
    uo.add_argument("role", choices=ROLES)
    uo.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    uo.set_defaults(func=cmd_user_role)

    ky = sub.add_parser("key", help="named API keys with scopes (profiles:read, workspace, admin)")
    ky_sub = ky.add_subparsers(dest="key_command", required=True)
    kc = ky_sub.add_parser("create", help="create a key; prints its token once")
    kc.add_argument("name")
    kc.add_argument("--scope", action="append", choices=SCOPES, required=True,
                    help="profiles:read (the Profile API), workspace (the workspace as an analyst), "
                         "admin (everything); repeat for several")
    for cmd, text in (("list", "keys, their ids, scopes and creation times"),
                      ("rotate", "a new token for a key; the old one stops working"),
                      ("revoke", "delete a key; it stops working")):
        kp = ky_sub.add_parser(cmd, help=text)
        if cmd != "list":
            kp.add_argument("name")
        kp.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
        kp.set_defaults(func=cmd_key)
    kc.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    kc.set_defaults(func=cmd_key)

    sv = sub.add_parser("serve", help="serve the Profile API and the analyst workspace (/workspace)")
    sv.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--workers", type=int, default=1,
                    help="server processes (uvicorn workers) on the port; each opens the read-only store (default 1)")
    sv.set_defaults(func=cmd_serve)

    ui = sub.add_parser("ui", help="open Dagster's UI on the tenant's instance (what cdp run recorded)")
    ui.add_argument("--config", default=None, help="tenant YAML (default: $CDP_CONFIG or the demo)")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    args = parser.parse_args(argv)
    # the libraries' own deprecation and supersession notices are for their developers, not for
    # the person running cdp (cdp's own warnings still show)
    warnings.filterwarnings("ignore", module=r"^(?!cdp\b)")
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"cdp: invalid config\n{exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
