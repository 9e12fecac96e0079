"""The Spark session of a tenant: its settings, and cdp's code shipped to a cluster's executors.

`spark.master` (the tenant's `spark:` section) says where Spark runs. `local[N]` runs the
executors as threads of this process, with this interpreter's packages. On a cluster
(`spark://host:7077`, yarn, k8s) the executors are other processes on other machines; cdp's
Python code runs there too (the standardisers of source rows, the Jaro-Winkler UDF), so:

- cdp's own code is shipped by the driver: the `cdp` package it imported, zipped, added to the
  session with `addPyFile` (what `spark-submit --py-files` does), so the executors run exactly
  the driver's code - no second install of cdp to keep in step on the workers;
- its third-party packages (pandas, pyarrow, rapidfuzz, phonenumbers, ...: `pip install
  'cdp[spark]'`) are installed in the workers' Python, `PYSPARK_PYTHON` (default: the driver's
  interpreter path, which a cluster built from one image has on every node);
- the lakehouse folder is at the same path on every node (a shared filesystem): executors write
  the tables' Parquet files where the driver registers them.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

from cdp.config import TenantConfig

# pyspark 4.x warns on every pandas conversion that pandas 3 is "not yet fully supported"; the
# conversions cdp makes (flat string/number/date columns, Arrow) are checked by tests/spark/
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


def spark_conf(cfg: TenantConfig) -> dict[str, str]:
    """Spark settings of a tenant: lean local defaults, Splink's similarity UDF jar, then the
    tenant's own `spark.conf` (which wins)."""
    from splink.backends.spark import similarity_jar_location

    lakehouse = cfg.lakehouse_path
    # Python UDF workers (the Jaro-Winkler UDF) run this interpreter, with its packages
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return {
        "spark.app.name": f"cdp-{cfg.tenant}",
        "spark.sql.shuffle.partitions": str(cfg.spark.shuffle_partitions),
        "spark.default.parallelism": str(cfg.spark.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.warehouse.dir": str(lakehouse / "_spark_warehouse"),
        "spark.local.dir": str(lakehouse / "_spark_tmp"),
        "spark.jars": similarity_jar_location(),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
        "spark.sql.legacy.timeParserPolicy": "CORRECTED",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.driver.memory": "4g",
        **cfg.spark.conf,
    }


def spark_session(cfg: TenantConfig):
    """A SparkSession outside Dagster (tests, benchmarks, the CLI), same settings as the resource."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(cfg.spark.master)
    for key, value in spark_conf(cfg).items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    prepare_session(session)
    return session


def prepare_session(session) -> None:
    """Quiet logs; on a cluster, cdp's code added to the session for its executors."""
    session.sparkContext.setLogLevel("ERROR")
    if not session.sparkContext.master.startswith("local"):
        ship_cdp_code(session)


_SHIPPED: dict[int, str] = {}  # id of a SparkContext -> the code archive it was given


def ship_cdp_code(session) -> str:
    """Add the driver's `cdp` package, zipped, to the session's Python path (once per context):
    every executor imports cdp from it, ahead of any cdp installed on the worker."""
    context = session.sparkContext
    if id(context) not in _SHIPPED:
        archive = cdp_code_archive()
        context.addPyFile(str(archive))
        _SHIPPED[id(context)] = str(archive)
    return _SHIPPED[id(context)]


def cdp_code_archive() -> Path:
    """A zip of the imported cdp package's Python files, named by their content (a changed file
    is a new archive, so an executor never keeps a stale copy of one it was given before)."""
    import cdp

    package = Path(cdp.__file__).resolve().parent
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    archive = Path(tempfile.gettempdir()) / f"cdp-code-{digest.hexdigest()[:16]}.zip"
    if not archive.exists():
        staged = archive.with_suffix(f".{os.getpid()}.part")
        with zipfile.ZipFile(staged, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in files:
                zf.write(path, Path("cdp") / path.relative_to(package))
        staged.replace(archive)
    return archive
