"""Smoke checks of the Spark image and the Spark operator image.

The pyspark job runs through the image's entrypoint in `driver` mode (as Spark on Kubernetes
starts a driver pod), with a local master since there is no cluster: it imports storefleet on the
driver and on the Python workers, and finds the baked-in Kafka, JDBC and Kubernetes classes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storefleet.events.bounds import EVENT_TYPES

from .conftest import run

pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]

SPARK_VERSION = "4.0.0"

JOB = """
from pyspark.sql import SparkSession
from storefleet.events import bounds

spark = SparkSession.builder.appName("image-smoke").getOrCreate()
jvm = spark.sparkContext._jvm
for name in ("org.postgresql.Driver",
             "org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend"):
    jvm.java.lang.Class.forName(name)
kafka = jvm.org.apache.spark.sql.execution.datasources.DataSource.lookupDataSource(
    "kafka", spark._jsparkSession.sessionState().conf())
total = spark.range(1, 101).groupBy().sum("id").first()[0]
workers = spark.sparkContext.parallelize(range(4), 2).map(
    lambda _: __import__("storefleet.events.bounds").events.bounds.MAX_QUANTITY).collect()
print("SMOKE", kafka.getName(), total, len(bounds.EVENT_TYPES), len(set(workers)))
spark.stop()
"""


def test_spark_image_has_spark_submit(image):
    done = run(image("spark"), "spark-submit", "--version")
    assert done.returncode == 0, done.stderr
    assert f"version {SPARK_VERSION}" in done.stdout + done.stderr
    # The file SparkApplications run, with the job's own subcommand.
    main = run(image("spark"), "python", "/opt/storefleet/storefleet_main.py", "insights", "--help")
    assert main.returncode == 0, main.stderr
    assert "Usage:" in main.stdout


def test_spark_driver_runs_a_pyspark_job_with_storefleet_and_kafka(image, shared_dir: Path):
    (shared_dir / "job.py").write_text(JOB)
    (shared_dir / "job.py").chmod(0o644)
    done = run(
        image("spark"),
        "driver",
        "--master",
        "local[2]",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.ui.enabled=false",
        "local:///job/job.py",
        env={"SPARK_DRIVER_BIND_ADDRESS": "127.0.0.1", "SPARK_LOCAL_IP": "127.0.0.1"},
        volumes=(f"{shared_dir}:/job:ro",),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("SMOKE "))
    _, kafka_class, total, types, distinct = line.split()
    assert kafka_class == "org.apache.spark.sql.kafka010.KafkaSourceProvider"
    assert int(total) == sum(range(1, 101))
    assert int(types) == len(EVENT_TYPES)
    assert int(distinct) == 1
    uid = run(image("spark"), "id", "-u")
    assert uid.stdout.strip() == "185"


def test_spark_executor_mode_starts_the_kubernetes_backend_from_the_environment(image):
    # No driver listens: the backend must start with the settings Spark passes by environment
    # (memory, JVM options, driver URL) and then fail to reach that driver.
    memory_mib = 384
    done = run(
        image("spark"),
        "executor",
        env={
            "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@127.0.0.1:7078",
            "SPARK_EXECUTOR_ID": "1",
            "SPARK_EXECUTOR_CORES": "1",
            "SPARK_EXECUTOR_MEMORY": f"{memory_mib}m",
            "SPARK_APPLICATION_ID": "spark-smoke",
            "SPARK_EXECUTOR_POD_IP": "127.0.0.1",
            "SPARK_EXECUTOR_POD_NAME": "smoke-exec-1",
            "SPARK_RESOURCE_PROFILE_ID": "0",
            "SPARK_JAVA_OPT_0": "-XX:+PrintCommandLineFlags",
        },
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"-XX:MaxHeapSize={memory_mib * 1024 * 1024}" in output
    assert "KubernetesExecutorBackend: Started daemon" in output
    assert "Failed to connect to /127.0.0.1:7078" in output


def test_spark_operator_image_runs_the_operator_and_has_spark_submit(image):
    ref = image("spark-operator")
    done = run(ref, "--help")
    assert done.returncode == 0, done.stderr
    assert "controller" in done.stdout and "webhook" in done.stdout
    controller = run(ref, "controller", "start", "--help")
    assert controller.returncode == 0, controller.stderr
    assert "--namespaces" in controller.stdout
    submit = run(ref, "--version", entrypoint="/opt/spark/bin/spark-submit")
    assert f"version {SPARK_VERSION}" in submit.stdout + submit.stderr
