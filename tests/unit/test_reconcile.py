"""Nothing left behind: reconcile on execution status events, and the watchdog sweep."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from yoloops_core.ledger import Reservation
from yoloops_core.models import RunContext, RunStatus
from yoloops_core.reconcile import ExecutionStatusEvent, on_execution_status, reconcile_run
from yoloops_core.watchdog import stuck_after, sweep

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


class ApiError(Exception):
    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.response = {"Error": {"Code": code, "Message": message or code}}


class FakeSageMaker:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.stopped: list[str] = []

    def add(self, name: str, status: str = "InProgress", run_id: str | None = None, billable: int = 600) -> None:
        self.jobs[name] = {"TrainingJobName": name, "TrainingJobStatus": status,
                           "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
                           "BillableTimeInSeconds": billable, "TrainingTimeInSeconds": billable * 2,
                           "tags": [{"Key": "yoloops:run-id", "Value": run_id}] if run_id else []}

    def describe_training_job(self, TrainingJobName):
        if TrainingJobName not in self.jobs:
            raise ApiError("ValidationException", f"Requested resource not found: {TrainingJobName}")
        return {k: v for k, v in self.jobs[TrainingJobName].items() if k != "tags"}

    def stop_training_job(self, TrainingJobName):
        job = self.jobs[TrainingJobName]
        if job["TrainingJobStatus"] != "InProgress":
            raise ApiError("ValidationException", "already stopping")
        job["TrainingJobStatus"] = "Stopped"  # ends at once here; SageMaker passes through Stopping
        self.stopped.append(TrainingJobName)

    def list_training_jobs(self, StatusEquals, MaxResults, NextToken=None):
        return {"TrainingJobSummaries": [{k: j[k] for k in ("TrainingJobName", "TrainingJobArn")}
                                         for j in self.jobs.values() if j["TrainingJobStatus"] == StatusEquals]}

    def list_tags(self, ResourceArn):
        return {"Tags": next(j["tags"] for j in self.jobs.values() if j["TrainingJobArn"] == ResourceArn)}


class FakeSfn:
    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.stopped: list[str] = []

    def describe_execution(self, executionArn):
        if executionArn not in self.status:
            raise ApiError("ExecutionDoesNotExist")
        return {"executionArn": executionArn, "status": self.status[executionArn]}

    def stop_execution(self, executionArn, error, cause):
        self.status[executionArn] = "ABORTED"
        self.stopped.append(executionArn)


@pytest.fixture
def sagemaker() -> FakeSageMaker:
    return FakeSageMaker()


@pytest.fixture
def sfn() -> FakeSfn:
    return FakeSfn()


def _training_run(event, store, ledger, sagemaker, run_id="ds-pallets-1", started=NOW, job_status="InProgress"):
    data = dict(event("stepfn_check_budget_ok.json")["run"], run_id=run_id, started_at=started.isoformat())
    data["execution_arn"] = f"arn:aws:states:us-east-1:123456789012:execution:yoloops-training:{run_id}"
    run = RunContext.model_validate(data)
    store.create_run(run, now=started)
    store.record_job(run_id, 1, f"{run_id}-a1", status=RunStatus.TRAINING)
    ledger.reserve(Reservation(run_id=run_id, attempt=1, month=started.strftime("%Y-%m"), amount_usd=1.408,
                               hourly_usd=1.408, max_runtime_seconds=3600, instance_type="ml.g5.xlarge"), 100.0)
    sagemaker.add(f"{run_id}-a1", status=job_status, run_id=run_id)
    return run


def _collab(settings, store, ledger, sagemaker, sns):
    return {"settings": settings, "store": store, "ledger": ledger, "sagemaker": sagemaker, "sns": sns}


@pytest.mark.parametrize(("status", "error", "words"), [
    ("ABORTED", None, "aborted (stop-execution)"),
    ("TIMED_OUT", "States.Timeout", "timed out"),
    ("FAILED", "States.Runtime", "States.Runtime"),
    ("FAILED", "States.DataLimitExceeded", "States.DataLimitExceeded"),
])
def test_execution_that_ends_outside_the_catch_paths_is_closed(event, settings, store, ledger, sns, sagemaker,
                                                               status, error, words):
    run = _training_run(event, store, ledger, sagemaker)
    detail = {"executionArn": run.execution_arn, "stateMachineArn": "arn:sm", "name": run.run_id, "status": status,
              "error": error, "cause": "An error occurred while executing the state 'Train'" if error else None}
    ev = ExecutionStatusEvent.model_validate({"detail-type": "Step Functions Execution Status Change",
                                              "detail": detail})
    out = on_execution_status(ev, **_collab(settings, store, ledger, sagemaker, sns), now=NOW)
    assert out["closed"] is True and sagemaker.stopped == [f"{run.run_id}-a1"]
    rec = store.get_run(run.run_id)
    assert rec["status"] == "FAILED" and words in rec["failure_reason"]
    (res,) = ledger.reservations(run.run_id)
    assert res.state == "settled" and res.actual_usd == pytest.approx(1.408 * 600 / 3600)
    assert ledger.totals("2026-11").reserved_usd == pytest.approx(0.0)
    (msg,) = sns.messages
    assert msg["event_type"] == "training.failed" and words in msg["text"] and "stopped" in msg["text"]
    # Idempotent: the same event again (EventBridge is at-least-once) changes and sends nothing.
    again = on_execution_status(ev, **_collab(settings, store, ledger, sagemaker, sns), now=NOW)
    assert again["closed"] is False and len(sns.published) == 1 and sagemaker.stopped == [f"{run.run_id}-a1"]


def test_run_already_closed_by_the_workflow_is_left_alone(event, settings, store, ledger, sns, sagemaker):
    run = _training_run(event, store, ledger, sagemaker, job_status="Failed")
    store.update_run(run.run_id, status=RunStatus.FAILED)  # NotifyFailure ran, then the execution FAILED
    out = reconcile_run(run.run_id, status="FAILED", **_collab(settings, store, ledger, sagemaker, sns), now=NOW)
    assert out["closed"] is False and sns.published == [] and sagemaker.stopped == []
    assert ledger.reservations(run.run_id)[0].state == "settled"  # but its budget is settled


def test_watchdog_stops_orphans_closes_missed_and_stuck_runs_and_is_safe_twice(
        event, settings, store, ledger, sns, sagemaker, sfn):
    missed = _training_run(event, store, ledger, sagemaker, run_id="ds-missed-1")
    sfn.status[missed.execution_arn] = "ABORTED"  # its status event never arrived
    stuck_start = NOW - stuck_after(settings) - timedelta(minutes=5)
    stuck = _training_run(event, store, ledger, sagemaker, run_id="ds-stuck-1", started=stuck_start)
    sfn.status[stuck.execution_arn] = "RUNNING"
    healthy = _training_run(event, store, ledger, sagemaker, run_id="ds-healthy-1")
    sfn.status[healthy.execution_arn] = "RUNNING"
    finished = _training_run(event, store, ledger, sagemaker, run_id="ds-done-1")
    store.update_run(finished.run_id, status=RunStatus.PROMOTED)  # ...but its job still runs: an orphan
    sagemaker.add("ds-ghost-1-a1", run_id="ds-ghost-1")  # tagged, no run record at all: an orphan
    sagemaker.add("someone-elses-job")  # untagged: not ours, never touched
    sagemaker.add("ds-stopped-1-a2", status="Stopped", run_id="ds-stopped-1")  # already stopped

    report = sweep(settings=settings, store=store, ledger=ledger, sagemaker=sagemaker, sfn=sfn, sns=sns, now=NOW)
    assert set(report.runs_closed) == {"ds-missed-1", "ds-stuck-1"}
    assert report.stuck_stopped == ["ds-stuck-1"] and sfn.stopped == [stuck.execution_arn]
    assert set(report.orphan_jobs_stopped) == {"ds-done-1-a1", "ds-ghost-1-a1"}
    assert sagemaker.jobs["ds-healthy-1-a1"]["TrainingJobStatus"] == "InProgress"
    assert sagemaker.jobs["someone-elses-job"]["TrainingJobStatus"] == "InProgress"
    assert store.get_run("ds-healthy-1")["status"] == "TRAINING"
    assert store.get_run("ds-stuck-1")["status"] == "FAILED"
    assert "longer than" in store.get_run("ds-stuck-1")["failure_reason"]
    assert len(sns.published) == 2
    # A second sweep (or two at once) finds nothing more to do and tells nobody twice.
    again = sweep(settings=settings, store=store, ledger=ledger, sagemaker=sagemaker, sfn=sfn, sns=sns, now=NOW)
    assert again.runs_closed == [] and again.orphan_jobs_stopped == [] and len(sns.published) == 2
    # The orphan of the finished run had its reservation settled once its job ended.
    assert ledger.reservations("ds-done-1")[0].state == "settled"


def test_watchdog_repairs_champions_of_this_months_datasets(event, settings, store, ledger, sns, sagemaker, sfn):
    run = _training_run(event, store, ledger, sagemaker, run_id="ds-pallets-9", job_status="Completed")
    store.update_run(run.run_id, status=RunStatus.PROMOTED)
    asked: list[str] = []

    def repair(dataset: str) -> bool:
        asked.append(dataset)
        return True  # champion/ disagreed with the record and was put right

    report = sweep(settings=settings, store=store, ledger=ledger, sagemaker=sagemaker, sfn=sfn, sns=sns,
                   repair=repair, now=NOW)
    assert asked == ["pallets"] and report.champions_repaired == ["pallets"]


class ScopedSageMaker(FakeSageMaker):
    """FakeSageMaker behind the watchdog role's IAM policy: training-job ARNs `*-<stack code>-a*` only."""

    def __init__(self, code: str) -> None:
        super().__init__()
        self.code = code
        self.calls: list[tuple[str, str]] = []

    def _allowed(self, action: str, name: str) -> None:
        self.calls.append((action, name))
        if f"-{self.code}-a" not in name:
            raise ApiError("AccessDeniedException", f"not authorized to perform sagemaker:{action} on {name}")

    def describe_training_job(self, TrainingJobName):
        self._allowed("DescribeTrainingJob", TrainingJobName)
        return super().describe_training_job(TrainingJobName)

    def stop_training_job(self, TrainingJobName):
        self._allowed("StopTrainingJob", TrainingJobName)
        return super().stop_training_job(TrainingJobName)

    def list_tags(self, ResourceArn):
        self._allowed("ListTags", ResourceArn)
        return super().list_tags(ResourceArn)


