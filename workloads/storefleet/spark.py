"""What every StoreFleet Spark job shares: the session and the Kafka events source.

The Kafka connector and the PostgreSQL JDBC driver are not part of pyspark: tools/spark/
fetch-jars.sh puts them in `paths.jars_dir("spark")`, and a local session loads every jar there.
Used by the insights job (storefleet.insights) and the bonus job (storefleet.bonus).
"""

from __future__ import annotations

import os
from pathlib import Path

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
                  app_name: str = "storefleet-insights",
                  driver_memory: str | None = None) -> SparkSession:
    """The job's session (or the running one): UTC, few shuffle partitions, and locally the
    connector jars from tools/spark/fetch-jars.sh.

    `shuffle_partitions` is frozen into a streaming checkpoint at its first run (DESIGN.md §8).
    `driver_memory` (e.g. "512m") applies only when this call starts the JVM (local runs).
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
    if driver_memory:
        builder = builder.config("spark.driver.memory", driver_memory)
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
