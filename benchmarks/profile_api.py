"""Profile API latency and throughput: 100,000 profiles, a uvicorn server process, and an
open-loop load generator on loopback at a fixed request rate.

    .venv/bin/python benchmarks/profile_api.py [--profiles 100000] [--rate 500] [--seconds 30]

1. builds a warehouse with --profiles people (customer 360, domain customers with email and
   phone, Stitch keys, transaction attributes, predicted CLV, 6 category propensities each) in
   DuckDB SQL, then times `build_profile_store` (the `activation/profile_store` asset's work);
2. starts `cdp serve` for that tenant in its own process;
3. sends --rate requests per second for --seconds seconds on 32 keep-alive connections (a
   minimal asyncio HTTP/1.1 client; httpx only checks the server is up): 70% GET /profiles/{cdp_id}, 15% lookup by email, 10% by (source, pk), 5% unknown
   ids (404). Requests are sent on a fixed schedule whatever the server does (open loop), and
   latency is measured from the scheduled send time, so a stalled server cannot hide its delay.

Prints p50 / p90 / p99 / max latency, achieved throughput and status counts.
Target: p99 < 10 ms at 500 requests/s.
"""

import argparse
import asyncio
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cdp_assets.config import load_config  # noqa: E402
from cdp_assets.profile_store import build_profile_store  # noqa: E402

KEY = "bench-key"
TENANT = {
    "tenant": "bench",
    "warehouse": "warehouse.duckdb",
    "sources": {"shop_customers": {"path": "c.csv", "kind": "customers",
                                   "columns": {"id": "pk", "email": "email", "phone": "phone"}}},
    "profile_api": {"api_key_env": "CDP_BENCH_API_KEY", "store": "profile_store.sqlite"},
}
CATEGORIES = ["bakery", "beverages", "dairy", "household", "produce", "snacks"]


def build_warehouse(con, n: int) -> None:
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(base: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the Profile API did not come up")


def request_mix(n: int, people: int, rng: random.Random) -> list[str]:
    urls = []
    for _ in range(n):
        i, r = rng.randrange(people), rng.random()
        if r < 0.70:
            urls.append(f"/profiles/P{i:07d}")
        elif r < 0.85:
            urls.append(f"/profiles/lookup?email=person{i}@example.com")
        elif r < 0.95:
            urls.append(f"/profiles/lookup?source=shop_customers&pk=c{i:07d}")
        else:
            urls.append(f"/profiles/X{i:07d}")
    return urls


async def load(host: str, port: int, urls: list[str], rate: float,
               connections: int = 32) -> tuple[list[float], dict, float]:
    """Open-loop load on keep-alive connections, with a minimal HTTP/1.1 client on asyncio
    streams (httpx costs ~1 ms of CPU per request, which on 2 cores would be measured as the
    server's latency). Request k is due at start + k / rate; its latency runs from then."""
    latencies, statuses = [], {}
    queue: asyncio.Queue = asyncio.Queue()

    async def get(reader, writer, url: str) -> int:
        writer.write(f"GET {url} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {KEY}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
        return status

    async def worker():
        reader, writer = await asyncio.open_connection(host, port)
        for url in urls[:5]:  # warm-up
            await get(reader, writer, url)
        await ready.wait()
        while True:
            item = await queue.get()
            if item is None:
                break
            due, url = item
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await get(reader, writer, url)
            latencies.append(time.perf_counter() - due)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    ready = asyncio.Event()
    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    await asyncio.sleep(1.0)
    start = time.perf_counter() + 0.1
    for k, url in enumerate(urls):
        queue.put_nowait((start + k / rate, url))
    for _ in workers:
        queue.put_nowait(None)
    ready.set()
    await asyncio.gather(*workers)
    return latencies, statuses, time.perf_counter() - start


def pct(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(p / 100 * (len(sorted_values) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=500)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="cdp-bench-api-") as tmp:
        root = Path(tmp)
        (root / "tenant.yaml").write_text(yaml.safe_dump(TENANT))
        cfg = load_config(root / "tenant.yaml")
        con = duckdb.connect(str(cfg.warehouse_path))
        build_warehouse(con, args.profiles)
        t0 = time.perf_counter()
        counts = build_profile_store(cfg, con, cfg.resolve(cfg.profile_api.store))
        build_s = time.perf_counter() - t0
        con.close()
        store_mb = cfg.resolve(cfg.profile_api.store).stat().st_size / 1e6
        print(f"profile store: {counts} in {build_s:.1f}s ({store_mb:.0f} MB)")

        port = free_port()
        env = {**os.environ, "CDP_BENCH_API_KEY": KEY}
        server = subprocess.Popen([sys.executable, "-m", "cdp_assets.cli", "serve", "--config",
                                   str(root / "tenant.yaml"), "--port", str(port)], env=env, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base)
            urls = request_mix(int(args.rate * args.seconds), args.profiles, random.Random(7))
            latencies, statuses, elapsed = asyncio.run(load("127.0.0.1", port, urls, args.rate))
        finally:
            server.terminate()
            server.wait(10)

    ms = sorted(x * 1000 for x in latencies)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, DuckDB {duckdb.__version__}")
    print(f"profiles: {args.profiles:,}  offered rate: {args.rate:.0f}/s for {args.seconds:.0f}s "
          f"({len(urls):,} requests)")
    print(f"latency ms: p50 {pct(ms, 50):.2f}  p90 {pct(ms, 90):.2f}  p99 {pct(ms, 99):.2f}  "
          f"max {ms[-1]:.2f}")
    print(f"throughput: {len(ms) / elapsed:.0f} requests/s  statuses: {dict(sorted(statuses.items()))}")
    target = pct(ms, 99) < 10
    print(f"target p99 < 10 ms at {args.rate:.0f}/s: {'met' if target else 'NOT met'}")


if __name__ == "__main__":
    main()
