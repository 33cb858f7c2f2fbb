"""Workflow steps before evaluation: validate the dataset, decide on a failed attempt (the gate: gate.py).

Each function takes the parsed step input and its collaborators (settings, store, clients) and returns
exactly the shape docs/architecture.md gives for that state; the handlers in functions/ are thin.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from yoloops_core import budget
from yoloops_core.config import ConfigError, Settings
from yoloops_core.final_failures import final_failure
from yoloops_core.images import pin_image
from yoloops_core.models import (
    MAX_RUN_ID_LENGTH,
    AttemptState,
    DatasetRef,
    InvalidInput,
    RunContext,
    RunRequest,
    iso,
    job_name,
    parse_model,
    utcnow,
)
from yoloops_core.pairing import champion_ref, write_data_index
from yoloops_core.quotas import explain_limit
from yoloops_core.rerun import check_request as check_rerun_request
from yoloops_core.snapshot import write_snapshot
from yoloops_core.state_size import compact_report
from yoloops_core.weights import record_value as weights_record
from yoloops_core.weights import resolve_request as resolve_run_weights
from yoloops_core.weights import scratch_model

logger = Logger(child=True)

RUN_ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9-]{{0,{MAX_RUN_ID_LENGTH - 1}}}$")


# ---------------------------------------------------------------- step inputs

class ImageState(BaseModel):
    ready: bool = True
    polls: int = 0
    image_uri: str


class ValidateDatasetEvent(BaseModel):
    run_id: str
    execution_arn: str | None = None
    request: Any = None  # parsed by the step itself so the error names the request's field


class StepError(BaseModel):
    """`$.error` as a Catch writes it."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    error: str = Field("Unknown", alias="Error")
    cause: str | None = Field(None, alias="Cause")


class TrainingFailedEvent(BaseModel):
    run: RunContext
    attempt: AttemptState
    error: StepError


Validator = Callable[[str, DatasetRef, Any], Any]


def _default_validator(settings: Settings) -> Validator:
    # Imported lazily: the validator is another module's (and only this step needs it).
    from yoloops_core.dataset import validate_s3_dataset

    return functools.partial(validate_s3_dataset, val_fraction=settings.val_fraction)


# ---------------------------------------------------------------- ValidateDataset

def resolve_image(request: RunRequest, settings: Settings) -> tuple[str, bool]:
    """(image URI, needs_image_check). Release runs train with the image tagged by the release."""
    if request.image_tag:
        if not settings.ecr_repository:
            raise ConfigError("ECR_REPOSITORY is not set, so a run with image_tag cannot resolve its image")
        return f"{settings.ecr_repository}:{request.image_tag}", True
    if not settings.training_image_uri:
        raise ConfigError("TRAINING_IMAGE_URI is not set: no training image for this run")
    return settings.training_image_uri, False


def validate_dataset(event: ValidateDatasetEvent, *, settings: Settings, store: Any, s3: Any,
                     validator: Validator | None = None, ecr: Any = None,
                     now: datetime | None = None) -> dict[str, Any]:
    """Parse the execution input, create the run record (once), validate the dataset version."""
    if not RUN_ID_PATTERN.match(event.run_id):
        raise InvalidInput(f"invalid run_id (execution name) {event.run_id!r}: must match {RUN_ID_PATTERN.pattern}")
    request = parse_model(RunRequest, event.request, "execution input")
    # Overrides against the release yaml block's allow-list, and a retrain/retry's name (yoloops_core.rerun).
    hyperparameters = check_rerun_request(event.run_id, request)
    image_uri, needs_check = resolve_image(request, settings)
    if not needs_check and ecr is not None:
        # Upload runs pin the tag's digest now (release runs: CheckImage does), so retries train the same image.
        image_uri = pin_image(image_uri, settings.ecr_repository, ecr)
    run = RunContext(
        run_id=event.run_id, execution_arn=event.execution_arn, dataset=request.dataset,
        trigger=request.trigger, image_tag=request.image_tag, image_uri=image_uri,
        needs_image_check=needs_check, image_poll_seconds=settings.image_poll_seconds,
        hyperparameters=hyperparameters, started_at=iso(now or utcnow()), instance_type=request.instance_type,
        approve_train="train" in settings.approval_stages, approve_promote="promote" in settings.approval_stages,
        approval_timeout_seconds=settings.approval_timeout_seconds,
    )
    if not store.create_run(run, now=now):
        # Re-invoked step: keep the original start time so month and duration stay right.
        existing = store.get_run(run.run_id) or {}
        run.started_at = existing.get("started_at") or run.started_at
    # Before the dataset: missing base weights stop the run here (BaseWeightsNotFound -> NotifyFailure).
    run.base_weights = resolve_run_weights(request, settings, store=store, s3=s3)
    bucket = settings.artifacts_bucket
    run.champion = champion_ref(store.get_champion(request.dataset.name), s3=s3, bucket=bucket,
                                dataset=request.dataset.name)
    report = (validator or _default_validator(settings))(bucket, request.dataset, s3)
    valid = bool(report.valid)
    if valid and getattr(report, "objects", None):  # the run trains exactly what was validated
        run.snapshot = write_snapshot(s3, bucket, run.run_id, report.objects)
    if valid and getattr(report, "index", None):
        write_data_index(s3, bucket, run.run_id, dataset=request.dataset.name, version=request.dataset.version,
                         names=list(report.names), index=report.index)
    report_dict = compact_report(report.model_dump(mode="json"))  # it rides along the whole state
    store.update_run(run.run_id, now=now, note="dataset valid" if valid else "dataset rejected",
                     base_weights=weights_record(run.base_weights, scratch_model(hyperparameters, settings)),
                     overrides={k: str(v) for k, v in request.overrides.items()} or None)
    logger.info("dataset validated", extra={"run_id": run.run_id, "valid": valid})
    return {
        "run": run.model_dump(mode="json"),
        "validation": {"valid": valid, "report": report_dict},
        "image": {"ready": not needs_check, "polls": 0, "image_uri": image_uri},
    }


