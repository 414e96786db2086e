"""The operator's own settings: images and names of platform objects, read from its environment.

The Helm chart sets these on the operator's Deployment (values.yaml `operator.*`); locally and
in tests the defaults apply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class OperatorSettings:
    # Image with the `storefleet` command (simulator, price updater).
    image: str = "storefleet/workloads:0.1.0"
    # Spark image: Spark + the storefleet package + the Kafka and JDBC connector jars baked into
    # /opt/spark/jars (DESIGN.md §8: never resolved by spark-submit at submit time).
    spark_image: str = "storefleet/spark:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    spark_version: str = "4.0.0"  # images/spark: apache/spark:4.0.0, pyspark==4.0.0
    # The Python file spark-submit runs; it calls `storefleet <job>` with the arguments.
    spark_main_file: str = "local:///opt/storefleet/storefleet_main.py"
    # Extra jars already in the image (local:// URIs). Jars in /opt/spark/jars are on the
    # classpath without being listed.
    spark_jars: tuple[str, ...] = ()
    spark_service_account: str = "storefleet-spark"
    # Secret with STOREFLEET_PG_DSN, STOREFLEET_REDIS_URL, STOREFLEET_KAFKA_BOOTSTRAP,
    # STOREFLEET_INGEST_URL and STOREFLEET_INGEST_TOKEN, given to every child as envFrom.
    endpoints_secret: str = "storefleet-endpoints"
    # PersistentVolumeClaim (ReadWriteMany) shared by simulators (DataCat writers) and the
    # insights job (reader); empty means an emptyDir per simulator pod.
    logs_claim: str = ""
    # PersistentVolumeClaim for the Spark jobs' streaming checkpoints (the bonus job's
    # exactly-once state survives a resubmission only with one); empty means an emptyDir.
    checkpoints_claim: str = ""

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            image=env.get("STOREFLEET_IMAGE", defaults.image),
            spark_image=env.get("STOREFLEET_SPARK_IMAGE", defaults.spark_image),
            image_pull_policy=env.get("STOREFLEET_IMAGE_PULL_POLICY", defaults.image_pull_policy),
            spark_version=env.get("STOREFLEET_SPARK_VERSION", defaults.spark_version),
            spark_main_file=env.get("STOREFLEET_SPARK_MAIN_FILE", defaults.spark_main_file),
            spark_jars=_list(env.get("STOREFLEET_SPARK_JARS", "")),
            spark_service_account=env.get(
                "STOREFLEET_SPARK_SERVICE_ACCOUNT", defaults.spark_service_account
            ),
            endpoints_secret=env.get("STOREFLEET_ENDPOINTS_SECRET", defaults.endpoints_secret),
            logs_claim=env.get("STOREFLEET_LOGS_CLAIM", defaults.logs_claim),
            checkpoints_claim=env.get("STOREFLEET_CHECKPOINTS_CLAIM", defaults.checkpoints_claim),
        )
