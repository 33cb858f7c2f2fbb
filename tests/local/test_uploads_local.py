"""Uploads on the local stack with the clients people use: the `aws` CLI, boto3 multipart, many small puts.

S3 -> SQS (moto) -> the emulated SQS event source mapping (batching window, partial failures) -> the S3
trigger -> upload sessions -> Step Functions. The stack's UploadQuietSeconds is 3 and its batch window 1.
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote_plus

import pytest
import support
from boto3.s3.transfer import TransferConfig
from yoloops_core.upload_sessions import LISTING_MARGIN

from yoloops.local import LocalStack, ScriptedTrainingBackend, complete
from yoloops.synth import generate_dataset

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    st = LocalStack(workdir=tmp_path_factory.mktemp("uploads"), training=ScriptedTrainingBackend())
    st.start()
    yield st
    st.stop()


@pytest.fixture(scope="module")
def roboflow(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("roboflow")
    generate_dataset(root, n_train=6, n_val=3, imgsz=64, layout="roboflow", seed=4)
    return root


aws = support.aws_cli


def executions(stack, prefix: str) -> list[dict]:
    sfn = stack.client("stepfunctions")
    listed = sfn.list_executions(stateMachineArn=stack.outputs["TrainingStateMachineArn"])["executions"]
    return [e for e in listed if e["name"].startswith(prefix)]


wait_for = support.wait_for


def slack_texts(stack) -> list[str]:
    return [json.dumps(m) for m in stack.slack_messages]


def test_aws_s3_sync_without_manifest_starts_one_run_and_cp_of_the_same_bytes_says_unchanged(stack, roboflow):
    bucket = stack.outputs["ArtifactsBucketName"]
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
    aws(stack, "s3", "sync", str(roboflow), f"s3://{bucket}/datasets/cli_sync")
    (run,) = wait_for(lambda: executions(stack, "ds-cli-sync-"), what="the sync's run")
    assert stack.wait_for_execution(run["executionArn"], 60)["status"] == "SUCCEEDED"
    request = json.loads(stack.client("stepfunctions").describe_execution(executionArn=run["executionArn"])["input"])
    assert request["dataset"]["location"] == "datasets/cli_sync/"
    invocations = [i for i in stack.lambdas.invocations if i.source == "sqs"]
    assert len(invocations) <= 4  # one batch of object events + its check (not one Lambda per object)
    # `aws s3 cp --recursive` rewrites every object with the same bytes: nothing starts, Slack says why.
    # Same bytes written within LISTING_MARGIN of the closed listing cannot be told from a redelivered event
    # of that listing (S3's eventTime vs the listing's clock), so the rewrite comes after it, as a person's does.
    time.sleep(LISTING_MARGIN.total_seconds() + 0.5)
    aws(stack, "s3", "cp", "--recursive", str(roboflow), f"s3://{bucket}/datasets/cli_sync")
    wait_for(lambda: any(f"unchanged: same content as run {run['name']}" in t for t in slack_texts(stack)),
             what="the unchanged message")
    assert len(executions(stack, "ds-cli-sync-")) == 1


def test_boto3_multipart_zip_is_a_marker_and_starts_at_once(stack, tmp_path):
    bucket, s3 = stack.outputs["ArtifactsBucketName"], stack.client("s3")
    big = tmp_path / "v7.zip"
    big.write_bytes(os.urandom(6 * 1024 * 1024))  # > the 5 MiB threshold: CompleteMultipartUpload
    config = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    s3.upload_file(str(big), bucket, "datasets/multi/v7.zip", Config=config)
    (run,) = wait_for(lambda: executions(stack, "ds-multi-v7-"), what="the zip's run")

    def event_names() -> set[str]:  # recorded once the trigger's invocation returns
        bodies = [json.loads(r["body"]) for i in list(stack.lambdas.invocations) if i.source == "sqs"
                  for r in i.event["Records"]]
        return {rec["eventName"] for b in bodies for rec in b.get("Records", [])
                if unquote_plus(rec["s3"]["object"]["key"]) == "datasets/multi/v7.zip"}

    assert wait_for(event_names, what="the recorded invocation") == {"ObjectCreated:CompleteMultipartUpload"}
    # No quiet wait: the run started from the event's own batch, no delayed check was ever sent for it.
    bodies = [r["body"] for i in list(stack.lambdas.invocations) if i.source == "sqs" for r in i.event["Records"]]
    assert not [b for b in bodies if "yoloops_check" in b and "datasets/multi/v7.zip" in b]
    stack.wait_for_execution(run["executionArn"], 60)  # rejected (not a zip), but heard: ends, never hangs


def test_many_small_puts_in_random_order_with_redelivered_events_start_one_run(stack, roboflow):
    bucket, s3, sqs = stack.outputs["ArtifactsBucketName"], stack.client("s3"), stack.client("sqs")
    files = [p for p in roboflow.rglob("*") if p.is_file()]
    random.Random(5).shuffle(files)
    stack.training.then(complete({"mAP50": 0.5, "mAP50-95": 0.3}))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: s3.upload_file(str(p), bucket, f"datasets/small/v1/{p.relative_to(roboflow).as_posix()}"),
                      files))
    # S3 delivers at least once: send some of those events to the queue again, as S3 would.
    queue = stack.deployment.resources["UploadsQueue"].ref
    for key in random.Random(6).sample([f"datasets/small/v1/{p.relative_to(roboflow).as_posix()}" for p in files], 5):
        head = s3.head_object(Bucket=bucket, Key=key)
        record = {"eventVersion": "2.1", "eventSource": "aws:s3", "eventTime": "2026-11-28T10:00:00.000Z",
                  "eventName": "ObjectCreated:Put",
                  "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": head["ContentLength"],
                                                                "eTag": head["ETag"].strip('"')}}}
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps({"Records": [record]}))
    (run,) = wait_for(lambda: executions(stack, "ds-small-v1-"), what="the run")
    assert stack.wait_for_execution(run["executionArn"], 60)["status"] == "SUCCEEDED"
    time.sleep(5)  # longer than UploadQuietSeconds: no second run from the late duplicates
    assert len(executions(stack, "ds-small-v1-")) == 1


def test_strays_are_ignored_and_a_bad_name_is_told_to_slack(stack):
    bucket, s3 = stack.outputs["ArtifactsBucketName"], stack.client("s3")
    s3.put_object(Bucket=bucket, Key="datasets/README.md", Body=b"# how to upload")
    s3.put_object(Bucket=bucket, Key="datasets/bad name/v1/data.yaml", Body=b"names: [a]\n")
    wait_for(lambda: any("datasets/bad name/v1/" in t for t in slack_texts(stack)), what="the rejection")
    assert not executions(stack, "ds-bad")
    dlq = stack.outputs["TriggersDlqUrl"]
    attrs = stack.client("sqs").get_queue_attributes(QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "0"  # no retry loop, nothing dead-lettered
    assert all(i.error is None for i in stack.lambdas.invocations if i.source == "sqs")
