"""What every section of the tenant config shares: the strict base model (an unknown key is an
error), lowercase identifiers, schema.table lists and ISO country codes."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from cdp.countries import country_code, is_country_code


IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_schema_tables(tables: list[str]) -> list[str]:
    """Each entry is schema.table, both lowercase identifiers."""
    for t in tables:
        parts = t.split(".")
        if len(parts) != 2 or not all(IDENTIFIER.match(p) for p in parts):
            raise ValueError(f"{t!r} is not schema.table (lowercase identifiers)")
    return tables


def iso_country(v: Any) -> str:
    """An ISO 3166-1 alpha-2 code, uppercased; the error suggests the code of a country name."""
    if v is False:  # YAML 1.1 reads an unquoted NO as false
        raise ValueError("got false, which is how YAML reads an unquoted NO: write \"NO\" for Norway")
    if isinstance(v, str) and is_country_code(v.strip()):
        return v.strip().upper()
    hint = country_code(v) if isinstance(v, str) else None
    raise ValueError(f"{v!r} is not an ISO 3166-1 country code "
                     + (f"(did you mean {hint}?)" if hint else "(two letters, e.g. US, GB, AU, DE)"))


class ConfigError(ValueError):
    """A tenant config is invalid; the message names the file, the field and the problem."""


class StrictModel(BaseModel):
    """A config section: a key it does not know is an error (a typo is never silently ignored)."""
    model_config = ConfigDict(extra="forbid")
