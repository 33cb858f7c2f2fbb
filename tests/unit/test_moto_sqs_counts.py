"""The local stack's SQS stays AWS-shaped after its cost patch: moto scanned the whole queue for every
message sent or received (the approximate counts), which made a 10,000-object sync quadratic; the patch
skips those counts inside SendMessage/ReceiveMessage only. What a client reads must not change."""

from __future__ import annotations

import boto3
from moto import mock_aws

from yoloops.local import moto_patches


def test_queue_counts_and_fifo_deduplication_still_hold_under_the_patch():
    moto_patches.install()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        for i in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"]
        assert len(got) == 1

        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        assert counts == {"ApproximateNumberOfMessages": "2", "ApproximateNumberOfMessagesNotVisible": "1",
                          "ApproximateNumberOfMessagesDelayed": "1"}

        fifo = sqs.create_queue(QueueName="checks.fifo", Attributes={
            "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
        for _ in range(2):
            sqs.send_message(QueueUrl=fifo, MessageBody="same", MessageGroupId="g")
        assert sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "1"
