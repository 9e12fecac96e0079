"""Stitch's stitched state: what an incremental run starts from, and when a run is full.

An incremental Stitch run (stitch.incremental) does work proportional to the delivery: it
needs the state the last run left - per record the digest of what it was preprocessed from
(stitch.record_digests) and its connected component (stitch.stitched_records), the pending
delta the preprocessing found since the last stitched state (stitch.stitch_delta, and the
preprocessed rows those records had before, stitch.stitch_delta_old) - and a one-row
stitch.stitch_state: how many incremental runs since the last full one, the model version
and the settings the state was stitched with, and whether a full run is pending.

A run is full when asked for (run config `full` on stitch_preprocess), on the first run, every
`full_rebuild_every` incremental runs, and when the model, the Stitch settings or the labels
file changed since the state was stitched: evidence scored by another model or under other
rules is not comparable.
"""

import hashlib
import json
from dataclasses import dataclass

from cdp.config import TenantConfig
from cdp.engine import warehouse_of

STATE = "stitch.stitch_state"
DIGESTS = "stitch.record_digests"
STAGED = "stitch.staged_records"      # every record as staged from the domain tables
STITCHED = "stitch.stitched_records"
PENDING = "stitch.stitch_delta"
PENDING_OLD = "stitch.stitch_delta_old"
RECONCILIATION = "stitch.reconciliation"


@dataclass
class StitchState:
    incremental_runs: int
    model_version: int | None
    settings: str | None
    full_pending: bool


def table_exists(con, qualified: str) -> bool:
    return warehouse_of(con).table_exists(con, *qualified.split("."))


def read_state(con) -> StitchState | None:
    if not table_exists(con, STATE):
        return None
    row = con.execute(f"select incremental_runs, model_version, settings, full_pending from {STATE}").fetchall()
    return StitchState(*row[0]) if row else None


def write_state(con, state: StitchState) -> None:
    con.execute(f"create or replace table {STATE} (incremental_runs integer, model_version integer, "
                "settings varchar, full_pending boolean)")
    con.execute(f"insert into {STATE} values (?, ?, ?, ?)",
                [state.incremental_runs, state.model_version, state.settings, state.full_pending])


def settings_digest(cfg: TenantConfig) -> str:
    """The Stitch settings and the labels file's content: the state is only comparable to a run
    under the same ones."""
    st = cfg.stitch
    labels = cfg.resolve(st.labels) if st.labels else None
    blob = json.dumps({"stitch": st.model_dump(mode="json", exclude={"incremental", "full_rebuild_every"}),
                       "identifiers": list(cfg.identifier_columns),
                       "labels": labels.read_bytes().hex() if labels and labels.exists() else None},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


DIGEST_TYPE = "UBIGINT"   # delta.digest_sql's


def _digest_type(con) -> str | None:
    rows = con.execute("select data_type from information_schema.columns where table_schema = 'stitch' "
                       "and table_name = 'record_digests' and column_name = 'digest'").fetchall()
    return rows[0][0] if rows else None


def preprocess_incrementally(con, cfg: TenantConfig, full_requested: bool) -> tuple[bool, str]:
    """(incremental?, why) for stitch_preprocess."""
    st = cfg.stitch
    state = read_state(con)
    if not st.incremental:
        return False, "stitch.incremental is off"
    if full_requested:
        return False, "a full run was requested"
    if state is None or not all(table_exists(con, t) for t in (
            DIGESTS, STAGED, "stitch.unified_preprocessed_raw", "stitch.blocklist", "stitch.misspelt_nicknames",
            "stitch.initial_key_uses")):
        return False, "first run: no stitched state yet"
    if _digest_type(con) != DIGEST_TYPE:
        return False, "the record digests were written by another version"
    if state.incremental_runs >= st.full_rebuild_every:
        return False, f"{state.incremental_runs} incremental runs since the last full one (full_rebuild_every)"
    if state.settings != settings_digest(cfg):
        return False, "the Stitch settings or the labels changed"
    return True, "incremental"


def match_incrementally(con, cfg: TenantConfig, model_version: int) -> tuple[bool, str]:
    """(incremental?, why) for stitch_match: the preprocessing's choice, unless the model changed."""
    state = read_state(con)
    if not cfg.stitch.incremental:
        return False, "stitch.incremental is off"
    if state is None or not table_exists(con, STITCHED) or not table_exists(con, "stitch.unified_scores"):
        return False, "first run: no stitched state yet"
    if state.full_pending:
        return False, "the preprocessing ran in full"
    if state.model_version != model_version:
        return False, f"the model changed (v{state.model_version} -> v{model_version})"
    if state.settings != settings_digest(cfg):
        return False, "the Stitch settings or the labels changed"
    return True, "incremental"


def model_design_settled(con, cfg: TenantConfig, model_version: int | None) -> bool:
    """Whether match_model may reuse the saved model without deriving the design from the
    records again: an incremental run on the state that model stitched (the design is derived
    again by every full run, so data drift reaches the model at the next full rebuild)."""
    state = read_state(con)
    return (cfg.stitch.incremental and state is not None and not state.full_pending
            and model_version is not None and state.model_version == model_version
            and state.settings == settings_digest(cfg))


def mark_full_pending(con, cfg: TenantConfig) -> None:
    """After a full preprocessing: the next match is full."""
    state = read_state(con) or StitchState(0, None, None, True)
    state.full_pending, state.settings = True, state.settings or settings_digest(cfg)
    write_state(con, state)


def forget(con) -> None:
    """stitch.incremental is off: no state is kept, so turning it on starts with a full run."""
    con.execute(f"drop table if exists {STATE}")


def clear_pending(con) -> None:
    """The pending delta is stitched."""
    for table in (PENDING, PENDING_OLD):
        if table_exists(con, table):
            con.execute(f"delete from {table}")


def record_stitched(con, cfg: TenantConfig, model_version: int, incremental: bool) -> StitchState:
    before = read_state(con)
    runs = (before.incremental_runs + 1) if (incremental and before) else 0
    state = StitchState(runs, model_version, settings_digest(cfg), False)
    write_state(con, state)
    clear_pending(con)
    return state


def write_reconciliation(con, previous: str, ids: str) -> int:
    """stitch.reconciliation (unique_id, incremental_cdp_id, full_cdp_id): records present in
    both whose cluster differs between the state before this full run (`previous`: unique_id,
    cdp_id) and the full rebuild (`ids`): a record's cluster is the same when its old id and its
    new id group exactly the same records. Returns the number of records listed."""
    con.execute(f"""
        create or replace table {RECONCILIATION} as
        with both_ as (select p.unique_id, p.cdp_id as incremental_cdp_id, i.cdp_id as full_cdp_id
                       from {previous} p join {ids} i using (unique_id)),
        sized as (select *, count(*) over (partition by incremental_cdp_id) as n_incremental,
                            count(*) over (partition by full_cdp_id) as n_full,
                            count(*) over (partition by incremental_cdp_id, full_cdp_id) as n_both
                  from both_)
        select unique_id, incremental_cdp_id, full_cdp_id from sized
        where n_both <> n_incremental or n_both <> n_full""")
    return con.execute(f"select count(*) from {RECONCILIATION}").fetchall()[0][0]
