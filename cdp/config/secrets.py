"""Secrets a tenant config names by environment variable (`destinations.<name>.url_env`,
`profile_api.api_key_env`): read when used (TenantConfig.secret), never kept on the config, so a
secret is not in a dump or a log of it and a rotated one is seen without a reload. Everything
else in the environment is read once, by the loader (cdp/config/loader.py)."""

from __future__ import annotations

import os


def read_secret(name: str) -> str | None:
    """The value of the environment variable `name`, or None if it is unset."""
    return os.environ.get(name)
