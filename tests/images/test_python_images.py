"""Smoke checks of the Python images (workloads, operator, dashboard): each starts its command as
a non-root user with no network."""

from __future__ import annotations

import pytest

from storefleet.cli import COMMANDS

from .conftest import run

pytestmark = [pytest.mark.images, pytest.mark.timeout(3600)]


def test_workloads_image_runs_the_storefleet_command_as_non_root(image):
    ref = image("workloads")
    done = run(ref, "--help")
    assert done.returncode == 0, done.stderr
    # Every subcommand the package declares is listed by the image's entrypoint.
    for command in COMMANDS:
        assert command in done.stdout
    uid = run(ref, "-c", "import os; print(os.getuid())", entrypoint="python")
    assert uid.stdout.strip() == "10001", uid.stderr


def test_workloads_image_starts_a_component_command(image):
    done = run(image("workloads"), "webhook", "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_operator_image_answers_help(image):
    done = run(image("operator"), "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "operator" in done.stdout


def test_dashboard_image_imports_the_panel_app(image):
    code = (
        "import panel, storefleet_dashboard.command as c;"
        " print(c.dashboard.name, panel.__version__)"
    )
    done = run(image("dashboard"), "-c", code, entrypoint="python")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "dashboard"
    uid = run(image("dashboard"), "-u", entrypoint="id")
    assert uid.stdout.strip() == "10001"
