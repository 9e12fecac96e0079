"""The customer 360 page: one card per customer 360 database of the tenant.

Figures come from the warehouse (profile count, Stitch's records in / people out, blocklist, id
changes, cluster sizes, match probabilities, source overlap) and from the Dagster instance
(when the database's customer_360 was last materialized, and how long the step that rebuilt it
took). Without a Dagster instance (no DAGSTER_HOME) the page says the rebuild time is unknown.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from cdp.config import TenantConfig
from cdp.serve.workspace.reader import quote, table_exists

PROBABILITY_BINS = 20
TOP_OVERLAPS = 12


@dataclass
class Rebuild:
    at: datetime | None = None
    seconds: float | None = None
    run_id: str | None = None
    note: str = ""


@dataclass
class DatabaseCard:
    name: str
    description: str
    stitch_mode: str
    built: bool
    profiles: int = 0
    records_in: int = 0
    people_out: int = 0
    records_per_person: float = 0.0
    rebuild: Rebuild = field(default_factory=Rebuild)
    cluster_sizes: list[tuple[int, int]] = field(default_factory=list)        # (size, people)
    source_overlap: list[tuple[str, int]] = field(default_factory=list)       # (sources, people)
    people_per_source: list[tuple[str, int]] = field(default_factory=list)    # (source, people)


@dataclass
class StitchFigures:
    blocklisted_values: int = 0
    blocklist_by_field: list[tuple[str, int]] = field(default_factory=list)
    id_changes: int = 0
    id_change_reasons: list[tuple[str, int]] = field(default_factory=list)
    cluster_changes: list[tuple[str, int]] = field(default_factory=list)
    pairs_scored: int = 0
    probability_histogram: list[tuple[float, int]] = field(default_factory=list)  # (bin start, pairs)
    match_threshold: float = 0.0


def last_rebuild(instance, db: str, warehouse: Path | None = None) -> Rebuild:
    """When <db>.customer_360 was last materialized and how long the step that did it took.
    Without a Dagster instance, when the warehouse file was last written (no duration)."""
    if instance is None:
        written = ""
        if warehouse is not None and warehouse.exists():
            at = datetime.fromtimestamp(warehouse.stat().st_mtime, tz=timezone.utc)
            written = f"warehouse last written {at:%Y-%m-%d %H:%M UTC}; "
        return Rebuild(note=written + "step times need the Dagster instance the runs use (set DAGSTER_HOME)")
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey([db, "customer_360"]))
    if event is None:
        return Rebuild(note="never materialized in this Dagster instance")
    rebuild = Rebuild(at=datetime.fromtimestamp(event.timestamp, tz=timezone.utc), run_id=event.run_id)
    for step in instance.get_run_step_stats(event.run_id):
        if step.step_key == event.step_key and step.start_time and step.end_time:
            rebuild.seconds = step.end_time - step.start_time
    return rebuild


def database_card(con, cfg: TenantConfig, name: str) -> DatabaseCard:
    db = cfg.customer_databases[name]
    mode = db.stitch_mode if isinstance(db.stitch_mode, str) else f"links at p >= {db.stitch_mode}"
    card = DatabaseCard(name=name, description=db.description, stitch_mode=mode,
                        built=table_exists(con, name, "customer_360") and table_exists(con, name, "unified_records"))
    if not card.built:
        return card
    schema = quote(name)
    card.profiles = con.execute(f"select count(*) from {schema}.customer_360").fetchone()[0]
    # one pass over the records: people grouped by (the set of their sources as a bit mask, their
    # record count); a list of distinct sources per person costs 5x more on 100,000 people
    sources = list(cfg.customer_sources)
    bit = " ".join(f"when '{name}' then {1 << i}" for i, name in enumerate(sources[:62]))
    groups = []
    for mask, size, people in con.execute(f"""
            select mask, size, count(*) from (
                select count(*) as size, bit_or(case source {bit} else {1 << 62} end) as mask
                from {schema}.unified_records group by cdp_id)
            group by all""").fetchall():
        members = [name for i, name in enumerate(sources[:62]) if mask & (1 << i)]
        groups.append((members + (["other sources"] if mask & (1 << 62) else []), size, people))
    sizes: dict[int, int] = {}
    overlap: dict[str, int] = {}
    per_source: dict[str, int] = {}
    for sources, size, people in groups:
        card.people_out += people
        card.records_in += size * people
        sizes[size] = sizes.get(size, 0) + people
        key = " + ".join(sources)
        overlap[key] = overlap.get(key, 0) + people
        for source in sources:
            per_source[source] = per_source.get(source, 0) + people
    card.records_per_person = card.records_in / card.people_out if card.people_out else 0.0
    card.cluster_sizes = sorted(sizes.items())
    card.source_overlap = sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OVERLAPS]
    card.people_per_source = sorted(per_source.items())
    return card


class FigureCache:
    """The page's warehouse figures for one version of the warehouse file: they only change when
    a run writes it, and a run changes the file (and its WAL), so (mtime, size) is the key."""

    def __init__(self):
        self._key = None
        self._value = None
        self._lock = threading.Lock()

    @staticmethod
    def version(path: Path) -> tuple:
        def stat(p: Path):
            try:
                st = p.stat()
                return st.st_mtime_ns, st.st_size, st.st_ino
            except FileNotFoundError:
                return None
        return stat(path), stat(path.with_name(path.name + ".wal"))

    def get(self, path: Path, compute):
        key = self.version(path)
        with self._lock:
            if key == self._key:
                return self._value
        value = compute()
        with self._lock:
            self._key, self._value = key, value
        return value


def stitch_figures(con, cfg: TenantConfig) -> StitchFigures:
    out = StitchFigures(match_threshold=cfg.stitch.match_threshold)
    if table_exists(con, "stitch", "blocklist"):
        out.blocklist_by_field = con.execute(
            "select field, count(*) from stitch.blocklist group by field order by field").fetchall()
        out.blocklisted_values = sum(n for _, n in out.blocklist_by_field)
    if table_exists(con, "stitch", "unified_changes_pks"):
        out.id_change_reasons = con.execute(
            "select coalesce(reason, 'new record'), count(*) from stitch.unified_changes_pks "
            "group by all order by 2 desc").fetchall()
        out.id_changes = sum(n for _, n in out.id_change_reasons)
    if table_exists(con, "stitch", "unified_changes_clusters"):
        out.cluster_changes = con.execute(
            "select change, count(*) from stitch.unified_changes_clusters group by change "
            "order by 2 desc").fetchall()
    if table_exists(con, "stitch", "unified_scores"):
        counts = dict(con.execute(f"""
            select least(floor(match_probability * {PROBABILITY_BINS}), {PROBABILITY_BINS - 1})::int as bin,
                   count(*) from stitch.unified_scores where match_probability is not null group by bin
            """).fetchall())
        out.probability_histogram = [(b / PROBABILITY_BINS, counts.get(b, 0)) for b in range(PROBABILITY_BINS)]
        out.pairs_scored = sum(counts.values())
    return out
