"""The scheduled watchdog: the sweep that catches what the execution status events missed.

Every `WatchdogSchedule` it looks at runs in flight (this month and last), at this stack's training jobs
that are still running, and at finished runs whose reservations are still open:
- a run whose execution is no longer RUNNING is reconciled (jobs stopped, record closed, notified);
- a run RUNNING longer than it can legitimately take is stopped and reconciled;
- a job whose run is finished, unknown, or whose execution ended is an orphan and is stopped;
- an open reservation of a finished run is settled once its job has ended.
Each action is idempotent (conditional writes, stop only what is InProgress), so two sweeps at once
do no harm. A job is this stack's when its name carries the stack code (`<run id>-<code>-a<n>`): any
other job (another stack's in the same account, Studio's, a pipeline's) is skipped by its name alone,
before any call its role may not make. A sweep that raises trips the WatchdogErrors alarm.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field

from yoloops_core.config import Settings
from yoloops_core.models import RunStatus, run_id_from_job_name, utcnow
from yoloops_core.reconcile import reconcile_run, settle_from_jobs, stop_job
from yoloops_core.store import previous_month

logger = Logger(child=True)

RUN_ID_TAG = "yoloops:run-id"


class SweepReport(BaseModel):
    runs_checked: int = 0
    runs_closed: list[str] = Field(default_factory=list)
    stuck_stopped: list[str] = Field(default_factory=list)
    orphan_jobs_stopped: list[str] = Field(default_factory=list)
    foreign_jobs_skipped: int = 0  # running jobs that are not this stack's (left alone)
    reservations_settled: int = 0
    champions_repaired: list[str] = Field(default_factory=list)


def stuck_after(settings: Settings) -> timedelta:
    """Longest a run may legitimately be in flight: every attempt's max wait and backoff, plus the
    release image wait, plus an hour for the steps around them."""
    if settings.stuck_after_seconds:
        return timedelta(seconds=settings.stuck_after_seconds)
    per_attempt = settings.effective_max_wait_seconds + min(settings.retry_backoff_seconds * 2 ** settings.max_attempts,
                                                           3600)
    image_wait = settings.image_poll_seconds * settings.image_max_polls
    # RequireApproval: up to ApprovalTimeoutHours before training and again before promotion.
    approvals = len(settings.approval_stages) * settings.approval_timeout_seconds
    return timedelta(seconds=settings.max_attempts * per_attempt + image_wait + approvals + 3600)


def _parse(ts: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))
    except ValueError:
        return None


def _execution_status(sfn: Any, arn: str | None) -> tuple[str, dict[str, Any]]:
    if not arn:
        return "MISSING", {}
    try:
        desc = sfn.describe_execution(executionArn=arn)
    except Exception as exc:
        if getattr(exc, "response", {}).get("Error", {}).get("Code") == "ExecutionDoesNotExist":
            return "MISSING", {}
        raise
    return str(desc.get("status")), desc


def _running_jobs(sagemaker: Any) -> list[dict[str, Any]]:
    jobs, token = [], None
    while True:
        kwargs: dict[str, Any] = {"StatusEquals": "InProgress", "MaxResults": 100}
        if token:
            kwargs["NextToken"] = token
        resp = sagemaker.list_training_jobs(**kwargs)
        jobs.extend(resp.get("TrainingJobSummaries") or [])
        token = resp.get("NextToken")
        if not token:
            return jobs


def _run_tag(sagemaker: Any, job_arn: str) -> str | None:
    tags = sagemaker.list_tags(ResourceArn=job_arn).get("Tags") or []
    return next((t.get("Value") for t in tags if t.get("Key") == RUN_ID_TAG), None)


def _own_run_id(sagemaker: Any, job: dict[str, Any], stack_code: str) -> str | None:
    """The run id of one of this stack's jobs, None for any other job.

    With a stack code (every deployed stack) the name decides and nothing is called; without one (no
    code configured) the `yoloops:run-id` tag of a name shaped `<run id>-a<n>` does."""
    parsed = run_id_from_job_name(str(job.get("TrainingJobName") or ""), stack_code)
    if parsed is None:
        return None
    return parsed[0] if stack_code else _run_tag(sagemaker, job["TrainingJobArn"])


def sweep(*, settings: Settings, store: Any, ledger: Any, sagemaker: Any, sfn: Any, sns: Any,
          repair: Callable[[str], bool] | None = None, now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    month = now.strftime("%Y-%m")
    report = SweepReport()
    collaborators = {"settings": settings, "store": store, "ledger": ledger, "sagemaker": sagemaker, "sns": sns}
    runs = store.list_runs_by_month(previous_month(month)) + store.list_runs_by_month(month)
    limit = stuck_after(settings)
    ended_executions: set[str] = set()
    for run in runs:
        run_id = run.get("run_id")
        if not run_id:
            continue
        if RunStatus(run.get("status", "FAILED")).in_flight:
            report.runs_checked += 1
            status, desc = _execution_status(sfn, run.get("execution_arn"))
            if status == "RUNNING":
                started = _parse(run.get("started_at"))
                if started is None or now - started <= limit:
                    continue
                cause = f"in flight for {now - started}, longer than the {limit} a run can take"
                sfn.stop_execution(executionArn=run["execution_arn"], error="yoloops.RunStuck", cause=cause)
                report.stuck_stopped.append(run_id)
                status, desc = "ABORTED", {"error": "yoloops.RunStuck", "cause": cause}
            ended_executions.add(run_id)
            result = reconcile_run(run_id, status=status if status != "MISSING" else "FAILED",
                                   error=desc.get("error") or ("ExecutionMissing" if status == "MISSING" else None),
                                   cause=desc.get("cause"), execution_arn=run.get("execution_arn"), now=now,
                                   **collaborators)
            if result["closed"]:
                report.runs_closed.append(run_id)
        else:
            report.reservations_settled += len(settle_from_jobs(run_id, run, ledger, sagemaker, now=now,
                                                                stack_code=settings.stack_code))
    by_id = {r.get("run_id"): r for r in runs}
    for job in _running_jobs(sagemaker):
        run_id = _own_run_id(sagemaker, job, settings.stack_code)
        if run_id is None:
            report.foreign_jobs_skipped += 1
            continue
        record = by_id.get(run_id) or store.get_run(run_id)
        if record is not None and RunStatus(record.get("status", "FAILED")).in_flight \
                and run_id not in ended_executions:
            continue
        if stop_job(sagemaker, job["TrainingJobName"]) == "stopped":
            report.orphan_jobs_stopped.append(job["TrainingJobName"])
    if repair is not None:
        for dataset in sorted({r.get("dataset") for r in runs if r.get("dataset")}):
            if repair(dataset):
                report.champions_repaired.append(dataset)
    logger.info("watchdog sweep", extra=report.model_dump())
    return report
