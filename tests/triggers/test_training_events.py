"""SageMaker training state-change events: transitions recorded once, interruptions notified once."""

from __future__ import annotations

import json
from types import SimpleNamespace

import boto3
import pytest
from gh_helpers import (
    DATASET_RUN_ID,
    RELEASE_RUN_ID,
    Harness,
    load_fixture,
    load_handler,
    training_event,
    with_new_event_id,
)
from moto import mock_aws
from support import create_runs_table
from yoloops_core.models import EventType
from yoloops_core.training_events import (
    DynamoTrainingEventStore,
    dedupe_key,
)

RAN = ["Starting", "Downloading", "Training"]


def test_interruption_is_recorded_and_notified_with_the_epoch_from_describe():
    h = Harness(metrics=[{"MetricName": "mAP50", "Value": 0.5}, {"MetricName": "epoch", "Value": 12.0}])
    outcome = h(load_fixture("sagemaker_training_interrupted.json"))
    assert outcome.action == "recorded" and outcome.notified and outcome.run_id == RELEASE_RUN_ID
    run = h.store.runs[RELEASE_RUN_ID]
    assert run["interruptions"] == 1 and run["interruptions_by_attempt"] == {"1": 1}
    assert run["last_secondary_status"] == "Interrupted"
    (note,) = h.notes
    assert note.event_type is EventType.INTERRUPTED
    assert note.text.startswith("spot interrupted at epoch 12, resuming from checkpoint")
    assert note.run_id == RELEASE_RUN_ID and note.attempts == 1 and note.interruptions == 1
    assert h.described == [f"{RELEASE_RUN_ID}-a1"]


def test_epoch_in_the_event_detail_wins_and_skips_describe():
    h = Harness()
    event = training_event(f"{RELEASE_RUN_ID}-a1", "InProgress", "Interrupted", [*RAN, "Interrupted"],
                           metrics={"epoch": 7.0})
    h(event)
    assert "at epoch 7," in h.notes[0].text and h.described == []


@pytest.mark.parametrize("error", [None, RuntimeError("AccessDenied")])
def test_unknown_epoch_says_last_checkpoint(error):
    h = Harness(metrics=[], describe_error=error)
    h(load_fixture("sagemaker_training_interrupted.json"))
    assert "resuming from the last checkpoint" in h.notes[0].text


def test_resent_event_with_a_new_id_changes_nothing_and_notifies_once():
    h = Harness()
    event = load_fixture("sagemaker_training_interrupted.json")
    h(event)
    again = h(with_new_event_id(event, "a-different-envelope-id"))
    same = h(event)
    assert again.action == same.action == "duplicate"
    assert len(h.notes) == 1 and h.store.runs[RELEASE_RUN_ID]["interruptions"] == 1


def test_second_interruption_of_the_same_attempt_is_a_new_notice():
    h = Harness()
    job = f"{RELEASE_RUN_ID}-a1"
    h(training_event(job, "InProgress", "Interrupted", [*RAN, "Interrupted"]))
    h(training_event(job, "InProgress", "Training", [*RAN, "Interrupted", "Starting", "Training"]))
    h(training_event(job, "InProgress", "Interrupted", [*RAN, "Interrupted", "Starting", "Training", "Interrupted"]))
    h(training_event(f"{RELEASE_RUN_ID}-a2", "InProgress", "Interrupted", [*RAN, "Interrupted"]))
    run = h.store.runs[RELEASE_RUN_ID]
    assert run["interruptions_by_attempt"] == {"1": 2, "2": 1} and run["interruptions"] == 3
    assert len(h.notes) == 3
    assert "attempt 1: interruption 2; 2 in this run" in h.notes[1].text


def test_max_wait_exceeded_alone_counts_the_interruption_its_transitions_carry():
    # The Interrupted event of this attempt never arrived: the MaxWait event's list still shows it.
    h = Harness()
    outcome = h(load_fixture("sagemaker_training_max_wait.json"))
    assert outcome.action == "recorded" and outcome.notified
    run = h.store.runs[RELEASE_RUN_ID]
    assert run["last_secondary_status"] == "MaxWaitTimeExceeded" and run["interruptions"] == 1
    assert run["interruptions_by_attempt"] == {"2": 1} and len(h.notes) == 1


