"""The run id as powertools' correlation_id, set from domain code once the run is known."""

from __future__ import annotations

import contextlib

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.exceptions import OrphanedChildLoggerError


def correlate(logger: Logger, run_id: str) -> None:
    """Every later log line of this invocation carries `correlation_id: <run id>`.

    Outside a Lambda handler (tests, the CLI) a child logger has no parent to hold the key; nothing to do.
    """
    with contextlib.suppress(OrphanedChildLoggerError):
        logger.set_correlation_id(run_id)


def run_id_of(message: str) -> str | None:
    """The run id of a notification message, or None for plain text or JSON without one (alarms, tests)."""
    import json

    try:
        value = json.loads(message)
    except (TypeError, ValueError):
        return None
    run_id = value.get("run_id") if isinstance(value, dict) else None
    return run_id if isinstance(run_id, str) else None