# ---------------------------------------------------------------- AttemptFailed

RETRIABLE_ERROR_CODES = {
    "SageMaker.InternalServerError", "SageMaker.InternalFailure", "SageMaker.ServiceUnavailable",
    "SageMaker.ThrottlingException", "SageMaker.InsufficientInstanceCapacity", "SageMaker.CapacityError",
}
# API error codes (as in "Error Code: X" of the Cause) a new CreateTrainingJob may get past. On AWS, Step
# Functions names create-time errors after the SDK exception (SageMaker.ResourceLimitExceededException)
# or, for unmodeled codes (throttling, internal, validation), SageMaker.AmazonSageMakerException with the
# code only in the Cause (developer guide, connect-sagemaker); so the code is read from both.
RETRIABLE_API_CODES = {"InternalServerError", "InternalFailure", "ServiceUnavailable", "ThrottlingException",
                       "InsufficientInstanceCapacity", "CapacityError"}
_CAUSE_CODE = re.compile(r"Error Code: ([A-Za-z0-9]+)")
# SageMaker's modeled errors, named by Step Functions after their SDK exception class.
_SDK_EXCEPTION_CODES = {"ResourceLimitExceededException": "ResourceLimitExceeded",
                        "ResourceInUseException": "ResourceInUse", "ResourceNotFoundException": "ResourceNotFound"}
# Matched in FailureReason / API error messages (case-insensitive).
RETRIABLE_MARKERS = (
    "insufficientinstancecapacity", "insufficient capacity", "capacityerror",
    "internalservererror", "internalfailure", "internal error", "internal server error",
    "throttlingexception", "rate exceeded", "serviceunavailable",
)
CAPACITY_MARKERS = ("insufficientinstancecapacity", "insufficient capacity", "capacityerror")
# Errors the same job would hit again: the dataset, the code, the hyperparameters, the quota.
FATAL_MARKERS = ("clienterror", "algorithmerror")


def parse_cause(cause: str | None) -> dict[str, Any]:
    """The Catch's Cause as a dict: DescribeTrainingJob JSON, a Lambda error, or {'message': text}."""
    if not cause:
        return {}
    try:
        value = json.loads(cause)
    except (TypeError, ValueError):
        return {"message": str(cause)}
    return value if isinstance(value, dict) else {"message": str(cause)}


def failure_reason(error: StepError) -> str:
    cause = parse_cause(error.cause)
    reason = cause.get("FailureReason") or cause.get("errorMessage") or cause.get("message")
    if reason:
        return f"{error.error}: {reason}" if error.error.startswith("SageMaker.") else str(reason)
    status = cause.get("SecondaryStatus") or cause.get("TrainingJobStatus")
    return f"{error.error} ({status})" if status else error.error


def api_error_code(error: StepError) -> str | None:
    """The SageMaker API error code of a create-time failure: from the Cause's "Error Code: X" (AWS's
    AmazonSageMakerException carries it only there), else from the error name (`SageMaker.<Code>[Exception]`)."""
    if not error.error.startswith("SageMaker."):
        return None
    found = _CAUSE_CODE.search(error.cause or "")
    if found:
        return found.group(1)
    name = error.error.removeprefix("SageMaker.")
    if name == "AmazonSageMakerException":
        return None
    return _SDK_EXCEPTION_CODES.get(name, name)


