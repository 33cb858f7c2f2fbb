"""Nothing left behind: close runs whose execution ended outside the workflow's own Catch paths.

An execution that is aborted (`stop-execution`), times out, or fails with an error `States.ALL`
does not catch (`States.Runtime`, `States.DataLimitExceeded`) never reaches NotifyFailure. Its
"Step Functions Execution Status Change" event brings it here: stop the run's training jobs that
still run, close the run record with the real cause, settle its reservations and notify — once,
because closing is a conditional write on an in-flight status. The scheduled watchdog
(yoloops_core.watchdog) calls the same function for whatever the event missed.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from yoloops_core import budget
from yoloops_core.config import Settings
from yoloops_core.models import EventType, RunStatus, job_name, utcnow
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.pricing import format_usd
from yoloops_core.run_ids import STACK_CODE_LENGTH

logger = Logger(child=True)

ACTIVE_JOB_STATUSES = ("InProgress", "Stopping")
TERMINAL_JOB_STATUSES = ("Completed", "Failed", "Stopped")
ENDED_EXECUTION_STATUSES = ("FAILED", "TIMED_OUT", "ABORTED")


class ExecutionDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    state_machine_arn: str | None = Field(None, alias="stateMachineArn")
    name: str
    status: str
    error: str | None = None
    cause: str | None = None


class ExecutionStatusEvent(BaseModel):
    """EventBridge "Step Functions Execution Status Change" (source aws.states)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    detail_type: str = Field(alias="detail-type")
    detail: ExecutionDetail


def _code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or "")


def describe_job(sagemaker: Any, name: str) -> dict[str, Any] | None:
    """DescribeTrainingJob, or None when the job was never created (its attempt failed before)."""
    try:
        return sagemaker.describe_training_job(TrainingJobName=name)
    except Exception as exc:
        if _code(exc) in ("ValidationException", "ResourceNotFound"):
            return None
        raise


def stop_job(sagemaker: Any, name: str) -> str:
    """Stop one training job if it still runs; returns what was found/done (idempotent)."""
    desc = describe_job(sagemaker, name)
    if desc is None:
        return "absent"
    status = desc.get("TrainingJobStatus")
    if status != "InProgress":
        return str(status).lower()  # already stopping, or ended by itself
    try:
        sagemaker.stop_training_job(TrainingJobName=name)
    except Exception as exc:  # stopped by a concurrent sweep between describe and stop
        if _code(exc) != "ValidationException":
            raise
        return "stopping"
    logger.info("training job stopped", extra={"job_name": name})
    return "stopped"


def run_jobs(run_id: str, record: dict[str, Any]) -> list[str]:
    jobs = list(record.get("job_names") or [])
    current = record.get("current_job")
    if current and current not in jobs:
        jobs.append(current)
    # The record's names are this stack's: with its stack code, or without one (made before codes existed).
    own = re.compile(rf"{re.escape(run_id)}(-[a-z0-9]{{1,{STACK_CODE_LENGTH}}})?-a\d{{1,2}}")
    return [j for j in jobs if own.fullmatch(j)]


def attempt_job(run_id: str, record: dict[str, Any], attempt: int, stack_code: str = "") -> str:
    """The attempt's job name as the run record holds it, else as this stack names it."""
    return next((j for j in run_jobs(run_id, record) if j.endswith(f"-a{attempt}")),
                job_name(run_id, attempt, stack_code))


def settle_from_jobs(run_id: str, record: dict[str, Any], ledger: Any, sagemaker: Any,
                     now: datetime | None = None, stack_code: str = "") -> list[Any]:
    """Settle reservations whose attempt has ended, with the billing SageMaker reports.

    An attempt whose job still stops keeps its reservation until a later sweep sees it ended. A sweep's
    reservations belong to its tuning job's training jobs (slot NNN = job NNN: yoloops_core.sweep)."""
    tuning = (record.get("sweep") or {}).get("tuning_job_name") if isinstance(record.get("sweep"), dict) else None
    if tuning:
        from yoloops_core.sweep import settle_sweep

        held = {r.attempt for r in ledger.reservations(run_id) if r.state == "reserved"}
        settle_sweep(run_id, str(tuning), sagemaker=sagemaker, ledger=ledger, now=now)
        return [r for r in ledger.reservations(run_id) if r.attempt in held and r.state != "reserved"]
    settled = []
    for res in ledger.reservations(run_id):
        if res.state != "reserved":
            continue
        desc = describe_job(sagemaker, attempt_job(run_id, record, res.attempt, stack_code))
        if desc is not None and desc.get("TrainingJobStatus") not in TERMINAL_JOB_STATUSES:
            continue
        done = ledger.settle(run_id, res.attempt, budget.billable_seconds(desc), budget.training_seconds(desc),
                             now=now)
        if done is not None:
            settled.append(done)
    return settled


