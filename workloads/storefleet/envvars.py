"""Typed settings from environment variables; a bad value is refused naming its variable.

Each component's settings module reads its variables through these, so every component
fails the same way at start: `STOREFLEET_X must be ..., got '...'`.
"""

from __future__ import annotations

from collections.abc import Mapping

from storefleet.endpoints import SettingError


def env_int(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingError(f"{name} must be between {low} and {high}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingError(f"{name} must be between {low:g} and {high:g}, got {raw}")
    return value


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be true or false, got {raw!r}")
