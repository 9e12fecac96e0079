"""Profile API latency under load, measured on `cdp serve` as users start it (the Profile API
with the analyst workspace mounted), alone and while a long workspace SQL query runs.

    .venv/bin/python -m benchmarks.profile_api [--profiles 1000000] [--rate 1000] [--seconds 30]
                                               [--workers 1] [--connections 32]

1. builds a warehouse with --profiles people (customer 360, domain customers with email and
   phone, Stitch keys, transaction attributes, predicted CLV, 6 category propensities each) in
   DuckDB SQL (benchmarks/harness.py), then times `build_profile_store` (the
   `activation/profile_store` asset's work) and prints the store's size;
2. starts `cdp serve --config <tenant> --port P [--workers N]` in its own process (the CLI,
   `python -m cdp.cli` on this checkout), with an analyst in the workspace's users file;
3. phase 1: an open-loop load generator in a process of its own sends --rate requests per second
   for --seconds seconds on --connections keep-alive connections (a minimal asyncio HTTP/1.1
   client): 70% GET /profiles/{cdp_id}, 15% lookup by email, 10% by (source, pk), 5% unknown
   ids (404). Requests are due on a fixed schedule whatever the server does, and latency runs
   from each request's due time, so a stalled server cannot hide its delay; the generator's own
   lag (due -> sent) is printed, to show it was not the bottleneck;
4. phase 2: the same load while an analyst, logged in to the workspace, runs a self-join of
   customer_360 through the SQL editor (POST /workspace/sql/run) that lasts the whole phase (it
   is interrupted by workspace.query_seconds after it).

Prints p50 / p95 / p99 / max latency, achieved throughput and status counts per phase.
Targets: p99 < 10 ms in phase 1 and < 20 ms in phase 2, at 1,000 requests/s on 1,000,000 profiles.
"""

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import httpx
import yaml

from benchmarks.harness import (PROFILES_TENANT, ROOT, build_profiles_warehouse, free_port, load_averages,
                                machine_line, pct)
from cdp.config import load_config
from cdp.serve.access import create_key
from cdp.serve.workspace.auth import add_user
from cdp.stages.activation.profile_store import build_profile_store

# the website's named key (`cdp key create website --scope profiles:read`), made per run; the
# load generator (a spawned process) reads it from the environment
KEY = os.environ.get("CDP_BENCH_KEY", "")
ANALYST, PASSWORD = "analyst", "bench analyst password"
# an analyst's mistake: pairs of people of the same gender, a self-join of 1M x 500k pairs per
# value that DuckDB cannot shortcut (the inequality is tested on every pair); it runs until
# workspace.query_seconds interrupts it
LONG_QUERY = ("select a.state, count(*) as pairs from c360.customer_360 a join c360.customer_360 b "
              "on a.gender = b.gender and a.cdp_id < b.cdp_id group by a.state")


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
               connections: int = 32) -> tuple[list[float], list[float], dict, float]:
    """Open-loop load on keep-alive connections, with a minimal HTTP/1.1 client on asyncio
    streams (httpx costs ~1 ms of CPU per request, which on 2 cores would be measured as the
    server's latency). Request k is due at start + k / rate; its latency runs from then.
    Returns (latencies, generator lags: due -> written, statuses, elapsed)."""
    latencies, lags, statuses = [], [], {}
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
            lags.append(time.perf_counter() - due)
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
    return latencies, lags, statuses, time.perf_counter() - start


def _generator(port: int, urls: list[str], rate: float, connections: int, out) -> None:
    """The load generator's process (so it has its own interpreter and GIL)."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    cpu = time.process_time()
    result = asyncio.run(load("127.0.0.1", port, urls, rate, connections))
    out.send((*result, time.process_time() - cpu))
    out.close()


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children that are still running (the
    workers of `cdp serve --workers N`), from /proc."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def run_load(port: int, urls: list[str], rate: float, connections: int, server_pid: int):
    """Returns (latencies, lags, statuses, elapsed, generator CPU s, server CPU s)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_generator, args=(port, urls, rate, connections, send))
    proc.start()
    before = cpu_seconds(server_pid)
    result = receive.recv()
    server_cpu = cpu_seconds(server_pid) - before
    proc.join(30)
    return (*result, server_cpu)


def report(name: str, latencies, lags, statuses, elapsed: float, generator_cpu: float, server_cpu: float,
           rate: float, target_ms: float) -> float:
    ms = sorted(x * 1000 for x in latencies)
    lag = sorted(x * 1000 for x in lags)
    p99 = pct(ms, 99)
    print(f"{name}: {len(ms):,} requests  latency ms: p50 {pct(ms, 50):.2f}  p95 {pct(ms, 95):.2f}  "
          f"p99 {p99:.2f}  max {ms[-1]:.2f}")
    print(f"{name}: achieved {len(ms) / elapsed:.0f} requests/s of {rate:.0f} offered  statuses "
          f"{dict(sorted(statuses.items()))}")
    print(f"{name}: CPU per request: server {server_cpu / len(ms) * 1e6:.0f} us (all its processes and threads, "
          f"a workspace query included), load "
          f"generator {generator_cpu / len(ms) * 1e6:.0f} us ({generator_cpu / elapsed:.0%} of a core); "
          f"requests waiting at the client p99 {pct(lag, 99):.2f} ms")
    print(f"{name}: target p99 < {target_ms:.0f} ms: {'met' if p99 < target_ms else 'NOT met'}")
    return p99


