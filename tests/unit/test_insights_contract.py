"""The Redis contract of the insights and the job's settings (no Spark, no services)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from storefleet.endpoints import SettingError
from storefleet.insights.contract import (
    METRICS,
    InsightValue,
    channel,
    key,
    rfc3339,
)
from storefleet.insights.settings import InsightsSettings

ENDPOINTS = {
    "STOREFLEET_PG_DSN": "postgresql://u:p@127.0.0.1:5432/db",
    "STOREFLEET_REDIS_URL": "redis://127.0.0.1:6379/0",
    "STOREFLEET_KAFKA_BOOTSTRAP": "127.0.0.1:9092",
}


def test_keys_and_channels() -> None:
    assert key("demo-0003", "revenue") == "storefleet:insights:demo-0003:revenue"
    assert key("ALL", "top_viewed") == "storefleet:insights:ALL:top_viewed"
    assert channel("ALL") == "storefleet:insights:ALL"
    assert len(METRICS) == 9


def test_times_are_fixed_width_utc_so_they_compare_as_strings() -> None:
    local = datetime(2026, 11, 26, 17, 4, 30, tzinfo=timezone(timedelta(hours=1)))
    assert rfc3339(local) == "2026-11-26T16:04:30Z"
    assert rfc3339(datetime(2026, 11, 26, 9, 0, 1)) < rfc3339(datetime(2026, 11, 26, 10, 0))


def test_payload_and_notice() -> None:
    start = datetime(2026, 11, 26, 16, 4, tzinfo=UTC)
    value = InsightValue("s1", "revenue", start, start + timedelta(minutes=1), 13.5)
    payload = value.payload(datetime(2026, 11, 26, 16, 4, 31, 120000, tzinfo=UTC))
    assert payload == {
        "scope": "s1", "metric": "revenue", "window_start": "2026-11-26T16:04:00Z",
        "window_end": "2026-11-26T16:05:00Z", "value": 13.5,
        "updated_at": "2026-11-26T16:04:31.120Z",
    }
    assert value.notice() == {"scope": "s1", "metric": "revenue",
                              "key": "storefleet:insights:s1:revenue",
                              "window_start": "2026-11-26T16:04:00Z"}


def test_settings_from_env_and_overrides(tmp_path: Path) -> None:
    env = {**ENDPOINTS, "STOREFLEET_STATE_DIR": str(tmp_path),
           "STOREFLEET_INSIGHTS_TRIGGER_SECONDS": "0.5", "STOREFLEET_EVENTS_TOPIC": "ev2"}
    settings = InsightsSettings.from_env(env, shuffle_partitions=8)
    assert settings.trigger_seconds == 0.5 and settings.shuffle_partitions == 8
    assert settings.events_topic == "ev2"
    assert settings.checkpoint_dir == tmp_path / "insights" / "checkpoints"
    assert settings.logs_dir == tmp_path / "logs"


@pytest.mark.parametrize("raw", ["soon", "-1", "100000"])
def test_bad_settings_name_their_variable(raw: str) -> None:
    env = {**ENDPOINTS, "STOREFLEET_INSIGHTS_WATERMARK_SECONDS": raw}
    with pytest.raises(SettingError, match="STOREFLEET_INSIGHTS_WATERMARK_SECONDS"):
        InsightsSettings.from_env(env)
