"""The operator's settings: defaults, and a bad value refused at start naming its variable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from storefleet.endpoints import SettingError
from storefleet_operator.settings import OperatorSettings

KEY = {"STOREFLEET_INGEST_TOKEN_KEY": "k" * 16}


def test_defaults_and_values_from_the_environment() -> None:
    defaults = OperatorSettings.from_env(KEY)
    assert defaults.events_topic == "events"
    assert defaults.spark_driver_request_cores == "100m"
    assert defaults.logs_claim == ""
    settings = OperatorSettings.from_env({
        **KEY, "STOREFLEET_SPARK_JARS": "local:///a.jar, local:///b.jar",
        "STOREFLEET_LOGS_CLAIM": "sf-logs", "STOREFLEET_IMAGE_PULL_POLICY": "Never",
        "STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER": "20000", "STOREFLEET_EVENTS_TOPIC": " "})
    assert settings.spark_jars == ("local:///a.jar", "local:///b.jar")
    assert settings.logs_claim == "sf-logs"
    assert settings.image_pull_policy == "Never"
    assert settings.insights_max_offsets_per_trigger == 20000
    assert settings.events_topic == "events"  # blank means the default
    assert settings.token_key == b"k" * 16


@pytest.mark.parametrize(("name", "value"), [
    ("STOREFLEET_IMAGE_PULL_POLICY", "Sometimes"),
    ("STOREFLEET_SPARK_DRIVER_REQUEST_CORES", "a lot"),
    ("STOREFLEET_INSIGHTS_MAX_OFFSETS_PER_TRIGGER", "-1"),
    ("STOREFLEET_LOGS_CLAIM", "Not_A_Name"),
    ("STOREFLEET_SPARK_JARS", "https://example.invalid/x.jar"),
    ("STOREFLEET_EVENTS_TOPIC", "no spaces"),
])
def test_a_bad_value_names_its_variable(name: str, value: str) -> None:
    with pytest.raises(SettingError, match=name) as refused:
        OperatorSettings.from_env({**KEY, name: value})
    assert "got" in str(refused.value)


def test_the_token_key_is_required_and_never_shown() -> None:
    with pytest.raises(SettingError, match=r"STOREFLEET_INGEST_TOKEN_KEY.*unset"):
        OperatorSettings.from_env({})
    with pytest.raises(SettingError, match="STOREFLEET_INGEST_TOKEN_KEY") as short:
        OperatorSettings.from_env({"STOREFLEET_INGEST_TOKEN_KEY": "secret-but-short"[:15]})
    assert "secret-but-shor" not in str(short.value)
    assert "k0k1k2k3" not in repr(OperatorSettings.from_env({"STOREFLEET_INGEST_TOKEN_KEY":
                                                            "k0k1k2k3" * 2}))


def test_the_operator_command_exits_at_start_naming_the_variable(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("storefleet")
    done = subprocess.run([str(executable), "operator"], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                           **KEY, "STOREFLEET_IMAGE_PULL_POLICY": "Sometimes"})
    assert done.returncode == 1
    assert "STOREFLEET_IMAGE_PULL_POLICY" in done.stderr
