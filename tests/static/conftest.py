"""Fixtures for the static checks: the parsed template, the ASL, the offline SAM module."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load_sam_offline():
    # scripts/ is not a package (it is run by make); load the module from its file.
    spec = importlib.util.spec_from_file_location("sam_offline", ROOT / "scripts" / "sam_offline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sam_offline():
    return _load_sam_offline()


@pytest.fixture(scope="session")
def template(sam_offline) -> dict[str, Any]:
    return sam_offline.load_template(ROOT / "template.yaml")


@pytest.fixture(scope="session")
def resources(template) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="session")
def asl_text() -> str:
    return (ROOT / "statemachine" / "training.asl.json").read_text()


@pytest.fixture(scope="session")
def architecture() -> str:
    return (ROOT / "docs" / "architecture.md").read_text()


@pytest.fixture(scope="session")
def function_table(architecture) -> dict[str, str]:
    """logical id -> functions/<dir>, from the Functions table in docs/architecture.md."""
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (\w+Function) \|", architecture, flags=re.M)
    return {logical_id: directory for directory, logical_id in rows}


@pytest.fixture(scope="session")
def samconfig() -> dict[str, Any]:
    return tomllib.loads((ROOT / "samconfig.toml").read_text())
