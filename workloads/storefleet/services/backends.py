"""How each backing service (PostgreSQL, Redis, Kafka) is laid out, started and probed locally.

Each backend knows its folder under the state directory, prepares it once (initdb, Kafka storage
format), gives the command line that runs it in the foreground, and answers whether it serves.
The manager owns the lifecycle; backends hold no process state.
"""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from confluent_kafka.admin import AdminClient

from storefleet.services import prerequisites
from storefleet.services.process import ServiceError, port_in_use

PG_USER = "storefleet"
PG_DATABASE = "storefleet"


@dataclass(frozen=True)
class Secrets:
    """Generated once per state directory; never written in code or printed by `status`."""

    pg_password: str
    redis_password: str
    kafka_cluster_id: str


def new_kafka_cluster_id() -> str:
    """A random Kafka cluster id (base64url of a UUID), never starting with '-': like Kafka's
    own ids, so no command line mistakes it for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Backend:
    name: str
    stop_signal: int = signal.SIGTERM

    def __init__(self, root: Path, port: int, secrets: Secrets) -> None:
        self.root = root / self.name
        self.port = port
        self.secrets = secrets

    @property
    def log_file(self) -> Path:
        return self.root / f"{self.name}.log"

    def check_prerequisites(self) -> None:
        raise NotImplementedError

    def prepare(self) -> None:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def run_as(self) -> str | None:
        return None

    def env(self) -> dict[str, str] | None:
        return None

    def ready(self) -> bool:
        raise NotImplementedError

    def after_ready(self) -> None:
        """One-time work once the service answers (e.g. create the database)."""

    def extra_ports(self) -> list[int]:
        return []

    def endpoint(self) -> str:
        raise NotImplementedError


class Postgres(Backend):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast shutdown": roll back open transactions, then exit cleanly.
    stop_signal = signal.SIGINT

    def check_prerequisites(self) -> None:
        self.bin_dir = prerequisites.postgres_bin_dir()

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def run_as(self) -> str | None:
        # PostgreSQL refuses to run as root; CI and containers often are root.
        if os.geteuid() != 0:
            return None
        for candidate in ("postgres", "nobody"):
            try:
                pwd.getpwnam(candidate)
                return candidate
            except KeyError:
                continue
        raise ServiceError("running as root, and no 'postgres' or 'nobody' user to run PostgreSQL")

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        user = self.run_as()
        if user:
            _chown_tree(self.root, user)
            _check_reachable(self.root, user)
        if (self.data_dir / "PG_VERSION").is_file():
            return
        shutil.rmtree(self.data_dir, ignore_errors=True)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(self.secrets.pg_password + "\n")
        pwfile.chmod(0o600)
        if user:
            shutil.chown(pwfile, user, user)
        try:
            result = subprocess.run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    PG_USER,
                    "--pwfile",
                    str(pwfile),
                    "--auth",
                    "scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
                check=False,
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            raise ServiceError(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")

    def argv(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            # No unix socket: its path length is limited and clients here all use TCP.
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=256MB",
        ]

    def endpoint(self) -> str:
        return (
            f"postgresql://{PG_USER}:{self.secrets.pg_password}@127.0.0.1:{self.port}/{PG_DATABASE}"
        )

    def _admin_dsn(self) -> str:
        return f"postgresql://{PG_USER}:{self.secrets.pg_password}@127.0.0.1:{self.port}/postgres"

    def ready(self) -> bool:
        with psycopg.connect(self._admin_dsn(), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def after_ready(self) -> None:
        with psycopg.connect(self._admin_dsn(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (PG_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')


class Redis(Backend):
    name = "redis"

    def check_prerequisites(self) -> None:
        self.binary = prerequisites.redis_server()

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.root / "redis.conf"
        # The password goes in a 0600 file, not on the command line where `ps` shows it.
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    f"dir {self.root}",
                    "daemonize no",
                    "appendonly no",
                    'save ""',
                    f"requirepass {self.secrets.redis_password}",
                    "",
                ]
            )
        )
        config.chmod(0o600)

    def argv(self) -> list[str]:
        return [self.binary, str(self.root / "redis.conf")]

    def endpoint(self) -> str:
        return f"redis://default:{self.secrets.redis_password}@127.0.0.1:{self.port}/0"

    def ready(self) -> bool:
        client = redis.Redis.from_url(self.endpoint(), socket_timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()


class Kafka(Backend):
    """A single-node KRaft broker (broker and controller in one JVM)."""

    name = "kafka"

    def __init__(
        self, root: Path, port: int, secrets: Secrets, controller_port: int, partitions: int = 6
    ) -> None:
        super().__init__(root, port, secrets)
        self.controller_port = controller_port
        self.partitions = partitions

    def check_prerequisites(self) -> None:
        self.java = prerequisites.java()
        self.classpath = prerequisites.kafka_classpath()

    def extra_ports(self) -> list[int]:
        return [self.controller_port]

    @property
    def config_file(self) -> Path:
        return self.root / "server.properties"

    def _java(self, main: str, *args: str, heap: str = "-Xmx256m") -> list[str]:
        return [
            self.java,
            heap,
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            "-cp",
            self.classpath,
            main,
            *args,
        ]

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root / "data"
        self.config_file.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    f"num.partitions={self.partitions}",
                    # Topics are created on purpose (storefleet.topics), never by a typo.
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        (self.root / "log4j2.properties").write_text(
            "\n".join(
                [
                    "status = warn",
                    "appender.out.type = Console",
                    "appender.out.name = out",
                    "appender.out.layout.type = PatternLayout",
                    "appender.out.layout.pattern = [%d] %p %m (%c)%n",
                    "rootLogger.level = warn",
                    "rootLogger.appenderRef.out.ref = out",
                    "logger.kafka.name = kafka",
                    "logger.kafka.level = info",
                    "",
                ]
            )
        )
        if (data / "meta.properties").is_file():
            return
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                f"--cluster-id={self.secrets.kafka_cluster_id}",
                "--config",
                str(self.config_file),
                "--ignore-formatted",
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed: {result.stderr or result.stdout}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_file), heap="-Xmx1g")

    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready(self) -> bool:
        # Probe the port first: librdkafka logs every refused connection to stderr.
        if not port_in_use(self.port):
            return False
        admin = AdminClient({"bootstrap.servers": self.endpoint(), "socket.timeout.ms": 2000})
        metadata = admin.list_topics(timeout=2)
        return len(metadata.brokers) >= 1


def _chown_tree(root: Path, user: str) -> None:
    for folder, _dirs, files in os.walk(root):
        shutil.chown(folder, user, user)
        for name in files:
            shutil.chown(Path(folder) / name, user, user)


def _check_reachable(folder: Path, user: str) -> None:
    """The unprivileged user must be able to walk down to `folder` (e.g. not under /root)."""
    entry = pwd.getpwnam(user)
    for parent in [*reversed(folder.parents), folder]:
        st = parent.stat()
        if st.st_uid == entry.pw_uid:
            continue
        if not st.st_mode & 0o001:
            raise ServiceError(
                f"PostgreSQL runs as user '{user}' (it refuses root) and cannot enter {parent}; "
                f"choose a state directory it can reach with --state-dir, "
                f"or run `chmod o+x {parent}`"
            )
