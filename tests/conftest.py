"""Shared test setup: no test may ever reach a real AWS account."""

from __future__ import annotations

import json
import logging
import sys
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


class _ProcessStdout:
    """The process's stdout (file descriptor 1, which pytest's fd capture redirects per test), flushed at
    every line so no line lands in a later test's capture. Not sys.stdout: a CLI under CliRunner swaps that
    for its own output, and a function's log line is not the CLI's output."""

    def write(self, text: str) -> int:
        written = sys.__stdout__.write(text)
        sys.__stdout__.flush()
        return written

    def flush(self) -> None:
        sys.__stdout__.flush()


@pytest.fixture(autouse=True)
def _powertools_logs_follow_capture():
    """powertools binds its handler to the sys.stdout of the moment a service logger is first made and
    keeps it for the process; under pytest that is one test's capture, closed once that test ends, so every
    later function log line was lost ("I/O operation on closed file"). Point them at the process's stdout."""

    def repoint() -> None:
        for logger in list(logging.Logger.manager.loggerDict.values()):
            for handler in getattr(logger, "handlers", []):
                if type(handler) is logging.StreamHandler and not isinstance(handler.stream, _ProcessStdout) \
                        and handler.stream is not sys.stderr:
                    with handler.lock:  # not setStream: it flushes the old stream, which may be closed
                        handler.stream = _ProcessStdout()

    repoint()
    yield
    repoint()


def load_event(name: str) -> dict:
    """Load a fixture from events/ (the same file `sam local invoke -e` uses)."""
    return json.loads((EVENTS / name).read_text())


@pytest.fixture
def event():
    return load_event

