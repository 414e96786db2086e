"""Smoke checks of the test cluster's backing-service images (images/ci), run the way the chart's
StatefulSets run them: same users, environment, commands, data folders and read-only roots."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.conftest import wait_for

from .conftest import podman

pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]


def test_postgresql_initialises_utf8_and_checks_passwords(image, container, shared_dir: Path):
    password = secrets.token_hex(12)
    name = container(
        image("postgresql"),
        user="999:999",
        read_only=True,
        # emptyDir volumes in the chart: world-writable, like these.
        tmpfs=("/var/run/postgresql:mode=1777", "/tmp:mode=1777"),
        env={
            "POSTGRES_USER": "storefleet",
            "POSTGRES_DB": "fleetdb",
            "POSTGRES_PASSWORD": password,
            "PGDATA": "/var/lib/postgresql/data/pgdata",
        },
        volumes=(f"{shared_dir}:/var/lib/postgresql/data",),
    )
    # The chart's readiness probe, verbatim.
    probe = (
        "exec",
        name,
        "sh",
        "-c",
        'pg_isready -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB"',
    )
    wait_for(lambda: podman(*probe, check=False).returncode == 0, 120, "pg_isready")

    def sql(query: str, pw: str = password) -> subprocess.CompletedProcess:
        return podman(
            "exec",
            "-e",
            f"PGPASSWORD={pw}",
            name,
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "storefleet",
            "-d",
            "fleetdb",
            "-tAc",
            query,
            check=False,
        )

    done = sql(
        "SELECT current_setting('server_encoding'), current_setting('lc_collate'), "
        "current_database(), upper('ção')"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "UTF8|C.UTF-8|fleetdb|ÇÃO"
    refused = sql("SELECT 1", pw=password + "x")
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr
    assert (shared_dir / "pgdata" / "PG_VERSION").is_file()


def test_redis_answers_with_the_chart_command(image, container, shared_dir: Path):
    password = secrets.token_hex(12)
    name = container(
        image("redis"),
        "sh",
        "-c",
        "exec valkey-server --port 6379 --dir /data --appendonly yes"
        ' --requirepass "$REDIS_PASSWORD"',
        user="999:999",
        read_only=True,
        env={"REDIS_PASSWORD": password},
        volumes=(f"{shared_dir}:/data",),
    )
    # The chart's readiness probe, verbatim.
    probe = (
        "exec",
        name,
        "sh",
        "-c",
        'REDISCLI_AUTH="$REDIS_PASSWORD" valkey-cli -p 6379 ping | grep -q PONG',
    )
    wait_for(lambda: podman(*probe, check=False).returncode == 0, 60, "valkey-cli ping")
    cli = ("exec", "-e", f"REDISCLI_AUTH={password}", name, "valkey-cli")
    assert podman(*cli, "SET", "smoke", "42").stdout.strip() == "OK"
    assert podman(*cli, "GET", "smoke").stdout.strip() == "42"
    assert "NOAUTH" in podman("exec", name, "valkey-cli", "GET", "smoke").stdout
    wait_for(lambda: any(shared_dir.rglob("*.aof*")), 30, "append-only file in /data")


def test_kafka_formats_kraft_storage_starts_and_creates_topics(image, container, shared_dir: Path):
    cluster_id = "MkU3OEVBNTcwNTJENDM2Qk"
    # The environment of the chart's StatefulSet (the bootstrap advertised as localhost here).
    env = {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:9092",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_LOG_DIRS": "/var/lib/kafka/data/logs",
        "KAFKA_NUM_PARTITIONS": "6",
        "KAFKA_LOG_RETENTION_HOURS": "168",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_HEAP_OPTS": "-Xms256m -Xmx256m",
    }
    name = container(
        image("kafka"), user="1000:1000", env=env, volumes=(f"{shared_dir}:/var/lib/kafka/data",)
    )
    topics = ("exec", name, "kafka-topics.sh", "--bootstrap-server", "localhost:9092")
    wait_for(
        lambda: (
            podman(
                *topics, "--create", "--if-not-exists", "--topic", "smoke", timeout=120, check=False
            ).returncode
            == 0
        ),
        180,
        "topic created",
    )
    described = podman(*topics, "--describe", "--topic", "smoke", timeout=120)
    assert "PartitionCount: 6" in described.stdout
    meta = (shared_dir / "logs" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta
    config = podman("exec", name, "cat", "/opt/kafka/config/server.properties").stdout
    assert "log.retention.hours=168" in config.splitlines()
    assert not any(line.startswith("heap.opts") for line in config.splitlines())
