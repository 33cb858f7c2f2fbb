"""S3 trigger handler (SQS batches of S3 events) wired to real AWS APIs in moto, and the versions index."""

from __future__ import annotations

import json

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from s3_helpers import BUCKET, TABLE, create_runs_table, create_state_machine, load_fixture, load_handler
from upload_helpers import Clock, FakeSfn, Recorder, batch, make_deps, sqs_message
from yoloops_core.models import DatasetRef
from yoloops_core.s3_trigger import S3Record, latest_complete_version, record_complete_version
from yoloops_core.uploads import handle_batch


class _Context:
    function_name = "s3-trigger"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:s3-trigger"
    aws_request_id = "req-1"


@pytest.fixture
def wired(monkeypatch):
    with mock_aws():
        sfn, ddb, sns = boto3.client("stepfunctions"), boto3.client("dynamodb"), boto3.client("sns")
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        arn = create_state_machine(sfn)
        create_runs_table(ddb)
        s3.create_bucket(Bucket=BUCKET)
        queue = sqs.create_queue(QueueName="uploads")["QueueUrl"]
        topic = sns.create_topic(Name="yoloops-notifications")["TopicArn"]
        for name, value in {"ARTIFACTS_BUCKET": BUCKET, "RUNS_TABLE": TABLE, "NOTIFICATIONS_TOPIC_ARN": topic,
                            "STATE_MACHINE_ARN": arn, "UPLOADS_QUEUE_URL": queue, "UPLOAD_QUIET_SECONDS": "30"}.items():
            monkeypatch.setenv(name, value)
        yield {"sfn": sfn, "ddb": ddb, "s3": s3, "sqs": sqs, "arn": arn, "queue": queue,
               "handler": load_handler().lambda_handler}


def test_handler_starts_the_marker_ignores_strays_and_test_events(wired):
    # The fixture's zip as S3 has it (the trigger lists the object before it starts the run).
    wired["s3"].put_object(Bucket=BUCKET, Key="datasets/birds/v2.zip", Body=b"PK\x03\x04")
    result = wired["handler"](load_fixture("sqs_uploads_batch.json"), _Context())
    assert result == {"batchItemFailures": []}
    (execution,) = wired["sfn"].list_executions(stateMachineArn=wired["arn"])["executions"]
    assert execution["name"].startswith("ds-birds-v2-")
    request = json.loads(wired["sfn"].describe_execution(executionArn=execution["executionArn"])["input"])
    assert request["dataset"] == {"name": "birds", "version": "v2", "format": "zip"}
    assert latest_complete_version(TABLE, ddb=wired["ddb"]) == DatasetRef(name="birds", version="v2", format="zip")


def test_handler_sends_one_delayed_check_and_the_check_closes_the_session(wired):
    s3, sqs = wired["s3"], wired["sqs"]
    keys = [f"datasets/birds/v3/images/train/{i}.jpg" for i in range(3)] + ["datasets/birds/v3/data.yaml"]
    records = []
    for key in keys:
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
        rec = load_fixture("s3_manifest_put.json")["Records"][0]
        rec["s3"]["object"]["key"] = key
        records.append(sqs_message({"Records": [rec]}))
    assert wired["handler"](batch(*records), _Context()) == {"batchItemFailures": []}
    attrs = sqs.get_queue_attributes(QueueUrl=wired["queue"], AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesDelayed"] == "1"  # DelaySeconds = UPLOAD_QUIET_SECONDS
    assert not wired["sfn"].list_executions(stateMachineArn=wired["arn"])["executions"]
    # The fixture's check, as SQS delivers it once its delay is over (generation 1 = that batch).
    assert wired["handler"](load_fixture("sqs_upload_check.json"), _Context()) == {"batchItemFailures": []}
    (execution,) = wired["sfn"].list_executions(stateMachineArn=wired["arn"])["executions"]
    assert execution["name"].startswith("ds-birds-v3-")


def test_complete_versions_keep_their_location():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_runs_table(ddb)
        ref = DatasetRef(name="fizz", version="0a1b2c3d", location="datasets/fizz/")
        record_complete_version(TABLE, ref, "2026-11-02T00:00:00Z", ddb=ddb)
        assert latest_complete_version(TABLE, ddb=ddb) == ref and ref.key == "datasets/fizz/"


def test_latest_complete_version_is_the_newest_event():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_runs_table(ddb)
        assert latest_complete_version(TABLE, ddb=ddb) is None
        record_complete_version(TABLE, DatasetRef(name="birds", version="v2", format="zip"), "2026-11-02T00:00:00Z",
                                ddb=ddb)
        record_complete_version(TABLE, DatasetRef(name="cars", version="v9"), "2026-11-03T00:00:00Z", ddb=ddb)
        record_complete_version(TABLE, DatasetRef(name="birds", version="v1"), "2026-11-01T00:00:00Z", ddb=ddb)
        assert latest_complete_version(TABLE, ddb=ddb) == DatasetRef(name="cars", version="v9")
        assert latest_complete_version(TABLE, ddb=ddb, name="birds") == DatasetRef(name="birds", version="v2",
                                                                                     format="zip")
        assert latest_complete_version(TABLE, ddb=ddb, name="planes") is None
        assert latest_complete_version(TABLE, ddb=ddb, name="birds", version="v1") == DatasetRef(name="birds",
                                                                                                 version="v1")
        assert latest_complete_version(TABLE, ddb=ddb, name="birds", version="v3") is None


def test_an_unusable_newest_item_is_skipped_not_fatal():
    with mock_aws():
        ddb = boto3.client("dynamodb")
        create_runs_table(ddb)
        record_complete_version(TABLE, DatasetRef(name="birds", version="v1"), "2026-11-01T00:00:00Z", ddb=ddb)
        ddb.put_item(TableName=TABLE, Item={"pk": {"S": "DATASETS"}, "sk": {"S": "2026-11-05T00:00:00Z#bad"},
                                            "name": {"S": "no spaces allowed"}, "version": {"S": "v1"}})
        assert latest_complete_version(TABLE, ddb=ddb) == DatasetRef(name="birds", version="v1")


def test_every_s3_fixture_is_a_valid_record():
    for name in ("s3_manifest_put.json", "s3_manifest_copy.json", "s3_zip_multipart.json", "s3_encoded_key.json",
                 "s3_invalid_name.json", "s3_non_dataset_key.json"):
        for raw in load_fixture(name)["Records"]:
            S3Record.model_validate(raw)


# ---------------------------------------------------------------- fuzz: bad input never raises or retries

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
                     max_leaves=20)


@pytest.fixture
def fuzz_aws():
    with mock_aws():
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        create_runs_table(ddb)
        s3.create_bucket(Bucket=BUCKET)
        yield ddb, s3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_json, key=st.text(min_size=1, max_size=60))
def test_fuzz_any_body_or_key_is_handled_without_failures(fuzz_aws, body, key):
    ddb, s3 = fuzz_aws
    rec = load_fixture("s3_manifest_put.json")["Records"][0]
    rec["s3"]["object"]["key"] = key
    event = batch(sqs_message(body), sqs_message({"Records": [rec]}), {"messageId": "x", "body": 3})
    deps = make_deps(ddb, s3, FakeSfn(), Recorder(), Clock())
    assert handle_batch(event, deps) == {"batchItemFailures": []}
