"""The analyst workspace served by `cdp serve` beside the Profile API (see app.py; the two are
put together in cdp/serve/server.py)."""

from cdp.serve.workspace.app import mount_workspace

__all__ = ["mount_workspace"]
