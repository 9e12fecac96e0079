"""Spark on a real cluster: a standalone master and two workers on loopback, each worker its own
JVM with its own executor processes, run a small tenant's sources and Stitch through Dagster with
`spark.master: spark://127.0.0.1:<port>`; the people found equal the DuckDB run's.

What this proves beyond `local[2]` (tests/spark/test_spark.py): the executors are other processes,
so cdp's Python code they run (the source standardisers, the Jaro-Winkler UDF) reaches them the
way it would on other machines - the driver ships its cdp package (cdp/engine/spark/session.py) -
and the tables they write land in the lakehouse the driver registers. The workers are started
without the test's PYTHONPATH: the cdp they could import otherwise is another checkout's.

The cluster is pyspark's own: `bin/spark-class` of the pip package runs the Master and Worker
classes (the wheel ships no `sbin/start-*.sh`). 1 core and 1 GB per worker."""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest
import yaml

from cdp.config import DEFAULT_CONFIG, load_config

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

PEOPLE = 40
WORKERS = 2
GROUPS = ("sources", "stitch")
GRACE = 5  # seconds a cluster process has to stop on SIGTERM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_home() -> Path:
    from pyspark.find_spark_home import _find_spark_home

    return Path(_find_spark_home())


class Cluster:
    """A Spark standalone master and its workers, each a `spark-class` process."""

    def __init__(self, root: Path):
        self.root = root
        self.port, self.ui_port = _free_port(), _free_port()
        self.processes: list[subprocess.Popen] = []
        home = _spark_home()
        self.spark_class = str(home / "bin" / "spark-class")
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.env.update({"SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
                         "SPARK_NO_DAEMONIZE": "1", "SPARK_LOG_DIR": str(root / "logs")})

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen([self.spark_class, *args], env=self.env, stdout=log,
                                               stderr=subprocess.STDOUT, start_new_session=True))

    def start(self) -> None:
        self._start("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                    "--port", str(self.port), "--webui-port", str(self.ui_port))
        self._wait(lambda s: s.get("status") == "ALIVE", "the master")
        for n in range(WORKERS):
            work = self.root / f"worker-{n}"
            work.mkdir()
            self._start(f"worker-{n}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
                        "--cores", "1", "--memory", "1g", "--webui-port", str(_free_port()),
                        "--work-dir", str(work), self.url)
        self._wait(lambda s: s.get("aliveworkers") == WORKERS, f"{WORKERS} workers")

    def state(self) -> dict:
        """The master's status page as JSON (workers, applications)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=2) as page:
            return json.load(page)

    def _wait(self, ready, what: str, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.processes):
                break
            try:
                if ready(self.state()):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        logs = {p.name: p.read_text()[-2000:] for p in self.root.glob("*.log")}
        raise RuntimeError(f"the Spark cluster did not get {what} up: {logs}")

    def stop(self) -> None:
        """Workers first, then the master; a JVM still shutting down after GRACE seconds (a
        worker retries its lost master for a while) is killed with its process group."""
        for process in reversed(self.processes):
            process.terminate()
        deadline = time.monotonic() + GRACE
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("a Spark cluster needs Java")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()  # a local[2] session of another module
    if active is not None:
        active.stop()
    cluster = Cluster(tmp_path_factory.mktemp("spark_cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
        cluster.stop()


@pytest.fixture(scope="module")
def tenant(tmp_path_factory, cluster):
    """A customers-only tenant for PEOPLE people whose Spark is the cluster."""
    from cdp.demo.generate import generate_demo_data

    root = tmp_path_factory.mktemp("cluster_tenant")
    generate_demo_data(root / "data", people=PEOPLE, seed=5, customers_only=True)
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["sources"] = {n: s for n, s in raw["sources"].items() if s["kind"] == "customers"}
    for key in ("databases", "destinations", "segments", "orchestrations", "queries", "merge", "profile_api"):
        raw.pop(key, None)
    raw["spark"] = {"master": cluster.url, "shuffle_partitions": 2, "conf": {
        "spark.driver.memory": "1g", "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1", "spark.executor.memory": "512m",
        "spark.executor.cores": "1", "spark.cores.max": str(WORKERS)}}
    (root / "tenant.yaml").write_text(yaml.safe_dump(raw))
    return root / "tenant.yaml"


def _materialize(config_path, instance, engine: str):
    from cdp.definitions import build_definitions

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CDP_ENGINE", engine)
        env.delenv("CDP_WAREHOUSE", raising=False)
        cfg = load_config(config_path)
        job = dg.define_asset_job(f"stitch_{engine}", selection=dg.AssetSelection.groups(*GROUPS))
        defs = dg.Definitions.merge(build_definitions(cfg), dg.Definitions(jobs=[job]))
        result = defs.resolve_job_def(f"stitch_{engine}").execute_in_process(
            instance=instance, raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    return cfg


def _people(frame: pd.DataFrame) -> set[frozenset]:
    """The partition of records into people, whatever the ids are."""
    frame = frame.assign(uid=frame["source"] + "|" + frame["pk"].astype(str))
    return {frozenset(g) for _, g in frame.groupby("cdp_id")["uid"]}


def test_a_standalone_cluster_finds_the_same_people_as_duckdb(cluster, tenant, dagster_instance):
    duck_cfg = _materialize(tenant, dagster_instance, "duckdb")   # trains and saves the model
    spark_cfg = _materialize(tenant, dagster_instance, "spark")
    with duckdb.connect(str(duck_cfg.warehouse_path), read_only=True) as con:
        on_duckdb = con.execute("select cdp_id, source, pk from stitch.unified_coalesced").df()
        domain_rows = con.execute("select count(*) from domain.pos_customers").fetchone()[0]
    on_cluster = pd.read_parquet(spark_cfg.lakehouse_path / "stitch" / "unified_coalesced")
    assert len(on_cluster) == len(on_duckdb) > PEOPLE
    assert _people(on_cluster) == _people(on_duckdb)
    assert len(_people(on_cluster)) < len(on_cluster)  # records were really linked
    assert len(pd.read_parquet(spark_cfg.lakehouse_path / "domain" / "pos_customers")) == domain_rows

    # the work ran on the cluster: the application had executors on both workers
    apps = cluster.state()["activeapps"] + cluster.state()["completedapps"]
    assert [a["name"] for a in apps] == [f"cdp-{spark_cfg.tenant}"]
    executors = [d for d in cluster.root.glob("worker-*/app-*/*") if d.is_dir()]
    assert {d.parent.parent.name for d in executors} == {f"worker-{n}" for n in range(WORKERS)}
    # and its executors imported cdp from the code the driver shipped, not from a checkout
    from pyspark.sql import SparkSession

    from cdp.engine.spark.session import cdp_code_archive

    context = SparkSession.builder.getOrCreate().sparkContext
    imported = set(context.parallelize(range(WORKERS * 2), WORKERS * 2)
                   .map(lambda _: __import__("cdp").__file__).collect())
    assert imported and all(cdp_code_archive().name in path for path in imported), imported
