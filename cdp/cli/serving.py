"""`cdp serve`, `cdp user ...`, `cdp key ...` and `cdp audit`: the Profile API and analyst
workspace, who may use them (workspace users, named API keys) and what they did (the audit log)."""

from __future__ import annotations

import sys

from cdp.config import load_config


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
    from cdp.serve.server import serve

    cfg = load_config(args.config)
    try:
        serve(cfg, host=args.host, port=args.port, workers=args.workers)
    except RuntimeError as exc:
        print(f"cdp serve: {exc}", file=sys.stderr)
        return 2
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