def test_watchdog_touches_only_its_own_stacks_jobs_and_never_calls_what_its_role_may_not(
        event, settings_factory, store, ledger, sns, sfn):
    """dev and prod share an account: the same upload runs in both (same run id, different stack codes);
    a Studio job runs beside them. dev's sweep stops dev's orphan only, and makes no call on the others."""
    dev_code, prod_code = "51af3dc0", "9c0e44b1"
    settings = settings_factory(stack_code=dev_code, stack_name="yoloops-dev")
    sagemaker = ScopedSageMaker(dev_code)
    run_id = "ds-pallets-v3-1a2b3c4d-5e6f7a8b"
    data = dict(event("stepfn_check_budget_ok.json")["run"], run_id=run_id, started_at=NOW.isoformat(),
                execution_arn=f"arn:aws:states:us-east-1:123456789012:execution:dev-training:{run_id}")
    store.create_run(RunContext.model_validate(data), now=NOW)
    store.record_job(run_id, 1, f"{run_id}-{dev_code}-a1", status=RunStatus.TRAINING)
    sfn.status[data["execution_arn"]] = "RUNNING"
    sagemaker.add(f"{run_id}-{dev_code}-a1", run_id=run_id)  # dev's healthy job
    sagemaker.add(f"{run_id}-{prod_code}-a1", run_id=run_id)  # prod's job of the same upload
    sagemaker.add(f"ds-ghost-9-{prod_code}-a1", run_id="ds-ghost-9")  # prod's job, unknown to dev's table
    sagemaker.add("studio-xgboost-2026-11-28-09-00-00-123")  # not a yoloops job at all
    sagemaker.add(f"ds-ghost-1-{dev_code}-a1", run_id="ds-ghost-1")  # dev's orphan: no run record

    report = sweep(settings=settings, store=store, ledger=ledger, sagemaker=sagemaker, sfn=sfn, sns=sns, now=NOW)
    assert report.orphan_jobs_stopped == [f"ds-ghost-1-{dev_code}-a1"]
    assert report.foreign_jobs_skipped == 3
    assert all(f"-{dev_code}-a" in name for _, name in sagemaker.calls)  # no AccessDenied possible
    assert sagemaker.jobs[f"{run_id}-{prod_code}-a1"]["TrainingJobStatus"] == "InProgress"
    assert sagemaker.jobs[f"ds-ghost-9-{prod_code}-a1"]["TrainingJobStatus"] == "InProgress"
    assert sagemaker.jobs[f"{run_id}-{dev_code}-a1"]["TrainingJobStatus"] == "InProgress"
