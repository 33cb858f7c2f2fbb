"""moto-backed AWS for the adapter tests: the runs table (layout of docs/architecture.md), bucket, topic."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import support
from moto import mock_aws

BUCKET = "yoloops-artifacts-test"
TABLE = "yoloops-runs-test"


@dataclass
class LambdaContext:
    function_name: str = "yoloops-test"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:yoloops-test"
    aws_request_id: str = "c0ffee00-0000-4000-8000-000000000000"


def create_runs_table(ddb, name: str = TABLE) -> None:
    support.create_runs_table(ddb, name)


@pytest.fixture
def aws(monkeypatch):
    """A fresh moto account with the table, bucket, SNS topic (+ SQS subscriber to read messages) and env."""
    with mock_aws():
        from yoloops_core.aws import client

        create_runs_table(client("dynamodb"))
        client("s3").create_bucket(Bucket=BUCKET)
        topic = client("sns").create_topic(Name="yoloops-notifications")["TopicArn"]
        queue = client("sqs").create_queue(QueueName="notes")["QueueUrl"]
        qarn = client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=qarn,
                                Attributes={"RawMessageDelivery": "true"})
        for key, value in {"ARTIFACTS_BUCKET": BUCKET, "RUNS_TABLE": TABLE, "NOTIFICATIONS_TOPIC_ARN": topic,
                           "TRAINING_IMAGE_URI": "123456789012.dkr.ecr.us-east-1.amazonaws.com/yoloops-train:latest",
                           "MONTHLY_BUDGET_USD": "100"}.items():
            monkeypatch.setenv(key, value)

        def messages() -> list[dict]:
            out = client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
            return [json.loads(m["Body"]) for m in out]

        yield type("Aws", (), {"client": staticmethod(client), "topic": topic, "messages": staticmethod(messages),
                               "bucket": BUCKET, "table": TABLE})


@pytest.fixture
def lambda_context():
    return LambdaContext()
