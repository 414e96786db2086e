"""Static checks of images/**/Dockerfile: every base is a build argument whose default is an
official image (so Docker users get the official bases), and every final stage runs non-root."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import REPO

DOCKERFILES = sorted((REPO / "images").rglob("Dockerfile"))


def parse(path: Path) -> tuple[dict[str, str], list[tuple[str, str | None]], list[str]]:
    """-> (global ARG defaults, [(FROM image, stage name)], USER values of the last stage)."""
    args: dict[str, str] = {}
    stages: list[tuple[str, str | None]] = []
    users: list[str] = []
    for line in path.read_text().replace("\\\n", " ").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        keyword = words[0].upper()
        if keyword == "ARG" and not stages and "=" in words[1]:
            name, default = words[1].split("=", 1)
            args[name] = default
        elif keyword == "FROM":
            stage = words[3] if len(words) > 3 and words[2].upper() == "AS" else None
            stages.append((words[1], stage))
            users = []
        elif keyword == "USER":
            users.append(words[1])
    return args, stages, users


def test_there_is_a_dockerfile_per_image():
    names = {p.parent.relative_to(REPO / "images").as_posix() for p in DOCKERFILES}
    assert names == {
        "workloads", "operator", "dashboard", "spark", "spark-operator",
        "ci/kafka", "ci/postgresql", "ci/redis",
    }  # fmt: skip


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_bases_are_build_arguments_defaulting_to_official_images(path: Path):
    args, stages, users = parse(path)
    assert stages, f"{path}: no FROM"
    earlier: set[str] = set()
    for image, stage in stages:
        if image not in earlier:
            match = re.fullmatch(r"\$\{(\w+)\}", image)
            assert match, f"{path}: FROM {image} is not a build argument"
            default = args.get(match.group(1), "")
            assert default and not default.startswith("localhost/"), (
                f"{path}: {match.group(1)} must default to an official image, not {default!r}"
            )
        if stage:
            earlier.add(stage)
    assert users and users[-1].split(":")[0] not in {"0", "root"}, f"{path}: final stage is root"
