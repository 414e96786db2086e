"""Webhook and persister settings from the environment."""

from __future__ import annotations

import pytest

from storefleet.endpoints import SettingError
from storefleet.ingest.settings import IngestSettings
from storefleet.persister.settings import PersisterSettings

BASE = {"STOREFLEET_INGEST_TOKEN": "a-long-enough-token", "STOREFLEET_KAFKA_BOOTSTRAP": "k:9092"}


def test_token_is_required_and_named():
    with pytest.raises(SettingError, match="STOREFLEET_INGEST_TOKEN"):
        IngestSettings.from_env({"STOREFLEET_KAFKA_BOOTSTRAP": "k:9092"})
    with pytest.raises(SettingError, match="STOREFLEET_INGEST_TOKEN"):
        IngestSettings.from_env({**BASE, "STOREFLEET_INGEST_TOKEN": "  "})


def test_defaults_and_overrides():
    settings = IngestSettings.from_env(BASE)
    assert (settings.topic, settings.port, settings.workers) == ("events", 8080, 1)
    assert settings.legacy_enabled
    settings = IngestSettings.from_env(
        {**BASE, "STOREFLEET_EVENTS_TOPIC": "t", "STOREFLEET_INGEST_LEGACY": "off",
         "STOREFLEET_INGEST_MAX_EVENTS": "5"}
    )
    assert (settings.topic, settings.legacy_enabled, settings.max_events) == ("t", False, 5)


def test_token_is_not_in_repr():
    assert "a-long-enough-token" not in repr(IngestSettings.from_env(BASE))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STOREFLEET_INGEST_PORT", "http"),
        ("STOREFLEET_INGEST_PORT", "70000"),
        ("STOREFLEET_INGEST_LEGACY", "maybe"),
        ("STOREFLEET_INGEST_WORKERS", "0"),
    ],
)
def test_bad_values_name_their_variable(name, value):
    with pytest.raises(SettingError, match=name):
        IngestSettings.from_env({**BASE, name: value})


def test_persister_needs_both_endpoints():
    with pytest.raises(SettingError, match="STOREFLEET_PG_DSN"):
        PersisterSettings.from_env({"STOREFLEET_KAFKA_BOOTSTRAP": "k:9092"})
    settings = PersisterSettings.from_env(
        {"STOREFLEET_KAFKA_BOOTSTRAP": "k:9092", "STOREFLEET_PG_DSN": "postgresql://u:secret@h/d",
         "STOREFLEET_PERSISTER_BATCH_MAX": "100"}
    )
    assert settings.batch_max == 100 and "secret" not in repr(settings)
    with pytest.raises(SettingError, match="STOREFLEET_PERSISTER_BATCH_WAIT_S"):
        PersisterSettings.from_env(
            {"STOREFLEET_KAFKA_BOOTSTRAP": "k", "STOREFLEET_PG_DSN": "d",
             "STOREFLEET_PERSISTER_BATCH_WAIT_S": "soon"}
        )
