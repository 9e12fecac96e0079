"""`profile_api:`, `workspace:`, `audit:` and `dagster:` - what `cdp serve` and Dagster's UI show
and to whom: API keys, workspace users and sessions, the audit log, unmasked previews."""

from __future__ import annotations

from pydantic import Field

from cdp.config.common import StrictModel


class ProfileApiSettings(StrictModel):
    keys_file: str = Field(default="api_keys.yaml",
                           description="named API keys clients send in X-API-Key: name -> id, SHA-256 of the "
                                       "token, scopes (profiles:read, workspace, admin); written by `cdp key "
                                       "create`; relative to the config file (CDP_KEYS_FILE overrides)")
    api_key_env: str = Field(default="CDP_API_KEY",
                             description="deprecated: environment variable of a single key, still accepted "
                                         "for the Profile API only (scope profiles:read) when it is strong")
    store: str = Field(default="profile_store.sqlite",
                       description="the serving copy the Profile API reads, relative to the config file")


class WorkspaceSettings(StrictModel):
    users_file: str = Field(default="users.yaml",
                            description="people who may log in to the analyst workspace (`cdp serve`): "
                                        "name -> role and scrypt hash, written by `cdp user add`; relative "
                                        "to the config file (CDP_USERS_FILE overrides)")
    sessions_file: str = Field(default="sessions.sqlite",
                               description="server-side login sessions and failed-login counts (SQLite, "
                                           "shared by every server process); relative to the config file "
                                           "(CDP_SESSIONS_FILE overrides); must be writable")
    session_idle_minutes: float = Field(default=30, gt=0,
                                        description="a session unused this long ends (log in again)")
    session_max_hours: float = Field(default=12, gt=0,
                                     description="a session ends this long after its login, used or not")
    max_queries: int = Field(default=2, ge=1, le=64,
                             description="workspace queries (pages, SQL runs, CSV exports, segment previews) "
                                         "run at once per server process, off the event loop in their own "
                                         "threads at a lower CPU priority; more wait for a turn")
    query_seconds: float = Field(default=60, gt=0,
                                 description="a workspace query running longer is interrupted")
    session_secret_env: str = Field(default="CDP_SESSION_SECRET",
                                    description="no longer used: sessions are server-side (sessions_file); "
                                                "kept so older configs still load")


class DagsterSettings(StrictModel):
    raw_previews: bool = Field(
        default=False,
        description="show personal data unmasked in the row previews of Dagster's metadata (kept in "
                    "its event log, shown in its UI); default: emails, phones, names, addresses, birth "
                    "dates and identifiers masked (cdp/pii.py)")


class AuditSettings(StrictModel):
    path: str = Field(default="audit.sqlite3",
                      description="the audit log (SQLite, append-only): who ran which workspace query, "
                                  "exported, saved, viewed a person, used an API key; relative to the "
                                  "config file, kept outside the warehouse so a rebuild never erases "
                                  "it; $CDP_AUDIT_LOG overrides")
