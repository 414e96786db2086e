"""Start, check and stop the local PostgreSQL, Redis and Kafka under one state directory.

`up` is idempotent: services already running (as recorded in `<state>/services.json` and
still answering) are left alone. `down` stops exactly the processes `up` recorded. After `up`
the endpoints are in `<state>/services.env`, ready for `eval` or for child components.
"""

from __future__ import annotations

import json
import os
import secrets as secrets_module
from dataclasses import dataclass, field
from pathlib import Path

from storefleet.endpoints import Endpoints
from storefleet.services.backends import (
    Backend,
    Kafka,
    Postgres,
    Redis,
    Secrets,
    new_kafka_cluster_id,
)
from storefleet.services.process import (
    ProcessRecord,
    ServiceError,
    free_port,
    is_running,
    log_tail,
    port_in_use,
    spawn,
    stop,
    wait_until,
)

SERVICES = ("postgres", "redis", "kafka")
DEFAULT_PORTS = {"postgres": 15432, "redis": 16379, "kafka": 19092, "kafka_controller": 19093}
PORT_ENV = {
    "postgres": "STOREFLEET_PG_PORT",
    "redis": "STOREFLEET_REDIS_PORT",
    "kafka": "STOREFLEET_KAFKA_PORT",
    "kafka_controller": "STOREFLEET_KAFKA_CONTROLLER_PORT",
}
PORT_FLAG = {
    "postgres": "--pg-port",
    "redis": "--redis-port",
    "kafka": "--kafka-port",
    "kafka_controller": "--kafka-controller-port",
}
STOP_SIGNAL = {
    "postgres": Postgres.stop_signal,
    "redis": Redis.stop_signal,
    "kafka": Kafka.stop_signal,
}
READY_TIMEOUT = {"postgres": 60.0, "redis": 30.0, "kafka": 120.0}


@dataclass
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    port: int | None
    endpoint: str | None
    log_file: str


