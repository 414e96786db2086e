"""`storefleet services up|down|status` on real PostgreSQL, Redis and Kafka processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis
from confluent_kafka.admin import AdminClient

from storefleet.services.process import ProcessRecord, is_running
from tests.conftest import make_state_dir

STOREFLEET = str(Path(sys.executable).parent / "storefleet")
FREE_PORTS = ["--pg-port", "0", "--redis-port", "0", "--kafka-port", "0",
              "--kafka-controller-port", "0"]  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STOREFLEET, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def processes_under(state_dir: Path) -> list[str]:
    """Command lines of live processes that mention the state directory."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = (proc / "status").read_text()
        except OSError:
            continue
        if str(state_dir) in cmdline and "\nState:\tZ" not in status:
            found.append(cmdline)
    return found


@pytest.fixture
def state_dir():
    folder = make_state_dir("storefleet-svc-")
    yield folder
    run("services", "down", "--state-dir", str(folder))
    shutil.rmtree(folder, ignore_errors=True)


def endpoints_from_env_command(state_dir: Path) -> dict[str, str]:
    out = run("services", "env", "--state-dir", str(state_dir))
    assert out.returncode == 0, out.stderr
    values = {}
    for line in out.stdout.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        values[key] = value.strip("'")
    return values


@pytest.mark.services
def test_up_twice_status_and_down_leaves_nothing(state_dir: Path) -> None:
    first = run("services", "up", "--state-dir", str(state_dir), *FREE_PORTS,
                "--kafka-partitions", "4")  # fmt: skip
    assert first.returncode == 0, first.stderr + first.stdout
    record = json.loads((state_dir / "services.json").read_text())
    procs = {n: ProcessRecord.from_json(p) for n, p in record["processes"].items()}
    assert set(procs) == {"postgres", "redis", "kafka"}
    assert all(is_running(p) for p in procs.values())

    env = endpoints_from_env_command(state_dir)
    # Each service answers its ordinary client.
    psql = subprocess.run(
        ["psql", env["STOREFLEET_PG_DSN"], "-tAc",
         "SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace"
         " WHERE nspname IN ('conta_verde', 'analytics')"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert psql.stdout.strip() == "analytics,conta_verde", psql.stderr
    ping = subprocess.run(
        ["redis-cli", "-u", env["STOREFLEET_REDIS_URL"], "--no-auth-warning", "ping"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert ping.stdout.strip() == "PONG", ping.stderr
    topics = AdminClient({"bootstrap.servers": env["STOREFLEET_KAFKA_BOOTSTRAP"]}).list_topics(
        timeout=10
    )
    assert {"events", "coupons"} <= set(topics.topics)
    assert len(topics.topics["events"].partitions) == 4
    assert len(topics.topics["coupons"].partitions) == 2

    # A second `up` is a no-op: same processes, same ports, data kept.
    with psycopg.connect(env["STOREFLEET_PG_DSN"], autocommit=True) as conn:
        conn.execute("CREATE TABLE public.marker (x int)")
    again = run("services", "up", "--state-dir", str(state_dir))
    assert again.returncode == 0, again.stderr
    record_again = json.loads((state_dir / "services.json").read_text())
    assert record_again["processes"] == record["processes"]
    assert endpoints_from_env_command(state_dir) == env

    status = run("services", "status", "--state-dir", str(state_dir))
    assert status.returncode == 0
    for name in ("postgres", "redis", "kafka"):
        assert f"{name}" in status.stdout and "stopped" not in status.stdout

    down = run("services", "down", "--state-dir", str(state_dir))
    assert down.returncode == 0, down.stderr
    assert "kafka" in down.stdout and "postgres" in down.stdout and "redis" in down.stdout
    assert not any(is_running(p) for p in procs.values())
    assert processes_under(state_dir) == []
    stopped = run("services", "status", "--state-dir", str(state_dir))
    assert stopped.returncode == 1 and stopped.stdout.count("stopped") == 3
    assert "nothing was running" in run("services", "down", "--state-dir", str(state_dir)).stdout

    # Up after down resumes the same data (the marker table) on the recorded ports.
    resumed = run("services", "up", "--state-dir", str(state_dir))
    assert resumed.returncode == 0, resumed.stderr
    with psycopg.connect(endpoints_from_env_command(state_dir)["STOREFLEET_PG_DSN"]) as conn:
        assert conn.execute("SELECT to_regclass('public.marker')").fetchone() == ("marker",)
    redis.Redis.from_url(endpoints_from_env_command(state_dir)["STOREFLEET_REDIS_URL"]).close()


@pytest.mark.parametrize(
    ("variable", "value", "named", "install"),
    [
        ("STOREFLEET_JARS_DIR", "/nonexistent/jars", "Apache Kafka", "tools/kafka/install.sh"),
        ("STOREFLEET_PG_BIN", "/nonexistent/bin", "PostgreSQL server binaries", "apt-get install"),
        ("STOREFLEET_REDIS_SERVER", "/nonexistent/redis-server", "redis-server", "apt-get"),
        ("JAVA_HOME", "/nonexistent/jdk", "Java", "openjdk"),
    ],
)
def test_missing_prerequisite_is_named_with_its_install_command(
    state_dir: Path, variable: str, value: str, named: str, install: str
) -> None:
    out = run("services", "up", "--state-dir", str(state_dir), *FREE_PORTS,
              env={**os.environ, variable: value})  # fmt: skip
    assert out.returncode != 0
    assert named in out.stderr and install in out.stderr, out.stderr
    assert "make setup" in out.stderr
    assert processes_under(state_dir) == []


def test_port_already_taken_is_a_clear_error_and_starts_nothing(state_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        out = run("services", "up", "--state-dir", str(state_dir), *FREE_PORTS,
                  "--redis-port", str(taken))  # fmt: skip
    assert out.returncode != 0
    assert f"port {taken} for redis is already in use" in out.stderr, out.stderr
    assert "--redis-port" in out.stderr
    assert processes_under(state_dir) == []


def test_bad_port_setting_names_the_variable(state_dir: Path) -> None:
    out = run("services", "up", "--state-dir", str(state_dir),
              env={**os.environ, "STOREFLEET_KAFKA_PORT": "ninety"})  # fmt: skip
    assert out.returncode != 0
    assert "STOREFLEET_KAFKA_PORT" in out.stderr and "'ninety'" in out.stderr


def test_kafka_cluster_id_starting_with_a_dash_is_formatted(state_dir: Path) -> None:
    # Base64url ids may start with '-', which the storage tool's parser took for an option.
    secrets = {"pg_password": "p" * 20, "redis_password": "r" * 20,
               "kafka_cluster_id": "-" + "A" * 21}  # fmt: skip
    (state_dir / "secrets.json").write_text(json.dumps(secrets))
    out = run("services", "up", "--state-dir", str(state_dir), *FREE_PORTS)
    assert out.returncode == 0, out.stderr
    assert "cluster.id=-AAAAAAAAAAAAAAAAAAAAA" in (
        state_dir / "kafka" / "data" / "meta.properties"
    ).read_text()


def test_generated_cluster_ids_never_start_with_a_dash() -> None:
    from storefleet.services.backends import new_kafka_cluster_id

    ids = {new_kafka_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not any(i.startswith("-") for i in ids)
    assert all(len(i) == 22 for i in ids)
