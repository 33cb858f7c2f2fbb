"""Starting runs: the one path every trigger (S3, GitHub, CLI) uses to start the workflow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger

from yoloops_core.models import RunRequest

logger = Logger(child=True)


class ExecutionStarter(Protocol):
    def start_execution(self, **kwargs: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StartResult:
    run_id: str
    started: bool  # False: an execution with this name already exists (duplicate trigger)
    execution_arn: str | None


def start_run(request: RunRequest, run_id: str, state_machine_arn: str, sfn: ExecutionStarter) -> StartResult:
    """Start the training workflow with the run id as execution name.

    Step Functions keeps execution names unique for 90 days, so a duplicate S3 event, a GitHub
    redelivery or a second `dataset push` of the same version starts nothing new.
    """
    body = json.dumps(request.model_dump(mode="json"), sort_keys=True)
    called_at = datetime.now(UTC)
    try:
        response = sfn.start_execution(stateMachineArn=state_machine_arn, name=run_id, input=body)
    except Exception as exc:  # botocore ClientError; matched by code so fakes need no botocore
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code != "ExecutionAlreadyExists":
            raise
        logger.info("run already started", extra={"run_id": run_id})
        return StartResult(run_id=run_id, started=False, execution_arn=None)
    # A same-name, same-input start returns the existing execution without an error: its startDate
    # predates this call (a little slack for clock skew between us and the service).
    start_date = response.get("startDate")
    if isinstance(start_date, datetime):
        if start_date.tzinfo is None:
            start_date = start_date.replace(tzinfo=UTC)
        if start_date < called_at - timedelta(seconds=5):
            logger.info("run already started", extra={"run_id": run_id, "execution_arn": response["executionArn"]})
            return StartResult(run_id=run_id, started=False, execution_arn=response["executionArn"])
    logger.info("run started", extra={"run_id": run_id, "execution_arn": response["executionArn"]})
    return StartResult(run_id=run_id, started=True, execution_arn=response["executionArn"])
