"""Local service processes: start detached, recognise them later, stop exactly those.

A pid alone can be reused by an unrelated process after a reboot or a crash, so each started
process is recorded with its start time from /proc; `down` stops a pid only if both still match.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    """A service could not be started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class ProcessRecord:
    pid: int
    start_ticks: int

    def to_json(self) -> dict[str, int]:
        return {"pid": self.pid, "start_ticks": self.start_ticks}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> ProcessRecord:
        return cls(pid=int(data["pid"]), start_ticks=int(data["start_ticks"]))


# Children started by this process: polled so they are reaped and not mistaken for running.
_children: dict[int, subprocess.Popen[bytes]] = {}


def start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot, or None if the pid does not exist."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # a zombie has exited already
        return None
    return int(fields[19])


def is_running(record: ProcessRecord) -> bool:
    return start_ticks(record.pid) == record.start_ticks


def spawn(
    argv: list[str],
    log_file: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> ProcessRecord:
    """Start `argv` in its own session (so Ctrl-C in a terminal does not reach it)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        except OSError as exc:
            raise ServiceError(f"cannot start {argv[0]}: {exc}") from None
    _children[proc.pid] = proc
    ticks = start_ticks(proc.pid)
    if ticks is None:
        raise ServiceError(f"{argv[0]} exited at once; see {log_file}")
    return ProcessRecord(proc.pid, ticks)


def stop(record: ProcessRecord, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Signal the process group and wait until it is gone; SIGKILL after `timeout`."""
    if not is_running(record):
        return
    _signal_group(record.pid, sig)
    if wait_until(lambda: not is_running(record), timeout):
        return
    _signal_group(record.pid, signal.SIGKILL)
    if not wait_until(lambda: not is_running(record), 10.0):
        raise ServiceError(f"process {record.pid} did not exit after SIGKILL")


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, sig)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds or `timeout` seconds pass; returns whether it held."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return True
        except Exception:  # a probe failing means "not yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(log_file: Path, lines: int = 15) -> str:
    try:
        text = log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])
