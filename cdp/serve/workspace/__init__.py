"""The analyst workspace served by `cdp serve` beside the Profile API (see app.py)."""

from cdp.serve.workspace.app import create_server, mount_workspace

__all__ = ["create_server", "mount_workspace"]
