"""`cdp` command line: generate demo data, run a tenant's whole graph, or both.

    cdp generate [--people N] [--seed S] [--out DIR]
    cdp run [--config PATH] [--warehouse PATH] [--retrain] [--full-stitch]
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

This module builds the parser (every command, its options and help) and runs the command; the
commands live by what they work on: pipeline.py (generate, run, demo, check-config, init, ui,
with progress.py: what `cdp run` prints), activation.py (query, segment), serving.py (serve,
user, key, audit). Commands load the tenant config with the paths they were given and never
write os.environ.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from cdp.cli.activation import cmd_query, cmd_segment_preview
from cdp.cli.pipeline import (DEFAULT_PEOPLE, DEMO_DATA_DIR, cmd_check_config, cmd_demo, cmd_generate, cmd_init,
                              cmd_run, cmd_ui, left_out_notes, run_tenant, write_failures_to_log)
from cdp.cli.progress import RUN_NOTE, RunProgress
from cdp.cli.serving import (cmd_audit, cmd_key, cmd_serve, cmd_user_add, cmd_user_list, cmd_user_remove,
                             cmd_user_role)
from cdp.config import DEFAULT_CONFIG, ConfigError
from cdp.serve.access import ROLES, SCOPES

__all__ = ["DEFAULT_PEOPLE", "DEMO_DATA_DIR", "RUN_NOTE", "RunProgress", "left_out_notes", "main", "run_tenant",
           "write_failures_to_log"]


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
    r.add_argument("--full-stitch", action="store_true",
                   help="re-stitch every record even where stitch.incremental would stitch only the delta")
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