def _hidden_fields(html: str) -> dict[str, str]:
    """Hidden form fields (a CSRF token, when the workspace has one) to send back with a form."""
    fields = dict(re.findall(r'<input[^>]*type="hidden"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html))
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    if meta:
        fields.setdefault("csrf_token", meta.group(1))
    return fields


def long_workspace_query(base: str, outcome: dict, started: threading.Event) -> None:
    """Log in as the analyst (the workspace's login form) and run LONG_QUERY in the SQL editor."""
    with httpx.Client(base_url=base, timeout=600, follow_redirects=True) as client:
        fields = _hidden_fields(client.get("/workspace/login").text)
        r = client.post("/workspace/login", data={**fields, "username": ANALYST, "password": PASSWORD,
                                                  "next": "/workspace/sql"})
        if r.url.path != "/workspace/sql":
            outcome.update(status=r.status_code, error=f"login failed: {r.text[:300]}")
            started.set()
            return
        fields = _hidden_fields(r.text)
        headers = {"HX-Request": "true"}
        if "csrf_token" in fields:
            headers["X-CSRF-Token"] = fields["csrf_token"]
        t0 = time.monotonic()
        started.set()
        r = client.post("/workspace/sql/run", data={**fields, "sql": LONG_QUERY, "limit": "10"}, headers=headers)
        outcome.update(status=r.status_code, seconds=time.monotonic() - t0,
                       text=re.sub(r"<[^>]+>|\s+", " ", r.text).strip()[:200])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=30, help="each phase's duration")
    ap.add_argument("--workers", type=int, default=1, help="cdp serve --workers")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--skip-phase2", action="store_true")
    args = ap.parse_args()
    print(f"load average at start: {load_averages()}")

    with tempfile.TemporaryDirectory(prefix="cdp-bench-api-") as tmp:
        root = Path(tmp)
        tenant = {**PROFILES_TENANT, "workspace": {**PROFILES_TENANT["workspace"], "query_seconds": args.seconds + 15}}
        (root / "tenant.yaml").write_text(yaml.safe_dump(tenant))
        cfg = load_config(root / "tenant.yaml")
        add_user(cfg.resolve(cfg.workspace.users_file), ANALYST, PASSWORD, role="analyst")
        global KEY
        KEY = os.environ["CDP_BENCH_KEY"] = create_key(cfg.resolve(cfg.profile_api.keys_file), "website",
                                                       ["profiles:read"])
        t0 = time.perf_counter()
        con = duckdb.connect(str(cfg.warehouse_path))
        build_profiles_warehouse(con, args.profiles)
        warehouse_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        counts = build_profile_store(cfg, con, cfg.resolve(cfg.profile_api.store))
        build_s = time.perf_counter() - t0
        con.close()  # the server's workspace opens the warehouse read-only
        store_mb = cfg.resolve(cfg.profile_api.store).stat().st_size / 1e6
        print(f"warehouse of {args.profiles:,} people built in {warehouse_s:.1f}s")
        print(f"profile store: {counts} built in {build_s:.1f}s, {store_mb:.0f} MB")

        port = free_port()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        env.pop("DAGSTER_HOME", None)
        command = [sys.executable, "-m", "cdp.cli", "serve", "--config", str(root / "tenant.yaml"),
                   "--port", str(port), "--workers", str(args.workers)]
        print("server:", "cdp " + " ".join(command[3:]))
        server = subprocess.Popen(command, env=env, cwd=ROOT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, 120)
            n = int(args.rate * args.seconds)
            print(f"profiles: {args.profiles:,}  offered: {args.rate:.0f}/s for {args.seconds:.0f}s a phase "
                  f"on {args.connections} connections  workers: {args.workers}")
            phase1 = run_load(port, request_mix(n, args.profiles, random.Random(7)), args.rate, args.connections,
                              server.pid)
            print(f"load average after phase 1: {load_averages()}")
            report("phase 1 (API alone)", *phase1, args.rate, 10)
            if not args.skip_phase2:
                outcome, started = {}, threading.Event()
                query = threading.Thread(target=long_workspace_query, args=(base, outcome, started), daemon=True)
                query.start()
                started.wait(60)
                time.sleep(1.0)  # the self-join is under way
                phase2 = run_load(port, request_mix(n, args.profiles, random.Random(8)), args.rate,
                                  args.connections, server.pid)
                running = query.is_alive()
                query.join(args.seconds + 60)
                print(f"load average after phase 2: {load_averages()}")
                report("phase 2 (with a workspace query)", *phase2, args.rate, 20)
                print(f"phase 2: the workspace query {'ran through the whole phase' if running else 'ENDED EARLY'}"
                      f"; answered {outcome.get('status')} after {outcome.get('seconds', 0):.1f}s: "
                      f"{outcome.get('text') or outcome.get('error')}")
        finally:
            server.terminate()
            server.wait(30)

    print(machine_line(duckdb=True))


if __name__ == "__main__":
    main()