def settle_ended_attempt(run_id: str, attempt: int, detail: dict[str, Any], *, ledger: Any, store: Any,
                         sagemaker: Any, now: datetime | None = None) -> Any:
    """Settle one attempt the moment its job ends (its own state-change event), whatever ended it.

    Billing comes from the event's DescribeTrainingJob snapshot, or from DescribeTrainingJob when the
    event carries none. Idempotent: the ledger settles a reservation once. The run's cost on its record
    follows, so a run closed before its job stopped (stop-execution) shows what it cost."""
    desc: dict[str, Any] | None = detail
    if not isinstance(detail.get("BillableTimeInSeconds"), int | float):
        desc = describe_job(sagemaker, str(detail.get("TrainingJobName") or job_name(run_id, attempt)))
    if desc is None or desc.get("TrainingJobStatus") not in TERMINAL_JOB_STATUSES:
        return None
    done = ledger.settle(run_id, attempt, budget.billable_seconds(desc), budget.training_seconds(desc), now=now)
    if done is not None:
        cost = budget.run_cost(ledger.reservations(run_id))
        if cost is not None and store.get_run(run_id) is not None:
            store.update_run(run_id, now=now, cost_usd=cost.cost_usd, spot_savings_pct=cost.spot_savings_pct)
    return done


def _cause(status: str, error: str | None, cause: str | None) -> str:
    what = {"ABORTED": "the execution was aborted (stop-execution)",
            "TIMED_OUT": "the execution timed out",
            "FAILED": "the execution failed outside the workflow's error handling"}.get(status, f"execution {status}")
    detail = ": ".join(x for x in (error, (cause or "")[:500]) if x)
    return f"{what} ({detail})" if detail else what


def reconcile_run(run_id: str, *, status: str, settings: Settings, store: Any, ledger: Any, sagemaker: Any,
                  sns: Publisher, error: str | None = None, cause: str | None = None,
                  execution_arn: str | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Stop the run's jobs, close its record with the real cause, settle its budget, notify once."""
    now = now or utcnow()
    record = store.get_run(run_id)
    if record is None:
        store.create_minimal_run(run_id, RunStatus.STARTED, note="run record created by reconcile", now=now,
                                 execution_arn=execution_arn)
        record = store.get_run(run_id) or {}
    jobs = {job: stop_job(sagemaker, job) for job in run_jobs(run_id, record)}
    reason = _cause(status, error, cause)
    closed = False
    if RunStatus(record.get("status", "FAILED")).in_flight:
        stopped = [j for j, what in jobs.items() if what in ("stopped", "stopping")]
        note = reason + (f"; training job {', '.join(stopped)} stopped" if stopped else "")
        closed = store.finish_if_in_flight(run_id, RunStatus.FAILED, note=note, now=now, failure_reason=reason,
                                           error=error or status)
    settle_from_jobs(run_id, store.get_run(run_id) or record, ledger, sagemaker, now=now,
                     stack_code=settings.stack_code)
    cost = budget.run_cost(ledger.reservations(run_id))
    if closed:
        if cost is not None:
            store.update_run(run_id, now=now, cost_usd=cost.cost_usd, spot_savings_pct=cost.spot_savings_pct)
        publish(_closed_notification(run_id, record, reason, jobs, cost), settings.notifications_topic_arn, sns)
    logger.info("run reconciled", extra={"run_id": run_id, "execution_status": status, "closed": closed,
                                         "jobs": jobs})
    return {"run_id": run_id, "closed": closed, "jobs": jobs, "reason": reason,
            "cost_usd": cost.cost_usd if cost else None}


def _closed_notification(run_id: str, record: dict[str, Any], reason: str, jobs: dict[str, str],
                         cost: budget.RunCost | None) -> Notification:
    stopped = [j for j, what in jobs.items() if what in ("stopped", "stopping")]
    label = f"{record.get('dataset') or 'unknown dataset'} {record.get('dataset_version') or ''}".strip()
    text = f"Run {run_id} for {label} ended: {reason}."
    if stopped:
        text += f" Training job {', '.join(stopped)} stopped, so no GPU keeps running."
    if cost is not None:
        text += f" Cost {format_usd(cost.cost_usd)}; its budget reservation is released."
    return Notification(event_type=EventType.FAILED, run_id=run_id, dataset=record.get("dataset"),
                        version=record.get("dataset_version"), text=text, reason=reason,
                        attempts=int(record.get("attempts") or 0) or None,
                        cost_usd=cost.cost_usd if cost else None,
                        spot_savings_pct=cost.spot_savings_pct if cost else None)


def on_execution_status(event: ExecutionStatusEvent, **collaborators: Any) -> dict[str, Any]:
    d = event.detail
    if d.status not in ENDED_EXECUTION_STATUSES:
        return {"run_id": d.name, "closed": False, "skipped": d.status}
    return reconcile_run(d.name, status=d.status, error=d.error, cause=d.cause, execution_arn=d.execution_arn,
                         **collaborators)
