"""ValidateDataset, CheckBudget and AttemptFailed domain functions, driven by the events/ fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from yoloops_core.config import ConfigError
from yoloops_core.models import InvalidInput, RunContext, RunStatus
from yoloops_core.steps import (
    CheckBudgetEvent,
    StepError,
    TrainingFailedEvent,
    ValidateDatasetEvent,
    check_budget,
    is_retriable,
    training_failed,
    validate_dataset,
)

NOW = datetime(2026, 11, 28, 9, 15, 45, tzinfo=UTC)


def _validate(event, settings, store, s3, validator):
    return validate_dataset(ValidateDatasetEvent.model_validate(event), settings=settings, store=store, s3=s3,
                            validator=validator, now=NOW)


def test_validate_creates_run_and_returns_state_shape(event, settings, store, s3, validator_factory):
    validator = validator_factory(valid=True)
    out = _validate(event("stepfn_validate_dataset_ok.json"), settings, store, s3, validator)
    assert set(out) == {"run", "validation", "image"}
    run = RunContext.model_validate(out["run"])
    assert run.run_id == "ds-pallets-2026-11-28" and run.image_uri == settings.training_image_uri
    assert out["validation"] == {"valid": True, "report": {"valid": True, "errors": []}}
    assert out["image"] == {"ready": True, "polls": 0, "image_uri": settings.training_image_uri}
    assert validator.calls == [(settings.artifacts_bucket, run.dataset)]
    record = store.get_run(run.run_id)
    assert record["status"] == "STARTED" and record["month"] == "2026-11"


def test_validate_reinvoked_keeps_one_record_and_start_time(event, settings, store, s3, validator_factory):
    validator = validator_factory()
    first = _validate(event("stepfn_validate_dataset_ok.json"), settings, store, s3, validator)
    later = validate_dataset(ValidateDatasetEvent.model_validate(event("stepfn_validate_dataset_ok.json")),
                             settings=settings, store=store, s3=s3, validator=validator,
                             now=datetime(2026, 12, 1, tzinfo=UTC))
    assert len(store.runs) == 1
    assert later["run"]["started_at"] == first["run"]["started_at"] == "2026-11-28T09:15:45Z"


def test_validate_invalid_dataset_is_reported_not_raised(event, settings, store, s3, validator_factory):
    out = _validate(event("stepfn_validate_dataset_ok.json"), settings, store, s3,
                    validator_factory(valid=False, errors=["data.yaml: 'val' is missing"]))
    assert out["validation"]["valid"] is False
    assert out["validation"]["report"]["errors"] == ["data.yaml: 'val' is missing"]


def test_validate_malformed_request_names_the_fields(event, settings, store, s3, validator_factory):
    validator = validator_factory()
    with pytest.raises(InvalidInput) as exc:
        _validate(event("stepfn_validate_dataset_malformed.json"), settings, store, s3, validator)
    assert "dataset.name" in str(exc.value) and "trigger" in str(exc.value)
    assert validator.calls == [] and store.runs == {}


def test_validate_release_run_resolves_tagged_image_and_needs_check(event, settings, store, s3, validator_factory):
    out = _validate(event("stepfn_validate_dataset_release.json"), settings, store, s3, validator_factory())
    assert out["run"]["image_uri"] == f"{settings.ecr_repository}:v1.4.0"
    assert out["run"]["needs_image_check"] is True
    assert out["image"]["ready"] is False


def test_validate_without_image_setting_is_a_config_error(event, settings_factory, store, s3, validator_factory):
    with pytest.raises(ConfigError, match="TRAINING_IMAGE_URI"):
        _validate(event("stepfn_validate_dataset_ok.json"), settings_factory(training_image_uri=""), store, s3,
                  validator_factory())


def test_validate_bad_run_id_is_invalid_input(event, settings, store, s3, validator_factory):
    bad = dict(event("stepfn_validate_dataset_ok.json"), run_id="has spaces and_underscores")
    with pytest.raises(InvalidInput, match="run_id"):
        _validate(bad, settings, store, s3, validator_factory())


# ---------------------------------------------------------------- CheckBudget

def _seed_run(store, event):
    run = RunContext.model_validate(event("stepfn_check_budget_ok.json")["run"])
    store.create_run(run)
    return run


def test_check_budget_admits_marks_training_and_publishes_started(event, settings, store, sns):
    run = _seed_run(store, event)
    out = check_budget(CheckBudgetEvent.model_validate(event("stepfn_check_budget_ok.json")), settings=settings,
                       store=store, sns=sns, now=NOW)
    assert out["admitted"] is True
    assert out["attempt"] == {"number": 1, "job_name": f"{run.run_id}-a1", "retry": False, "reason": None,
                              "backoff_seconds": 0}
    assert out["budget"]["worst_case_usd"] == pytest.approx(1.408)
    rec = store.get_run(run.run_id)
    assert rec["status"] == "TRAINING" and rec["job_names"] == [f"{run.run_id}-a1"] and rec["attempts"] == 1
    assert rec["worst_case_cost_usd"] == pytest.approx(1.408)
    assert [m["event_type"] for m in sns.messages] == ["run.started"]
    assert sns.published[0]["TopicArn"] == settings.notifications_topic_arn
    # Re-invoked step: no second notification, no second job name.
    check_budget(CheckBudgetEvent.model_validate(event("stepfn_check_budget_ok.json")), settings=settings,
                 store=store, sns=sns, now=NOW)
    assert len(sns.published) == 1 and store.get_run(run.run_id)["job_names"] == [f"{run.run_id}-a1"]


def test_check_budget_blocked_by_in_flight_runs(event, settings_factory, store, sns):
    run = _seed_run(store, event)
    # Another run in flight this month with a $1.0 worst case; $0.5 spent; budget $2.5:
    # 0.5 + 1.0 + 1.408 > 2.5 -> blocked.
    other = RunContext.model_validate(dict(event("stepfn_check_budget_ok.json")["run"], run_id="ds-other-1"))
    store.create_run(other)
    store.update_run("ds-other-1", status=RunStatus.TRAINING, worst_case_cost_usd=1.0)
    done = RunContext.model_validate(dict(event("stepfn_check_budget_ok.json")["run"], run_id="ds-done-1"))
    store.create_run(done)
    store.update_run("ds-done-1", status=RunStatus.PROMOTED, cost_usd=0.5)
    settings = settings_factory(monthly_budget_usd=2.5)
    out = check_budget(CheckBudgetEvent.model_validate(event("stepfn_check_budget_ok.json")), settings=settings,
                       store=store, sns=sns, now=NOW)
    assert out["admitted"] is False
    assert out["budget"]["spent_usd"] == pytest.approx(0.5) and out["budget"]["in_flight_usd"] == pytest.approx(1.0)
    assert store.get_run(run.run_id)["status"] == "BUDGET_BLOCKED"
    assert store.get_run(run.run_id)["job_names"] == []
    assert sns.published == []  # the NotifyBudgetBlocked step publishes
    # With a budget that fits exactly, it is admitted.
    out = check_budget(CheckBudgetEvent.model_validate(event("stepfn_check_budget_ok.json")),
                       settings=settings_factory(monthly_budget_usd=2.908), store=store, sns=sns, now=NOW)
    assert out["admitted"] is True


# ---------------------------------------------------------------- AttemptFailed

def _failed(event, name, store):
    ev = TrainingFailedEvent.model_validate(event(name))
    store.create_run(ev.run)
    store.record_job(ev.run.run_id, ev.attempt.number, ev.attempt.job_name)
    return ev


@pytest.mark.parametrize(("fixture", "retriable"), [
    ("stepfn_training_failed_max_wait.json", True),
    ("stepfn_training_failed_capacity.json", True),
    ("stepfn_training_failed_internal_error.json", True),
    ("stepfn_training_failed_algorithm_error.json", False),
    ("stepfn_training_failed_resource_limit.json", False),
])
def test_classification_of_fixture_errors(event, fixture, retriable):
    assert is_retriable(StepError.model_validate(event(fixture)["error"])) is retriable


@pytest.mark.parametrize(("error", "cause", "retriable"), [
    ("SageMaker.InternalServerError", "We encountered an internal error", True),
    ("SageMaker.ThrottlingException", "Rate exceeded", True),
    ("SageMaker.AmazonSageMakerException", "ThrottlingException: Rate exceeded", True),
    ("SageMaker.ValidationException", "Could not find image", False),
    ("States.TaskFailed", json.dumps({"TrainingJobStatus": "Failed", "FailureReason":
                                      "ClientError: Data download failed: NoSuchKey"}), False),
    ("States.TaskFailed", json.dumps({"TrainingJobStatus": "Stopped", "SecondaryStatus": "MaxRuntimeExceeded"}), False),
    ("States.TaskFailed", json.dumps({"TrainingJobStatus": "Stopped", "SecondaryStatus": "Stopped"}), False),
    ("States.Timeout", None, False),
])
def test_classification_table(error, cause, retriable):
    assert is_retriable(StepError(Error=error, Cause=cause)) is retriable


def test_retriable_failure_gets_next_job_name_and_records_attempt(event, settings, store):
    ev = _failed(event, "stepfn_training_failed_max_wait.json", store)
    out = training_failed(ev, settings=settings, store=store, now=NOW)
    assert out["retry"] is True and out["number"] == 2 and out["job_name"] == f"{ev.run.run_id}-a2"
    rec = store.get_run(ev.run.run_id)
    assert rec["job_names"] == [f"{ev.run.run_id}-a1", f"{ev.run.run_id}-a2"]
    assert rec["attempts"] == 2 and rec["billable_seconds"] == 1800
    assert rec["last_secondary_status"] == "MaxWaitTimeExceeded"
    assert out["backoff_seconds"] == 0  # SageMaker already waited MaxWait for spot capacity


def test_capacity_failure_waits_before_the_next_attempt(event, settings_factory, store):
    ev = _failed(event, "stepfn_training_failed_capacity.json", store)
    out = training_failed(ev, settings=settings_factory(retry_backoff_seconds=60), store=store, now=NOW)
    assert out["retry"] is True
    assert out["backoff_seconds"] == 60 * 2 ** (ev.attempt.number - 1)  # doubles with each failed attempt


def test_non_retriable_failure_stops_with_failure_reason(event, settings, store):
    ev = _failed(event, "stepfn_training_failed_algorithm_error.json", store)
    out = training_failed(ev, settings=settings, store=store, now=NOW)
    assert out["retry"] is False and out["number"] == 1
    assert out["reason"].startswith("AlgorithmError: dataset YAML data.yaml has no 'val' entry")
    assert "not retriable" in out["reason"]
    assert store.get_run(ev.run.run_id)["failure_reason"].startswith("AlgorithmError")


def test_retriable_failure_on_last_attempt_is_exhausted(event, settings, store):
    ev = _failed(event, "stepfn_training_failed_internal_error.json", store)  # attempt 3 of 3
    out = training_failed(ev, settings=settings, store=store, now=NOW)
    assert out["retry"] is False and out["number"] == 3
    assert "attempts exhausted (3/3)" in out["reason"] and "InternalServerError" in out["reason"]


def test_api_error_at_create_time_names_the_code(event, settings, store):
    ev = _failed(event, "stepfn_training_failed_resource_limit.json", store)
    out = training_failed(ev, settings=settings, store=store, now=NOW)
    assert out["retry"] is False
    assert out["reason"].startswith("SageMaker.ResourceLimitExceeded: The account-level service limit")
    assert store.get_run(ev.run.run_id)["billable_seconds"] == 0
