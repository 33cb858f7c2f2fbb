"""ValidateDataset, CheckBudget and AttemptFailed domain functions, driven by the events/ fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from yoloops_core.config import ConfigError
from yoloops_core.gate import CheckBudgetEvent, check_budget
from yoloops_core.models import InvalidInput, RunContext
from yoloops_core.steps import (
    StepError,
    TrainingFailedEvent,
    ValidateDatasetEvent,
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


def _gate(event, settings, store, ledger, sns, attempt=None):
    data = dict(event("stepfn_check_budget_ok.json"), attempt=attempt)
    return check_budget(CheckBudgetEvent.model_validate(data), settings=settings, store=store, ledger=ledger,
                        sns=sns, now=NOW)


def test_check_budget_admits_marks_training_and_publishes_started(event, settings, store, ledger, sns):
    run = _seed_run(store, event)
    out = _gate(event, settings, store, ledger, sns)
    assert out["admitted"] is True
    assert out["attempt"] == {"number": 1, "job_name": f"{run.run_id}-a1", "retry": False, "reason": None,
                              "backoff_seconds": 0}
    assert out["budget"]["worst_case_usd"] == pytest.approx(1.408)
    assert out["budget"]["price_source"] == "shipped-table" and out["budget"]["price_as_of"]
    rec = store.get_run(run.run_id)
    assert rec["status"] == "TRAINING" and rec["job_names"] == [f"{run.run_id}-a1"] and rec["attempts"] == 1
    assert rec["worst_case_cost_usd"] == pytest.approx(1.408)
    assert [m["event_type"] for m in sns.messages] == ["run.started"]
    assert sns.published[0]["TopicArn"] == settings.notifications_topic_arn
    assert ledger.totals("2026-11").reserved_usd == pytest.approx(1.408)
    # Re-invoked step: no second notification, no second job name, no second reservation.
    _gate(event, settings, store, ledger, sns)
    assert len(sns.published) == 1 and store.get_run(run.run_id)["job_names"] == [f"{run.run_id}-a1"]
    assert ledger.totals("2026-11").reserved_usd == pytest.approx(1.408)


def test_check_budget_blocked_at_one_cent_over_and_admitted_exactly_at_the_limit(event, settings_factory,
                                                                                  store, ledger, sns):
    run = _seed_run(store, event)
    # $1.408 worst case, MinRuntime = MaxRuntime so no clamp: $1.407 is one tenth of a cent short.
    tight = {"max_runtime_seconds": 3600, "min_runtime_seconds": 3600}
    out = _gate(event, settings_factory(monthly_budget_usd=1.40, **tight), store, ledger, sns)
    assert out["admitted"] is False and "MinRuntimeSeconds" in out["budget"]["reason"]
    assert store.get_run(run.run_id)["status"] == "BUDGET_BLOCKED" and store.get_run(run.run_id)["job_names"] == []
    assert sns.published == []  # the NotifyBudgetBlocked step publishes
    out = _gate(event, settings_factory(monthly_budget_usd=1.408, **tight), store, ledger, sns)
    assert out["admitted"] is True


def test_check_budget_clamps_max_runtime_and_says_so(event, settings_factory, store, ledger, sns):
    _seed_run(store, event)
    s = settings_factory(monthly_budget_usd=1.0, max_runtime_seconds=3600, min_runtime_seconds=600)
    out = _gate(event, s, store, ledger, sns)
    # $1.00 at $1.408/h buys 2556 s.
    assert out["admitted"] and out["budget"]["clamped"] and out["plan"]["stopping_condition"]["MaxRuntimeInSeconds"] == 2556
    assert "MaxRuntime clamped to 2556 s" in sns.messages[0]["text"]


def test_unknown_instance_type_is_blocked_with_how_to_fix(event, settings_factory, store, ledger, sns):
    _seed_run(store, event)
    out = _gate(event, settings_factory(instance_type="ml.x9.huge"), store, ledger, sns)
    assert out["admitted"] is False and "HOURLY_PRICE_OVERRIDE_USD" in out["budget"]["reason"]


def test_retry_is_admitted_again_and_goes_on_demand_after_k_spot_failures(event, settings_factory, store, ledger, sns):
    run = _seed_run(store, event)
    s = settings_factory(spot_failures_before_on_demand=2, monthly_budget_usd=100.0)
    assert _gate(event, s, store, ledger, sns)["plan"]["use_spot"] is True
    store.update_run(run.run_id, map_entries={"spot_failures_by_attempt": {"1": "MaxWaitTimeExceeded"}})
    a2 = {"number": 2, "job_name": f"{run.run_id}-a2", "retry": True, "reason": "MaxWaitTimeExceeded"}
    out = _gate(event, s, store, ledger, sns, attempt=a2)
    assert out["admitted"] and out["plan"]["use_spot"] is True  # one spot failure: still spot
    store.update_run(run.run_id, map_entries={"spot_failures_by_attempt": {"2": "capacity"}})
    a3 = {"number": 3, "job_name": f"{run.run_id}-a3", "retry": True, "reason": "capacity"}
    out = _gate(event, s, store, ledger, sns, attempt=a3)
    assert out["admitted"] and out["plan"]["use_spot"] is False  # the K-th spot failure: on-demand
    assert "MaxWaitTimeInSeconds" not in out["plan"]["stopping_condition"]
    assert out["plan"]["checkpoint_config"]["S3Uri"].endswith(f"/checkpoints/{run.run_id}/")  # same prefix
    assert [m["event_type"] for m in sns.messages] == ["run.started", "training.retry", "training.retry"]
    assert "on-demand (after 2 spot failures)" in sns.messages[-1]["text"]
    assert len(ledger.reservations(run.run_id)) == 3


def test_retry_that_no_longer_fits_stops_the_loop_with_checkpoints_kept(event, settings_factory, store, ledger, sns):
    run = _seed_run(store, event)
    s = settings_factory(monthly_budget_usd=2.0, max_runtime_seconds=3600, min_runtime_seconds=3600)
    assert _gate(event, s, store, ledger, sns)["admitted"]
    a2 = {"number": 2, "job_name": f"{run.run_id}-a2", "retry": True, "reason": "capacity"}
    out = _gate(event, s, store, ledger, sns, attempt=a2)  # attempt 1 still holds $1.408
    assert out["admitted"] is False and out["budget"]["attempt"] == 2
    assert out["attempt"]["retry"] is False and out["attempt"]["reason"].startswith("budget stopped retries")
    assert f"checkpoints/{run.run_id}/" in out["attempt"]["reason"]


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


def test_retriable_failure_gets_next_job_name_and_records_attempt(event, settings, store, ledger):
    ev = _failed(event, "stepfn_training_failed_max_wait.json", store)
    out = training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    assert out["retry"] is True and out["number"] == 2 and out["job_name"] == f"{ev.run.run_id}-a2"
    rec = store.get_run(ev.run.run_id)
    assert rec["job_names"] == [f"{ev.run.run_id}-a1"]  # a2 is recorded when CheckBudget admits it
    assert rec["billable_seconds"] == 1800 and rec["spot_failures_by_attempt"] == {"1": out["reason"]}
    assert rec["last_secondary_status"] == "MaxWaitTimeExceeded"
    assert out["backoff_seconds"] == 0  # SageMaker already waited MaxWait for spot capacity


def test_capacity_failure_waits_before_the_next_attempt(event, settings_factory, store, ledger):
    ev = _failed(event, "stepfn_training_failed_capacity.json", store)
    out = training_failed(ev, settings=settings_factory(retry_backoff_seconds=60), store=store, ledger=ledger,
                          now=NOW)
    assert out["retry"] is True
    assert out["backoff_seconds"] == 60 * 2 ** (ev.attempt.number - 1)  # doubles with each failed attempt


def test_non_retriable_failure_stops_with_failure_reason(event, settings, store, ledger):
    ev = _failed(event, "stepfn_training_failed_algorithm_error.json", store)
    out = training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    assert out["retry"] is False and out["number"] == 1
    assert out["reason"].startswith("AlgorithmError: dataset YAML data.yaml has no 'val' entry")
    assert "not retriable" in out["reason"]
    assert store.get_run(ev.run.run_id)["failure_reason"].startswith("AlgorithmError")


def test_retriable_failure_on_last_attempt_is_exhausted(event, settings, store, ledger):
    ev = _failed(event, "stepfn_training_failed_internal_error.json", store)  # attempt 3 of 3
    out = training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    assert out["retry"] is False and out["number"] == 3
    assert "attempts exhausted (3/3)" in out["reason"] and "InternalServerError" in out["reason"]


def test_api_error_at_create_time_names_the_code(event, settings, store, ledger):
    ev = _failed(event, "stepfn_training_failed_resource_limit.json", store)
    out = training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    assert out["retry"] is False
    assert out["reason"].startswith("SageMaker.ResourceLimitExceededException: The account-level service limit")
    assert store.get_run(ev.run.run_id)["billable_seconds"] == 0


def test_failed_attempt_settles_its_reservation_at_its_billed_cost(event, settings, store, ledger):
    from yoloops_core.ledger import Reservation

    ev = _failed(event, "stepfn_training_failed_max_wait.json", store)
    ledger.reserve(Reservation(run_id=ev.run.run_id, attempt=ev.attempt.number, month="2026-11", amount_usd=1.408,
                               hourly_usd=1.408, max_runtime_seconds=3600, instance_type="ml.g5.xlarge"), 10.0)
    training_failed(ev, settings=settings, store=store, ledger=ledger, now=NOW)
    (res,) = ledger.reservations(ev.run.run_id)
    assert res.state == "settled" and res.actual_usd == pytest.approx(1.408 * 1800 / 3600)
    assert ledger.totals("2026-11").reserved_usd == pytest.approx(0.0)


class FakeEcr:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def describe_images(self, repositoryName, imageIds):
        tag = imageIds[0]["imageTag"]
        if tag not in self.tags:
            err = Exception("not found")
            err.response = {"Error": {"Code": "ImageNotFoundException"}}
            raise err
        return {"imageDetails": [{"imageDigest": self.tags[tag], "imageTags": [tag]}]}


def test_upload_runs_train_the_tags_digest_and_a_missing_image_fails_fast(event, settings, store, s3,
                                                                          validator_factory):
    from yoloops_core.images import ImageNotFound

    digest = "sha256:" + "ab" * 32
    out = validate_dataset(ValidateDatasetEvent.model_validate(event("stepfn_validate_dataset_ok.json")),
                           settings=settings, store=store, s3=s3, validator=validator_factory(),
                           ecr=FakeEcr({"latest": digest}), now=NOW)
    assert out["run"]["image_uri"] == f"{settings.ecr_repository}@{digest}"
    assert out["image"]["image_uri"] == f"{settings.ecr_repository}@{digest}"
    with pytest.raises(ImageNotFound, match=r"no training image tagged .latest..*push"):
        validate_dataset(ValidateDatasetEvent.model_validate(dict(event("stepfn_validate_dataset_ok.json"),
                                                                  run_id="ds-other-1")),
                         settings=settings, store=store, s3=s3, validator=validator_factory(), ecr=FakeEcr({}),
                         now=NOW)
