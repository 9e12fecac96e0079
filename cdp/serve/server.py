"""What `cdp serve` runs: the Profile API (api.py) with the analyst workspace (workspace/)
mounted beside it, in uvicorn. The one place that imports both: neither knows the other.
"""

from __future__ import annotations

import functools
from pathlib import Path

import dagster as dg
from fastapi import FastAPI

from cdp.config import TenantConfig, load_config
from cdp.serve.api import create_app
from cdp.serve.workspace.app import mount_workspace


def create_server(cfg: TenantConfig, api_key: str | None = None, instance=None) -> FastAPI:
    """The Profile API with the analyst workspace mounted beside it (what `cdp serve` runs)."""
    app = create_app(cfg, api_key=api_key)
    if instance is None and cfg.overrides.dagster_home is not None:  # $DAGSTER_HOME, read by the loader
        instance = dg.DagsterInstance.from_config(str(cfg.dagster_home))
    mount_workspace(app, cfg, app.state.keys, instance)
    return app


def serve(cfg: TenantConfig, host: str = "127.0.0.1", port: int = 8000, workers: int = 1) -> None:
    """Run the Profile API with the analyst workspace (/workspace) in uvicorn.

    One process serves the API on its event loop and the workspace's queries in a thread pool of
    their own. With workers > 1, uvicorn starts that many processes on the same port: each
    loads the tenant config, opens the read-only profile store and has its own workspace pool.
    It helps when one process's event loop is the bottleneck (more than ~1 core of API traffic:
    several thousand lookups a second) and there are cores to spare; on 2 cores one worker
    serves 1,000 lookups/s (benchmarks/profile_api.py). Sessions, the login throttle, the keys
    and the audit log are files every worker shares (SQLite, the keys file), so a login made on
    one worker holds on the others and a revoke applies to all."""
    import uvicorn  # only when serving: not needed to build the app (tests use TestClient)

    # built here also with workers: what a worker would fail on (no API key...) fails once, here
    app = create_server(cfg)
    # uvloop and httptools when installed (uvicorn[standard]), else asyncio and h11
    options = dict(host=host, port=port, log_level="warning", access_log=False)
    if workers <= 1:
        uvicorn.run(app, **options)
        return
    del app
    if cfg.config_path is None:
        raise RuntimeError("cdp serve --workers needs a tenant config file (--config)")
    serve_workers(cfg.config_path, workers, options)


def serve_workers(config_path: Path, workers: int, options: dict) -> None:
    """`workers` uvicorn processes on one socket, as uvicorn.run does for workers > 1, each
    building its app from the tenant config: the config's path travels to each worker in its
    app factory (pickled into the spawned process), not through the environment."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(functools.partial(worker_server, str(config_path)), factory=True,
                            workers=workers, **options)
    sock = config.bind_socket()
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()


def worker_server(config_path: str) -> FastAPI:
    """The app of one `cdp serve --workers N` worker (a process uvicorn spawned)."""
    return create_server(load_config(config_path))
