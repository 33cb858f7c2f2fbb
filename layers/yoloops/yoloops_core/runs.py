"""Starting runs: the one path every trigger (S3, GitHub, CLI) uses to start the workflow."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    try:
        response = sfn.start_execution(stateMachineArn=state_machine_arn, name=run_id, input=body)
    except Exception as exc:  # botocore ClientError; matched by code so fakes need no botocore
        code = getattr(exc, "response", {}).get("Error", {}).get("Code")
        if code != "ExecutionAlreadyExists":
            raise
        logger.info("run already started", extra={"run_id": run_id})
        return StartResult(run_id=run_id, started=False, execution_arn=None)
    logger.info("run started", extra={"run_id": run_id, "execution_arn": response["executionArn"]})
    # AWS returns the existing execution (no error) for a same-name, same-input start within 90 days;
    # startDate older than now tells those apart, but a duplicate is harmless either way.
    return StartResult(run_id=run_id, started=True, execution_arn=response["executionArn"])