def test_max_wait_exceeded_after_its_interruption_event_notifies_nothing_more():
    h = Harness()
    h(training_event(f"{RELEASE_RUN_ID}-a2", "InProgress", "Interrupted", [*RAN, "Interrupted"]))
    outcome = h(load_fixture("sagemaker_training_max_wait.json"))
    assert outcome.action == "recorded" and not outcome.notified
    assert h.store.runs[RELEASE_RUN_ID]["interruptions"] == 1 and len(h.notes) == 1


def test_completed_job_is_recorded():
    h = Harness()
    assert h(load_fixture("sagemaker_training_completed.json")).action == "recorded"
    assert h.store.runs[DATASET_RUN_ID]["last_secondary_status"] == "Completed"


def test_foreign_jobs_are_ignored_without_writes():
    h = Harness()
    outcome = h(load_fixture("sagemaker_training_foreign_job.json"))
    assert outcome.action == "ignored" and "not a yoloops job" in outcome.reason
    parses_but_unknown = training_event("xgboost-nightly-a1", "InProgress", "Interrupted", [*RAN, "Interrupted"])
    outcome = h(parses_but_unknown)
    assert outcome.action == "ignored" and "no run record" in outcome.reason
    assert h.notes == [] and all(not r["seen_events"] for r in h.store.runs.values())


def test_notification_failure_unrecords_so_the_retry_notifies():
    h = Harness(notify_error=RuntimeError("SNS down"))
    event = load_fixture("sagemaker_training_interrupted.json")
    with pytest.raises(RuntimeError, match="SNS down"):
        h(event)
    assert h.store.runs[RELEASE_RUN_ID]["interruptions"] == 0
    h.notify_error = None
    assert h(event).notified and len(h.notes) == 1
    assert h.store.runs[RELEASE_RUN_ID]["interruptions"] == 1


@pytest.mark.parametrize("event", [
    {}, [], None, "x",
    {"detail-type": "EC2 Spot Instance Interruption Warning", "detail": {}},
    {"detail-type": "SageMaker Training Job State Change", "detail": {"TrainingJobName": "a-a1"}},
])
def test_malformed_events_are_rejected_with_a_reason(event):
    outcome = Harness()(event)
    assert outcome.action == "rejected" and outcome.reason


def test_dedupe_key_falls_back_to_last_modified_time_without_transitions():
    event = load_fixture("sagemaker_training_interrupted.json")
    from yoloops_core.training_events import TrainingJobDetail

    detail = TrainingJobDetail.model_validate({**event["detail"], "SecondaryStatusTransitions": []})
    assert dedupe_key(detail).endswith("|m" + event["detail"]["LastModifiedTime"])
    full = TrainingJobDetail.model_validate(event["detail"])
    assert dedupe_key(full).startswith(f"{RELEASE_RUN_ID}-a1|InProgress|Interrupted|t4@")


# ---------------------------------------------------------------- DynamoDB adapter + handler on moto

CONTEXT = SimpleNamespace(function_name="TrainingEventsFunction", memory_limit_in_mb=128,
                          invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:te",
                          aws_request_id="req-3")


