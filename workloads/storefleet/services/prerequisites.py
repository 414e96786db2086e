"""Find the programs and jars the local services need; say how to install what is missing."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

from storefleet.paths import jars_dir
from storefleet.services.process import ServiceError

KAFKA_VERSION = "4.1.1"


class MissingPrerequisite(ServiceError):
    def __init__(self, what: str, install: str) -> None:
        super().__init__(f"{what} not found; install it with: {install}")
        self.what = what
        self.install = install


def postgres_bin_dir() -> Path:
    """The folder holding `initdb` and `postgres` (Debian keeps them off PATH)."""
    override = os.environ.get("STOREFLEET_PG_BIN")
    if override:
        candidates = [override]
    else:
        candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        initdb = shutil.which("initdb")
        if initdb:
            candidates.append(str(Path(initdb).resolve().parent))
    for folder in candidates:
        if folder and (Path(folder) / "initdb").is_file() and (Path(folder) / "postgres").is_file():
            return Path(folder)
    raise MissingPrerequisite(
        "PostgreSQL server binaries (initdb, postgres)",
        "sudo apt-get install -y postgresql (or set STOREFLEET_PG_BIN), or run `make setup`",
    )


def redis_server() -> str:
    found = os.environ.get("STOREFLEET_REDIS_SERVER") or shutil.which("redis-server")
    if not found or not Path(found).is_file():
        raise MissingPrerequisite(
            "redis-server", "sudo apt-get install -y redis-server, or run `make setup`"
        )
    return found


def java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    found = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not found or not Path(found).is_file():
        raise MissingPrerequisite(
            "Java (a JDK or JRE 17+ for the Kafka broker)",
            "sudo apt-get install -y openjdk-17-jre-headless, or run `make setup`",
        )
    return found


def kafka_classpath() -> str:
    folder = jars_dir("kafka") / KAFKA_VERSION
    if not (folder / ".complete").is_file() or not list(folder.glob("kafka_2.13-*.jar")):
        raise MissingPrerequisite(
            f"Apache Kafka {KAFKA_VERSION} jars in {folder}",
            "tools/kafka/install.sh (Maven), or run `make setup`",
        )
    return str(folder / "*")
