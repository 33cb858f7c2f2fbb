"""Shared test setup: no test may ever reach a real AWS account."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "yoloops-tests")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "yoloops-tests")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from yoloops_core.aws import reset_clients
    from yoloops_core.config import get_settings

    reset_clients()
    get_settings.cache_clear()
    yield
    reset_clients()
    get_settings.cache_clear()


def load_event(name: str) -> dict:
    """Load a fixture from events/ (the same file `sam local invoke -e` uses)."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event():
    return load_event