def is_retriable(error: StepError) -> bool:
    """Spot capacity never came, no capacity, or an AWS-side transient error: a new job may succeed.

    `ResourceLimitExceeded` (SageMaker.ResourceLimitExceededException on AWS) is NOT retried: it is an account quota (instances of the type,
    spot instances, concurrent jobs) and the loop retries at once, so it would burn every attempt in
    seconds; the failure notification tells the team to raise the quota or wait for running jobs.
    A final failure (yoloops_core.final_failures: the image cannot use this instance's GPU) never is.
    """
    cause = parse_cause(error.cause)
    if final_failure(cause.get("FailureReason"), cause.get("message"), cause.get("errorMessage")):
        return False
    if cause.get("SecondaryStatus") == "MaxWaitTimeExceeded":
        return True
    text = " ".join(str(x) for x in (error.error, cause.get("FailureReason"), cause.get("message"),
                                      cause.get("errorMessage")) if x).lower()
    if any(m in text for m in FATAL_MARKERS):
        return False
    code = api_error_code(error)
    if code == "ResourceLimitExceeded":
        return False
    if error.error in RETRIABLE_ERROR_CODES or code in RETRIABLE_API_CODES:
        return True
    return any(m in text for m in RETRIABLE_MARKERS)


def retry_backoff(cause: dict[str, Any], failed_attempt: int, settings: Settings) -> int:
    """Seconds to wait before the next job: none after MaxWaitTimeExceeded (SageMaker already waited
    for spot capacity), else exponential so a capacity shortage or an AWS-side error can clear."""
    if cause.get("SecondaryStatus") == "MaxWaitTimeExceeded":
        return 0
    return min(settings.retry_backoff_seconds * 2 ** (failed_attempt - 1), 3600)


def is_spot_failure(error: StepError) -> bool:
    """No spot capacity within MaxWait, or no capacity at all: what on-demand capacity can fix."""
    cause = parse_cause(error.cause)
    if final_failure(cause.get("FailureReason"), cause.get("message")):
        return False
    if cause.get("SecondaryStatus") == "MaxWaitTimeExceeded":
        return True
    text = " ".join(str(x) for x in (error.error, cause.get("FailureReason"), cause.get("message")) if x).lower()
    return any(m in text for m in CAPACITY_MARKERS)


def training_failed(event: TrainingFailedEvent, *, settings: Settings, store: Any, ledger: Any,
                    now: datetime | None = None) -> dict[str, Any]:
    """Record the failed attempt; return the next AttemptState (retry) or the final one."""
    run, attempt, error = event.run, event.attempt, event.error
    reason = failure_reason(error)
    if api_error_code(error) == "ResourceLimitExceeded":  # a quota: name it, its value, where to raise it
        hint = explain_limit(reason, settings.region)
        reason = f"{reason} ({hint})" if hint else reason
    retriable = is_retriable(error)
    cause = parse_cause(error.cause)
    store.record_attempt_billing(run.run_id, attempt.number, budget.billable_seconds(cause),
                                 training_seconds=budget.training_seconds(cause))
    if is_spot_failure(error):
        store.update_run(run.run_id, now=now, map_entries={"spot_failures_by_attempt": {str(attempt.number): reason}})
    # The attempt is over: its reservation becomes what it cost, so the retry's admission sees it.
    budget.settle_run(run.run_id, store.get_run(run.run_id) or {}, ledger, now=now)
    store.update_run(run.run_id, now=now, note=f"attempt {attempt.number} ({attempt.job_name}) failed: {reason}",
                     failure_reason=reason, error=error.error,
                     last_secondary_status=cause.get("SecondaryStatus"))
    if retriable and attempt.number < settings.max_attempts:
        nxt = AttemptState(number=attempt.number + 1, retry=True,
                           job_name=job_name(run.run_id, attempt.number + 1, settings.stack_code), reason=reason,
                           backoff_seconds=retry_backoff(cause, attempt.number, settings))
        store.update_run(run.run_id, now=now, note=f"retry {nxt.job_name} waits for budget admission")
    else:
        final = final_failure(reason)
        if retriable:
            why = f"attempts exhausted ({attempt.number}/{settings.max_attempts})"
        else:
            why = f"final ({final}): a new attempt meets the same host" if final else "not retriable"
        nxt = AttemptState(number=attempt.number, job_name=attempt.job_name, retry=False,
                           reason=f"{reason} [{why}]")
    logger.info("attempt failed", extra={"run_id": run.run_id, "attempt": attempt.number,
                                         "retriable": retriable, "retry": nxt.retry, "reason": reason})
    return nxt.model_dump(mode="json")
