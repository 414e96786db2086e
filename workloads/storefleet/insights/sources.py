"""Inputs of the insights job: the Spark session, Kafka events, DataCat files, Conta Verde (JDBC).

The Kafka connector and the PostgreSQL JDBC driver are not part of pyspark: tools/spark/
fetch-jars.sh puts them in `paths.jars_dir("spark")`, and the session loads every jar there.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from pyspark.sql import DataFrame, SparkSession

from storefleet import paths
from storefleet.endpoints import SettingError


def connector_jars(folder: Path | None = None) -> list[str]:
    folder = folder or paths.jars_dir("spark")
    jars = sorted(str(p) for p in folder.glob("*.jar"))
    if not any("spark-sql-kafka" in j for j in jars):
        raise SettingError(
            f"no Spark Kafka connector in {folder}; run tools/spark/fetch-jars.sh "
            f"(or point STOREFLEET_JARS_DIR at a folder holding spark/*.jar)"
        )
    return jars


def spark_session(master: str | None = "local[*]", shuffle_partitions: int = 4, ui: bool = False,
                  app_name: str = "storefleet-insights") -> SparkSession:
    """The job's session (or the running one): UTC, few shuffle partitions, and locally the
    connector jars from tools/spark/fetch-jars.sh.

    `shuffle_partitions` is frozen into a streaming checkpoint at its first run (DESIGN.md §8).
    """
    builder = (
        SparkSession.builder.appName(app_name)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.enabled", str(ui).lower())
        .config("spark.sql.streaming.stopGracefullyOnShutdown", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
    )
    if master:
        builder = builder.master(master)
    # Under spark-submit (which sets the gateway variables) master, jars and addresses come from
    # its command line and the Spark image, where the connector jars are baked in.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted and (master or "local").startswith("local"):
        builder = builder.config("spark.jars", ",".join(connector_jars())).config(
            "spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
    session = builder.getOrCreate()
    session.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    session.sparkContext.setLogLevel("WARN")
    return session


def kafka_events(spark: SparkSession, bootstrap: str, topic: str,
                 starting_offsets: str = "earliest",
                 max_offsets_per_trigger: int | None = None) -> DataFrame:
    """The raw events topic as a stream (columns key, value, topic, partition, offset, ...)."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        # Offsets gone while the job was down (retention, a re-created topic) must not stop it:
        # it goes on from the earliest offset still there and Spark logs the gap.
        .option("failOnDataLoss", "false")
        # A task reading up to the end of a partition otherwise waits the broker's default
        # 500 ms for more data on its last fetch: that wait was most of a micro-batch here.
        .option("kafka.fetch.max.wait.ms", "20")
    )
    if max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets_per_trigger))
    return reader.load()


def datacat_lines(spark: SparkSession, logs_dir: Path, max_files_per_trigger: int = 1000
                  ) -> DataFrame:
    """Every DataCat file `<logs_dir>/<store_id>/*.log` as a stream of lines (column value).

    Files are renamed into place whole; the dot-temp names never match the pattern, and the
    checkpoint remembers which files were read, so a restart reads each file once.
    """
    logs_dir.mkdir(parents=True, exist_ok=True)
    return (
        spark.readStream.format("text")
        .option("maxFilesPerTrigger", str(max_files_per_trigger))
        .load(str(logs_dir / "*" / "*.log"))
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
