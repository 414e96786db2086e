"""The operator's own settings, read once at start from STOREFLEET_* environment variables.

The Helm chart sets them on the operator's Deployment (templates/operator/deployment.yaml, from
values.yaml); locally and in tests the defaults apply, except STOREFLEET_INGEST_TOKEN_KEY, which
has none. `OperatorSettings.from_env()` checks every value (pydantic) and raises
`storefleet.endpoints.SettingError` naming the variable at fault, so a bad Deployment fails at
start (`storefleet operator` exits 1 with that message) rather than at the first fleet.

Variables (default):
- STOREFLEET_IMAGE (storefleet/workloads:0.1.0), STOREFLEET_SPARK_IMAGE (storefleet/spark:0.1.0),
  STOREFLEET_IMAGE_PULL_POLICY (IfNotPresent): images of the fleets' pods.
- STOREFLEET_SPARK_VERSION (4.0.0), STOREFLEET_SPARK_MAIN_FILE, STOREFLEET_SPARK_JARS
  (comma-separated local:// URIs), STOREFLEET_SPARK_SERVICE_ACCOUNT (storefleet-spark).
- STOREFLEET_SPARK_{DRIVER,EXECUTOR}_REQUEST_CORES (100m) / _LIMIT_CORES (1): CPU of the Spark
  pods; a fraction lets a fleet's two jobs fit a small node (Spark asks a whole core otherwise).
- STOREFLEET_ENDPOINTS_SECRET (storefleet-endpoints): Secret given to every pod as envFrom.
- STOREFLEET_LOGS_CLAIM / STOREFLEET_CHECKPOINTS_CLAIM (empty: emptyDir): PersistentVolumeClaims,
  in each fleet's namespace, for DataCat logs and the Spark jobs' streaming checkpoints.
- STOREFLEET_EVENTS_TOPIC (events): the Kafka topic the jobs read.
- STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER / STOREFLEET_BONUS_MAX_OFFSETS_PER_TRIGGER
  (0: no bound): the most Kafka records one micro-batch reads, so a catch-up is paced.
- STOREFLEET_INGEST_TOKEN_KEY (required, >= 16 characters): key each fleet's ingest token is
  derived from (storefleet.events.tokens); the webhook holds the same key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from storefleet.endpoints import SettingError

_DNS_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
_OPTIONAL_DNS_NAME = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$"
# Kubernetes CPU quantities as Spark passes them on: "100m", "0.5", "2".
_CPU = r"^([0-9]+m|[0-9]+(\.[0-9]+)?)$"
_TOPIC = r"^[a-zA-Z0-9._-]{1,249}$"

Image = Annotated[str, StringConstraints(min_length=1, pattern=r"^\S+$")]
Cpu = Annotated[str, StringConstraints(pattern=_CPU)]


class OperatorSettings(BaseModel):
    """Validated settings; field aliases are the environment variables."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # Image with the `storefleet` command (simulator, price updater).
    image: Image = Field("storefleet/workloads:0.1.0", alias="STOREFLEET_IMAGE")
    # Spark image: Spark + the storefleet package + the Kafka and JDBC connector jars baked into
    # /opt/spark/jars (DESIGN.md §9: never resolved by spark-submit at submit time).
    spark_image: Image = Field("storefleet/spark:0.1.0", alias="STOREFLEET_SPARK_IMAGE")
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        "IfNotPresent", alias="STOREFLEET_IMAGE_PULL_POLICY")
    spark_version: Annotated[str, StringConstraints(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")] = Field(
        "4.0.0", alias="STOREFLEET_SPARK_VERSION")
    # The Python file spark-submit runs; it calls `storefleet <job>` with the arguments.
    spark_main_file: Annotated[str, StringConstraints(pattern=r"^(local|https?|s3a?)://")] = Field(
        "local:///opt/storefleet/storefleet_main.py", alias="STOREFLEET_SPARK_MAIN_FILE")
    # Extra jars already in the image (local:// URIs). Jars in /opt/spark/jars are on the
    # classpath without being listed.
    spark_jars: tuple[Annotated[str, StringConstraints(pattern=r"^local://")], ...] = Field(
        (), alias="STOREFLEET_SPARK_JARS")
    spark_service_account: Annotated[str, StringConstraints(pattern=_DNS_NAME)] = Field(
        "storefleet-spark", alias="STOREFLEET_SPARK_SERVICE_ACCOUNT")
    spark_driver_request_cores: Cpu = Field("100m", alias="STOREFLEET_SPARK_DRIVER_REQUEST_CORES")
    spark_driver_limit_cores: Cpu = Field("1", alias="STOREFLEET_SPARK_DRIVER_LIMIT_CORES")
    spark_executor_request_cores: Cpu = Field(
        "100m", alias="STOREFLEET_SPARK_EXECUTOR_REQUEST_CORES")
    spark_executor_limit_cores: Cpu = Field("1", alias="STOREFLEET_SPARK_EXECUTOR_LIMIT_CORES")
    # Secret with STOREFLEET_PG_DSN, STOREFLEET_REDIS_URL, STOREFLEET_KAFKA_BOOTSTRAP and
    # STOREFLEET_INGEST_URL, given to every child as envFrom.
    endpoints_secret: Annotated[str, StringConstraints(pattern=_DNS_NAME)] = Field(
        "storefleet-endpoints", alias="STOREFLEET_ENDPOINTS_SECRET")
    # PersistentVolumeClaim shared by simulators (DataCat writers) and the insights job's driver
    # and executors (readers); empty means an emptyDir per pod (insight 9 then sees nothing).
    logs_claim: Annotated[str, StringConstraints(pattern=_OPTIONAL_DNS_NAME)] = Field(
        "", alias="STOREFLEET_LOGS_CLAIM")
    # PersistentVolumeClaim for the Spark jobs' streaming checkpoints: a restarted driver
    # resumes from it; empty means an emptyDir (a restart re-reads the topic).
    checkpoints_claim: Annotated[str, StringConstraints(pattern=_OPTIONAL_DNS_NAME)] = Field(
        "", alias="STOREFLEET_CHECKPOINTS_CLAIM")
    events_topic: Annotated[str, StringConstraints(pattern=_TOPIC)] = Field(
        "events", alias="STOREFLEET_EVENTS_TOPIC")
    insights_max_offsets_per_trigger: int = Field(
        0, ge=0, le=10**9, alias="STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER")
    bonus_max_offsets_per_trigger: int = Field(
        0, ge=0, le=10**9, alias="STOREFLEET_BONUS_MAX_OFFSETS_PER_TRIGGER")
    # Never logged or shown: the key every fleet token is derived from.
    ingest_token_key: Annotated[str, StringConstraints(min_length=16)] = Field(
        ..., alias="STOREFLEET_INGEST_TOKEN_KEY", repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from `environ` (default os.environ): unset or blank variables take their
        default. Raises SettingError naming every variable whose value is refused."""
        env = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        for name, field in cls.model_fields.items():
            alias = field.alias or name
            value = env.get(alias, "").strip()
            if not value:
                continue
            raw[alias] = (tuple(item.strip() for item in value.split(",") if item.strip())
                          if name == "spark_jars" else value)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                alias = str(error["loc"][0]) if error["loc"] else "?"
                shown = "(unset)" if error["type"] == "missing" else repr(raw.get(alias))
                if alias == "STOREFLEET_INGEST_TOKEN_KEY" and error["type"] != "missing":
                    shown = "(hidden)"
                problems.append(f"{alias}: {error['msg']}, got {shown}")
            raise SettingError("invalid operator settings: " + "; ".join(problems)) from None

    @property
    def token_key(self) -> bytes:
        """The ingest token key as bytes, as the webhook reads it (stripped, UTF-8)."""
        return self.ingest_token_key.encode()