@pytest.fixture
def moto_stack(monkeypatch):
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_runs_table(ddb, "runs")
        for run_id in (RELEASE_RUN_ID, DATASET_RUN_ID):
            ddb.put_item(TableName="runs", Item={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"},
                                                 "run_id": {"S": run_id}, "status": {"S": "TRAINING"},
                                                 "dataset": {"S": "pallets"},
                                                 "dataset_version": {"S": "2026-11-20"}})
        sns = boto3.client("sns", region_name="us-east-1")
        topic = sns.create_topic(Name="yoloops")["TopicArn"]
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue = sqs.create_queue(QueueName="notes")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        for key, value in {"ARTIFACTS_BUCKET": "a", "RUNS_TABLE": "runs",
                           "NOTIFICATIONS_TOPIC_ARN": topic}.items():
            monkeypatch.setenv(key, value)

        def run(run_id):
            return ddb.get_item(TableName="runs", Key={"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}})["Item"]

        def notes():
            msgs = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in msgs]

        yield SimpleNamespace(ddb=ddb, run=run, notes=notes, handler=load_handler("training_events"))


def test_handler_on_moto_records_once_and_notifies_once(moto_stack):
    event = load_fixture("sagemaker_training_interrupted.json")
    first = moto_stack.handler(event, CONTEXT)
    assert first["action"] == "recorded" and first["notified"] is True
    for i in range(3):  # SageMaker re-sends: new ids, same transition
        assert moto_stack.handler(with_new_event_id(event, f"resend-{i}"), CONTEXT)["action"] == "duplicate"
    item = moto_stack.run(RELEASE_RUN_ID)
    assert item["interruptions"] == {"N": "1"}
    assert item["interruptions_by_attempt"] == {"M": {"1": {"N": "1"}}}
    assert item["last_secondary_status"] == {"S": "Interrupted"}
    assert len(item["seen_events"]["SS"]) == 2  # the status transition and the interruption, each once
    (note,) = moto_stack.notes()
    assert note["event_type"] == "training.interrupted" and note["dataset"] == "pallets"
    assert "resuming from the last checkpoint" in note["text"]  # moto has no such job to describe


def test_handler_on_moto_max_wait_and_second_attempt(moto_stack):
    moto_stack.handler(load_fixture("sagemaker_training_interrupted.json"), CONTEXT)
    moto_stack.handler(training_event(f"{RELEASE_RUN_ID}-a2", "InProgress", "Interrupted", [*RAN, "Interrupted"]),
                       CONTEXT)
    out = moto_stack.handler(load_fixture("sagemaker_training_max_wait.json"), CONTEXT)
    assert out["action"] == "recorded" and out["notified"] is False
    item = moto_stack.run(RELEASE_RUN_ID)
    assert item["interruptions"] == {"N": "2"}
    assert item["interruptions_by_attempt"] == {"M": {"1": {"N": "1"}, "2": {"N": "1"}}}
    assert item["last_secondary_status"] == {"S": "MaxWaitTimeExceeded"}
    assert item["current_job"] == {"S": f"{RELEASE_RUN_ID}-a2"}


def test_handler_on_moto_ignores_foreign_jobs_without_writing(moto_stack):
    before = moto_stack.ddb.scan(TableName="runs")["Items"]
    out = moto_stack.handler(load_fixture("sagemaker_training_foreign_job.json"), CONTEXT)
    assert out["action"] == "ignored"
    out = moto_stack.handler(training_event("gh-unknown-run-a1", "InProgress", "Interrupted",
                                            [*RAN, "Interrupted"]), CONTEXT)
    assert out["action"] == "ignored" and "no run record" in out["reason"]
    assert moto_stack.ddb.scan(TableName="runs")["Items"] == before
    assert moto_stack.notes() == []


def test_store_forget_restores_counts_on_moto(moto_stack):
    store = DynamoTrainingEventStore("runs", moto_stack.ddb)
    kwargs = {"secondary_status": "Interrupted", "job_name": f"{RELEASE_RUN_ID}-a1", "attempt": 1,
              "interrupted": True, "at": "2026-11-28T10:00:00Z"}
    assert store.record(RELEASE_RUN_ID, "k1", **kwargs).outcome == "recorded"
    store.forget(RELEASE_RUN_ID, "k1", attempt=1, interrupted=True)
    item = moto_stack.run(RELEASE_RUN_ID)
    assert item["interruptions"] == {"N": "0"} and "seen_events" not in item
    assert store.record(RELEASE_RUN_ID, "k1", **kwargs).outcome == "recorded"


def test_fixtures_are_valid_eventbridge_events():
    from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
    from gh_helpers import EVENTS

    names = sorted(p.name for p in EVENTS.glob("sagemaker_*.json"))
    assert len(names) == 4
    for name in names:
        parsed = EventBridgeModel.model_validate(load_fixture(name))
        assert parsed.detail_type == "SageMaker Training Job State Change" and parsed.source == "aws.sagemaker"
