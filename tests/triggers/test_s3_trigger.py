"""S3 trigger: completion markers start exactly one run; everything else is ignored or rejected loudly."""

from __future__ import annotations

import copy
import json

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from s3_helpers import (
    BUCKET,
    TABLE,
    create_runs_table,
    create_state_machine,
    load_fixture,
    load_handler,
    record_event,
    template_notification_rules,
)
from yoloops_core.models import DatasetRef, RunRequest
from yoloops_core.s3_trigger import (
    NOTIFICATION_EVENTS,
    NOTIFICATION_RULES,
    DynamoVersionStore,
    Outcome,
    handle_s3_event,
    latest_complete_version,
    matches_notification_filter,
    record_complete_version,
)


class FakeSfn:
    """Step Functions' name rule: same name + same input returns the same execution, else it raises."""

    def __init__(self):
        self.executions: dict[str, str] = {}

    def start_execution(self, *, stateMachineArn, name, input):
        if name in self.executions and self.executions[name] != input:
            exc = RuntimeError("exists")
            exc.response = {"Error": {"Code": "ExecutionAlreadyExists"}}
            raise exc
        self.executions[name] = input
        return {"executionArn": f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"}


class FakeSns:
    def __init__(self):
        self.messages: list[dict] = []

    def publish(self, **kwargs):
        self.messages.append(kwargs)
        return {"MessageId": str(len(self.messages))}


class FakeStore:
    def __init__(self):
        self.records: list[tuple[DatasetRef, str]] = []

    def record(self, dataset, completed_at):
        self.records.append((dataset, completed_at))


SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:yoloops-training"
TOPIC = "arn:aws:sns:us-east-1:123456789012:yoloops-notifications"


@pytest.fixture
def fakes():
    sfn, sns, store = FakeSfn(), FakeSns(), FakeStore()

    def call(event):
        return handle_s3_event(event, starter=sfn, state_machine_arn=SM_ARN, bucket_filter=BUCKET, store=store,
                               publisher=sns, topic_arn=TOPIC)

    call.sfn, call.sns, call.store = sfn, sns, store
    return call


# ---------------------------------------------------------------- which events start runs

def test_test_event_is_ignored(fakes):
    [outcome] = fakes(load_fixture("s3_test_event.json"))
    assert outcome.action == "ignored" and "TestEvent" in outcome.reason
    assert fakes.sfn.executions == {} and fakes.sns.messages == []


@pytest.mark.parametrize(("fixture", "run_id", "fmt", "event_name"), [
    ("s3_manifest_put.json", "ds-birds-v1", "dir", "ObjectCreated:Put"),
    ("s3_zip_multipart.json", "ds-birds-v2", "zip", "ObjectCreated:CompleteMultipartUpload"),
    ("s3_manifest_copy.json", "ds-birds-v3", "dir", "ObjectCreated:Copy"),
])
def test_every_object_created_kind_starts_a_run(fakes, fixture, run_id, fmt, event_name):
    event = load_fixture(fixture)
    [outcome] = fakes(event)
    assert outcome.action == "started" and outcome.run_id == run_id
    request = RunRequest.model_validate_json(fakes.sfn.executions[run_id])
    rec = event["Records"][0]
    assert request.dataset.format == fmt and request.dataset.name == "birds"
    assert request.trigger.source == "s3" and request.trigger.ref == rec["s3"]["object"]["key"]
    assert request.trigger.detail["event_name"] == event_name
    assert request.trigger.detail["etag"] == rec["s3"]["object"]["eTag"]
    assert request.trigger.detail["sequencer"] == rec["s3"]["object"]["sequencer"]
    assert request.trigger.detail["size"] == rec["s3"]["object"]["size"]
    assert request.trigger.detail["event_time"] == "2026-11-28T10:15:30Z"
    assert fakes.store.records == [(request.dataset, "2026-11-28T10:15:30Z")]


def test_encoded_key_is_decoded_and_its_bad_name_is_notified(fakes):
    [outcome] = fakes(load_fixture("s3_encoded_key.json"))
    assert outcome.key == "datasets/my birds/vérsion+1/manifest.json"
    assert outcome.action == "rejected"
    assert "'my birds'" in outcome.reason and "'vérsion+1'" in outcome.reason
    [msg] = fakes.sns.messages
    body = json.loads(msg["Message"])
    assert body["event_type"] == "dataset.rejected" and body["dataset"] == "my birds"
    assert "my birds" in body["reason"]
    assert fakes.sfn.executions == {}


def test_encoded_valid_key_starts_the_decoded_dataset(fakes):
    # A version with characters S3 encodes but NAME_PATTERN allows is not mangled by decoding.
    [outcome] = fakes(record_event("datasets/birds/2026.11_rc-1.zip"))
    assert outcome.action == "started" and outcome.run_id == "ds-birds-2026-11-rc-1"
    [outcome] = fakes(record_event("datasets/cars%5Fv/v1/manifest.json"))  # %5F = "_"
    assert outcome.action == "started" and outcome.key == "datasets/cars_v/v1/manifest.json"


def test_invalid_name_is_rejected_notified_and_not_raised(fakes):
    [outcome] = fakes(load_fixture("s3_invalid_name.json"))
    assert outcome.action == "rejected" and "'-birds'" in outcome.reason
    [msg] = fakes.sns.messages
    assert msg["MessageAttributes"]["event_type"]["StringValue"] == "dataset.rejected"
    assert "-birds" in json.loads(msg["Message"])["text"]
    assert fakes.sfn.executions == {} and fakes.store.records == []


@pytest.mark.parametrize("key", [
    "uploads/notes/archive.zip",                      # outside datasets/
    "datasets/birds/v1/sub/manifest.json",            # nested manifest completes nothing
    "datasets/birds/v1/images/train/a.jpg",
    "datasets/birds.zip",                             # no version
])
def test_non_marker_keys_are_ignored_with_a_reason(fakes, key):
    [outcome] = fakes(record_event(key))
    assert outcome.action == "ignored" and "completion marker" in outcome.reason
    assert fakes.sfn.executions == {} and fakes.sns.messages == []


def test_non_dataset_fixture_is_ignored(fakes):
    [outcome] = fakes(load_fixture("s3_non_dataset_key.json"))
    assert outcome.action == "ignored"


def test_other_bucket_and_removal_events_are_ignored(fakes):
    [a] = fakes(record_event("datasets/birds/v1/manifest.json", bucket="someone-else"))
    [b] = fakes(record_event("datasets/birds/v1/manifest.json", event_name="ObjectRemoved:Delete"))
    assert (a.action, b.action) == ("ignored", "ignored")
    assert "someone-else" in a.reason and "ObjectRemoved" in b.reason
    assert fakes.sfn.executions == {}


def test_one_bad_record_does_not_block_the_good_one(fakes):
    event = load_fixture("s3_manifest_put.json")
    event["Records"].insert(0, {"eventSource": "aws:s3"})
    bad, good = fakes(event)
    assert bad.action == "rejected" and "S3 record 0" in bad.reason and "eventTime" in bad.reason
    assert good.action == "started"


def test_duplicate_events_start_one_execution_in_moto():
    with mock_aws():
        sfn = boto3.client("stepfunctions")
        ddb = boto3.client("dynamodb")
        arn = create_state_machine(sfn)
        create_runs_table(ddb)
        store = DynamoVersionStore(TABLE, ddb)
        event = load_fixture("s3_manifest_put.json")
        outcomes = [handle_s3_event(copy.deepcopy(event), starter=sfn, state_machine_arn=arn, store=store)[0]
                    for _ in range(3)]
        assert {o.run_id for o in outcomes} == {"ds-birds-v1"}
        # A redelivery with different details (new sequencer) collides on the name and is a duplicate.
        event["Records"][0]["s3"]["object"]["sequencer"] = "0067485A2B6C1D3EFF"
        [again] = handle_s3_event(event, starter=sfn, state_machine_arn=arn, store=store)
        assert again.action == "duplicate"
        executions = sfn.list_executions(stateMachineArn=arn)["executions"]
        assert [e["name"] for e in executions] == ["ds-birds-v1"]
        assert latest_complete_version(TABLE, ddb=ddb) == DatasetRef(name="birds", version="v1")


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


def test_handler_wires_settings_and_clients(monkeypatch):
    with mock_aws():
        sfn, ddb, sns = boto3.client("stepfunctions"), boto3.client("dynamodb"), boto3.client("sns")
        arn = create_state_machine(sfn)
        create_runs_table(ddb)
        topic = sns.create_topic(Name="yoloops-notifications")["TopicArn"]
        for name, value in {"ARTIFACTS_BUCKET": BUCKET, "RUNS_TABLE": TABLE, "NOTIFICATIONS_TOPIC_ARN": topic,
                            "STATE_MACHINE_ARN": arn}.items():
            monkeypatch.setenv(name, value)
        lambda_handler = load_handler().lambda_handler

        result = lambda_handler(load_fixture("s3_zip_multipart.json"), _Context())
        assert result == {"outcomes": [{"action": "started", "reason": "dataset birds/v2 complete",
                                        "key": "datasets/birds/v2.zip", "run_id": "ds-birds-v2",
                                        "execution_arn": result["outcomes"][0]["execution_arn"]}]}
        assert latest_complete_version(TABLE, ddb=ddb) == DatasetRef(name="birds", version="v2", format="zip")
        assert lambda_handler(load_fixture("s3_invalid_name.json"), _Context())["outcomes"][0]["action"] == "rejected"


class _Context:
    function_name = "s3-trigger"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:s3-trigger"
    aws_request_id = "req-1"


# ---------------------------------------------------------------- notification filter = template

def test_filter_passes_markers_of_every_upload_kind_and_nothing_else():
    assert NOTIFICATION_EVENTS == ("s3:ObjectCreated:*",)  # not :Put only: multipart/copy must trigger
    assert matches_notification_filter("datasets/a/v1/manifest.json")
    assert matches_notification_filter("datasets/a/v1.zip")
    assert not matches_notification_filter("datasets/a/v1/labels/train/x.txt")
    assert not matches_notification_filter("runs/x/output/model.zip")


def test_template_filter_matches_the_module_constant():
    rules = template_notification_rules()
    if rules is None:
        pytest.skip("template.yaml has no S3TriggerFunction S3 events yet")
    assert {(p, s) for p, s, _ in rules} == set(NOTIFICATION_RULES)
    for _p, _s, events in rules:
        assert events == NOTIFICATION_EVENTS


# ---------------------------------------------------------------- fuzzing: never an unhandled exception

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
_RECORD_FIELDS = ["eventVersion", "eventSource", "eventTime", "eventName", "s3"]


def _check(outcomes):
    assert outcomes and all(isinstance(o, Outcome) for o in outcomes)
    for o in outcomes:
        assert o.reason  # always says why


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=_json)
def test_fuzz_arbitrary_json_never_raises(fakes, event):
    _check(fakes(event))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fixture=st.sampled_from(["s3_manifest_put.json", "s3_zip_multipart.json", "s3_manifest_copy.json",
                             "s3_encoded_key.json", "s3_invalid_name.json"]),
    field=st.sampled_from([*_RECORD_FIELDS, "s3.object.key", "s3.object.size", "s3.bucket.name", "s3.object"]),
    value=_json,
    key_text=st.text(max_size=80),
)
def test_fuzz_mutated_fixtures_never_raise(fakes, fixture, field, value, key_text):
    event = load_fixture(fixture)
    rec = event["Records"][0]
    target, *path = field.split(".")
    if path:
        node = rec[target]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    else:
        rec[target] = value
    _check(fakes(event))
    # Arbitrary (encoded) keys under datasets/: started, ignored or rejected, never a crash.
    [outcome] = fakes(record_event("datasets/" + key_text))
    assert outcome.action in ("started", "duplicate", "ignored", "rejected")
