"""Dead letters against moto SQS: what each kind looks like, listing leaves them in place, redrive sends each
where it was going (function re-invoked asynchronously, or back to its source queue) and only then deletes."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from yoloops_core import dlq

TARGET = "arn:aws:lambda:us-east-1:123456789012:function:yoloops-dev-TrainingEventsFunction-ABC"


class FakeLambda:
    def __init__(self, fail_on: str | None = None):
        self.invocations: list[tuple[str, str, dict]] = []
        self.fail_on = fail_on

    def invoke(self, FunctionName, InvocationType, Payload):
        if FunctionName == self.fail_on:
            raise RuntimeError("throttled")
        self.invocations.append((FunctionName, InvocationType, json.loads(Payload)))
        return {"StatusCode": 202}


def _attrs(**values):
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


SNS_EVENT = {"Records": [{"EventSource": "aws:sns", "Sns": {
    "MessageId": "m-1", "Subject": "[yoloops] model.promoted ds-pallets-v1",
    "Message": json.dumps({"event_type": "model.promoted", "run_id": "ds-pallets-v1", "text": "New champion"})}}]}
TRAINING_EVENT = {"version": "0", "source": "aws.sagemaker", "detail-type": "SageMaker Training Job State Change",
                  "detail": {"TrainingJobName": "ds-pallets-v1-a1", "TrainingJobStatus": "InProgress",
                             "SecondaryStatus": "Interrupted"}}
EXECUTION_EVENT = {"version": "0", "source": "aws.states", "detail-type": "Step Functions Execution Status Change",
                   "detail": {"name": "ds-pallets-v2", "status": "ABORTED"}}
S3_EVENT = {"Records": [{"eventSource": "aws:s3", "s3": {"bucket": {"name": "art"},
                                                          "object": {"key": "datasets/pallets/v3/manifest.json"}}}]}


@pytest.fixture
def queues():
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq_url = sqs.create_queue(QueueName="triggers-dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        source = sqs.create_queue(QueueName="uploads", Attributes={"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})})["QueueUrl"]
        # What Lambda's async DLQ, EventBridge's target DLQ and SQS's own redrive put there.
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(SNS_EVENT), MessageAttributes=_attrs(
            RequestID="r-1", ErrorCode="200", ErrorMessage="SlackDeliveryError: Slack rejected the message: HTTP 404"))
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(TRAINING_EVENT), MessageAttributes=_attrs(
            ERROR_CODE="SDK_CLIENT_ERROR", ERROR_MESSAGE="Lambda throttled", RULE_ARN="arn:aws:events:r",
            TARGET_ARN=TARGET))
        sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(EXECUTION_EVENT), MessageAttributes=_attrs(
            RequestID="r-2", ErrorCode="200", ErrorMessage="ClientError: DescribeTrainingJob throttled"))
        sqs.send_message(QueueUrl=source, MessageBody=json.dumps(S3_EVENT))
        for _ in range(3):  # received and never deleted: SQS moves it to the DLQ after maxReceiveCount
            sqs.receive_message(QueueUrl=source, VisibilityTimeout=0)
        yield sqs, dlq_url, source


def test_list_describes_each_dead_letter_and_leaves_them_in_place(queues):
    sqs, url, _ = queues
    letters = dlq.read(sqs, "triggers", url)
    by_kind = {d.kind: d for d in letters}
    assert set(by_kind) == {"slack-notifier", "eventbridge-target", "reconcile", "source-queue"}
    assert by_kind["slack-notifier"].summary == "notification: model.promoted ds-pallets-v1"
    assert "HTTP 404" in by_kind["slack-notifier"].error
    assert by_kind["eventbridge-target"].summary == "training job ds-pallets-v1-a1: InProgress/Interrupted"
    assert by_kind["eventbridge-target"].error == "SDK_CLIENT_ERROR: Lambda throttled"
    assert by_kind["eventbridge-target"].target == TARGET
    assert by_kind["reconcile"].summary == "execution ds-pallets-v2: ABORTED"
    assert by_kind["source-queue"].summary == "S3 event: s3://art/datasets/pallets/v3/manifest.json"
    assert all(d.sent_at and d.sent_at.endswith("Z") for d in letters)
    assert "receipt_handle" not in letters[0].public()
    # Listing twice shows the same messages: listing released them.
    assert {d.message_id for d in dlq.read(sqs, "triggers", url)} == {d.message_id for d in letters}


def test_redrive_sends_each_where_it_was_going_then_deletes_it(queues):
    sqs, url, source = queues
    lam = FakeLambda()
    result = dlq.redrive(sqs, lam, "triggers", url, {"reconcile": "yoloops-dev-Reconcile",
                                                     "slack-notifier": "yoloops-dev-SlackNotifier"})
    assert not result.skipped and len(result.redriven) == 4
    sent = {name: payload for name, kind, payload in lam.invocations}
    assert all(kind == "Event" for _, kind, _ in lam.invocations)  # asynchronous, as the original delivery
    assert sent == {"yoloops-dev-SlackNotifier": SNS_EVENT, TARGET: TRAINING_EVENT,
                    "yoloops-dev-Reconcile": EXECUTION_EVENT}
    back = sqs.receive_message(QueueUrl=source, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in back] == [S3_EVENT]
    assert dlq.read(sqs, "triggers", url) == []


def test_redrive_by_id_and_messages_without_a_destination_stay(queues):
    sqs, url, _ = queues
    letters = {d.kind: d for d in dlq.read(sqs, "triggers", url)}
    lam = FakeLambda()
    one = dlq.redrive(sqs, lam, "triggers", url, {}, message_ids={letters["slack-notifier"].message_id,
                                                                     letters["reconcile"].message_id})
    assert one.redriven == []  # no function configured for either kind
    assert {s["kind"] for s in one.skipped} == {"slack-notifier", "reconcile"}
    assert all("no function known" in s["reason"] for s in one.skipped)
    assert len(dlq.read(sqs, "triggers", url)) == 4


def test_a_failed_redrive_keeps_the_message_visible(queues):
    sqs, url, _ = queues
    with pytest.raises(RuntimeError, match="throttled"):
        dlq.redrive(sqs, FakeLambda(fail_on="notifier"), "triggers", url,
                    {"slack-notifier": "notifier", "reconcile": "rec"})
    left = dlq.read(sqs, "triggers", url)
    assert "slack-notifier" in {d.kind for d in left}  # not deleted, and visible again at once
