"""Inputs of the insights job besides Kafka: DataCat files and Conta Verde (JDBC).

The Spark session and the Kafka source are shared with the bonus job, in storefleet.spark.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame, SparkSession

from storefleet.endpoints import SettingError


def datacat_lines(spark: SparkSession, logs_dir: Path, max_files_per_trigger: int = 1000,
                  stores: str = "*") -> DataFrame:
    """Every DataCat file `<logs_dir>/<store_id>/*.log` as a stream of lines (column value).

    `stores` is a glob of the store folders to read (a fleet's job: `<fleet>-*`; the transforms
    still keep only the fleet's own stores, since `a-*` also matches fleet `a-b`'s folders).
    Files are renamed into place whole; the dot-temp names never match the pattern, and the
    checkpoint remembers which files were read, so a restart reads each file once.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    return (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", str(max_files_per_trigger))
        .load(str(logs_dir / stores / "*.log"))
    )


def jdbc_options(dsn: str) -> dict[str, str]:
    """A libpq DSN (URL or key=value) as Spark JDBC options: url, user, password, driver."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or "localhost"
    if host.startswith("/"):
        raise SettingError("STOREFLEET_PG_DSN: JDBC needs a TCP host, not a socket folder")
    url = f"jdbc:postgresql://{host}:{params.get('port') or 5432}/{params.get('dbname') or ''}"
    options = {"url": url, "driver": "org.postgresql.Driver"}
    if params.get("user"):
        options["user"] = str(params["user"])
    if params.get("password"):
        options["password"] = str(params["password"])
    if params.get("sslmode"):
        options["url"] += f"?sslmode={params['sslmode']}"
    return options


def oversold_orders(spark: SparkSession, dsn: str, since: datetime | None) -> DataFrame:
    """Conta Verde purchase orders with oversold units created at or after `since` (all if None).

    A partial index on created_at (migration 0030) keeps this read proportional to its answer.
    """
    where = "oversold_units > 0"
    if since is not None:
        where += f" AND created_at >= '{since.isoformat()}'::timestamptz"
    query = (
        "SELECT store_id, product_id, quantity, oversold_units, created_at "
        f"FROM conta_verde.purchase_orders WHERE {where}"
    )
    return spark.read.format("jdbc").options(**jdbc_options(dsn)).option("query", query).load()
