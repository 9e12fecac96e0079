"""One email or phone a caller looks a person up by, standardised as the sources standardise
theirs (cdp/stages/sources/standardize.py), so a lookup finds what the pipeline stored. Shared by
the Profile API (api.py) and the workspace's people search (workspace/profiles.py)."""

from __future__ import annotations

import re

from cdp.stages.sources import standardize


def standard_email(raw: str) -> str | None:
    """One email standardised as the sources are (standardize.email), without a pandas round trip."""
    value = re.sub(r"\s+", "", raw).lower()
    return value if value not in standardize.EMPTY and re.match(standardize.EMAIL_RE, value) else None


def standard_phone(raw: str, country: str = standardize.DEFAULT_COUNTRY) -> str | None:
    """One phone as E.164, as the sources are (standardize.phone): a national number is read in
    `country` (the tenant's), an international one keeps its own."""
    value = re.sub(r"\s+", " ", raw.strip())
    return None if value.lower() in standardize.EMPTY else standardize._e164(value, country)
