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