@dataclass
class ServicesManager:
    state_dir: Path
    # Requested ports; None means "what was used last time, else the default"; 0 means any free.
    requested_ports: dict[str, int | None] = field(default_factory=dict)
    kafka_partitions: int = 6

    @property
    def record_file(self) -> Path:
        return self.state_dir / "services.json"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "services.env"

    # -- persistent state -------------------------------------------------------------------

    def _load_record(self) -> dict:
        try:
            return json.loads(self.record_file.read_text())
        except FileNotFoundError:
            return {"ports": {}, "processes": {}}

    def _save_record(self, record: dict) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(self.record_file)

    def _secrets(self) -> Secrets:
        path = self.state_dir / "secrets.json"
        if path.is_file():
            return Secrets(**json.loads(path.read_text()))
        generated = Secrets(
            pg_password=secrets_module.token_urlsafe(18),
            redis_password=secrets_module.token_urlsafe(18),
            kafka_cluster_id=new_kafka_cluster_id(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(generated.__dict__, out)
        return generated

    def _ports(self, record: dict) -> dict[str, int]:
        ports: dict[str, int] = {}
        for key, default in DEFAULT_PORTS.items():
            requested = self.requested_ports.get(key)
            if requested is None:
                env_value = os.environ.get(PORT_ENV[key], "").strip()
                if env_value:
                    if env_value == "auto":
                        requested = 0
                    elif env_value.isdigit() and int(env_value) < 65536:
                        requested = int(env_value)
                    else:
                        raise ServiceError(
                            f"{PORT_ENV[key]} must be a port number or 'auto', got {env_value!r}"
                        )
            if requested is None:
                requested = record["ports"].get(key, default)
            ports[key] = requested or free_port()
        return ports

    def _backends(self, ports: dict[str, int]) -> dict[str, Backend]:
        secrets = self._secrets()
        return {
            "postgres": Postgres(self.state_dir, ports["postgres"], secrets),
            "redis": Redis(self.state_dir, ports["redis"], secrets),
            "kafka": Kafka(
                self.state_dir,
                ports["kafka"],
                secrets,
                ports["kafka_controller"],
                self.kafka_partitions,
            ),
        }

    # -- lifecycle --------------------------------------------------------------------------

    def up(self, migrate: bool = True, create_topics: bool = True) -> Endpoints:
        """Start whatever is not running, wait until all answer, migrate, create topics."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        record = self._load_record()
        running = {
            name: ProcessRecord.from_json(proc)
            for name, proc in record["processes"].items()
            if is_running(ProcessRecord.from_json(proc))
        }
        if running:
            # Keep the ports the running services have; only stopped ones may move.
            for name in running:
                for key in (name, f"{name}_controller"):
                    if key in record["ports"] and self.requested_ports.get(key) is None:
                        self.requested_ports[key] = record["ports"][key]
        ports = self._ports(record)
        backends = self._backends(ports)
        for backend in backends.values():
            backend.check_prerequisites()

        to_start = []
        for name in backends:
            if name in running and ports[name] == record["ports"].get(name):
                continue
            if name in running:
                raise ServiceError(
                    f"{name} already runs on port {record['ports'][name]}; run "
                    f"`storefleet services down` before moving it to port {ports[name]}"
                )
            to_start.append(name)
        # Check every port before starting anything, so a refusal changes nothing.
        for name in to_start:
            backend = backends[name]
            for key, port in [(name, backend.port)] + [
                (f"{name}_controller", p) for p in backend.extra_ports()
            ]:
                if port_in_use(port):
                    raise ServiceError(
                        f"port {port} for {name} is already in use by another process; choose "
                        f"another with {PORT_FLAG[key]} or {PORT_ENV[key]} (0 or 'auto' picks "
                        f"a free one)"
                    )
        for name in to_start:
            backend = backends[name]
            backend.prepare()
            proc = spawn(
                backend.argv(),
                backend.log_file,
                env=backend.env(),
                cwd=backend.root,
                user=backend.run_as(),
            )
            running[name] = proc
            record["processes"][name] = proc.to_json()
            record["ports"].update({k: v for k, v in ports.items() if k.startswith(name)})
            self._save_record(record)

        for name, backend in backends.items():
            proc = running[name]
            ok = wait_until(
                lambda b=backend, p=proc: not is_running(p) or b.ready(), READY_TIMEOUT[name]
            )
            if not ok or not is_running(proc):
                raise ServiceError(
                    f"{name} did not come up on port {backend.port} "
                    f"(log {backend.log_file}):\n{log_tail(backend.log_file)}"
                )
            backend.after_ready()

        endpoints = Endpoints(
            pg_dsn=backends["postgres"].endpoint(),
            redis_url=backends["redis"].endpoint(),
            kafka_bootstrap=backends["kafka"].endpoint(),
        )
        self._write_env(endpoints)
        if migrate:
            from storefleet.db.migrate import apply_migrations

            apply_migrations(endpoints.pg_dsn)
        if create_topics:
            from storefleet.topics import ensure_topics, platform_topics

            ensure_topics(endpoints.kafka_bootstrap, platform_topics(self.kafka_partitions))
        return endpoints

    def down(self) -> list[str]:
        """Stop the processes `up` started, Kafka first; returns the names stopped."""
        record = self._load_record()
        stopped = []
        for name in reversed(SERVICES):
            raw = record["processes"].get(name)
            if raw is None:
                continue
            proc = ProcessRecord.from_json(raw)
            if is_running(proc):
                stop(proc, STOP_SIGNAL[name], timeout=60.0)
                stopped.append(name)
            del record["processes"][name]
            self._save_record(record)
        self.env_file.unlink(missing_ok=True)
        return stopped

    def status(self) -> list[ServiceStatus]:
        record = self._load_record()
        result = []
        for name in SERVICES:
            raw = record["processes"].get(name)
            proc = ProcessRecord.from_json(raw) if raw else None
            running = proc is not None and is_running(proc)
            port = record["ports"].get(name)
            result.append(
                ServiceStatus(
                    name=name,
                    running=running,
                    pid=proc.pid if running and proc else None,
                    port=port,
                    endpoint=f"127.0.0.1:{port}" if running else None,
                    log_file=str(self.state_dir / name / f"{name}.log"),
                )
            )
        return result

    def endpoints(self) -> Endpoints:
        """The endpoints of running services (raises if they are not all running)."""
        statuses = self.status()
        missing = [s.name for s in statuses if not s.running]
        if missing:
            raise ServiceError(
                f"not running: {', '.join(missing)}; start them with `storefleet services up`"
            )
        record = self._load_record()
        backends = self._backends({**DEFAULT_PORTS, **record["ports"]})
        return Endpoints(
            pg_dsn=backends["postgres"].endpoint(),
            redis_url=backends["redis"].endpoint(),
            kafka_bootstrap=backends["kafka"].endpoint(),
        )

    def _write_env(self, endpoints: Endpoints) -> None:
        lines = [f"export {key}='{value}'" for key, value in endpoints.as_env().items()]
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
