"""Where StoreFleet keeps things on one machine: the state directory and the install cache."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_ENV = "STOREFLEET_STATE_DIR"


def state_dir(explicit: str | Path | None = None) -> Path:
    """The local state directory (data, logs, pids); default `.storefleet/` here."""
    chosen = explicit or os.environ.get(STATE_DIR_ENV) or ".storefleet"
    return Path(chosen).expanduser().resolve()


def cache_dir() -> Path:
    """Slow installs (jars, Go-built tools) live here so a second setup is quick."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "storefleet"


def tools_dir() -> Path:
    """The one folder of Go-built tools (helm, kubeconform, kube-apiserver, etcd, ...)."""
    return Path(os.environ.get("STOREFLEET_TOOLS_DIR") or cache_dir() / "bin")


def jars_dir(component: str) -> Path:
    """Jars fetched by Maven for `component` (kafka, spark)."""
    return Path(os.environ.get("STOREFLEET_JARS_DIR") or cache_dir() / "jars") / component
