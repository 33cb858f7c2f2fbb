"""Upload sessions: any upload tool, one run per new content, never silent (issue 8 items 1-3)."""

from __future__ import annotations

import random
import threading
from datetime import timedelta

import boto3
import pytest
import support
from moto import mock_aws
from upload_helpers import (
    BUCKET,
    T0,
    TABLE,
    Clock,
    FakeSfn,
    Recorder,
    SerializedDdb,
    batch,
    events_batch,
    make_deps,
    s3_record,
    sqs_message,
)
from yoloops_core.models import EventType, RunRequest
from yoloops_core.s3_trigger import latest_complete_version
from yoloops_core.upload_sessions import SessionStore
from yoloops_core.uploads import Target, classify, close_session, handle_batch


@pytest.mark.parametrize(("key", "expected"), [
    ("datasets/fizz/v1/images/train/a.jpg", Target("datasets/fizz/v1/", "fizz", "v1", "dir", False)),
    ("datasets/fizz/v1/manifest.json", Target("datasets/fizz/v1/", "fizz", "v1", "dir", True)),
    ("datasets/fizz/v1/data.yaml", Target("datasets/fizz/v1/", "fizz", "v1", "dir", False)),
    ("datasets/my_dataset/my_dataset.yaml", Target("datasets/my_dataset/", "my_dataset", None, "dir", False)),
    ("datasets/fizz/images/train/a.jpg", Target("datasets/fizz/", "fizz", None, "dir", False)),
    ("datasets/fizz/train/images/a.jpg", Target("datasets/fizz/", "fizz", None, "dir", False)),  # Roboflow
    ("datasets/fizz/valid/labels/a.txt", Target("datasets/fizz/", "fizz", None, "dir", False)),
    ("datasets/fizz/manifest.json", Target("datasets/fizz/", "fizz", None, "dir", True)),
    ("datasets/fizz/v1.zip", Target("datasets/fizz/v1.zip", "fizz", "v1", "zip", True)),
    ("datasets/fizz_export.zip", Target("datasets/fizz_export.zip", "fizz_export", None, "zip", True)),
])
def test_every_common_upload_shape_maps_to_one_session(key, expected):
    assert classify(key) == expected


@pytest.mark.parametrize("key", ["datasets/README.md", "models/x/best.pt", "datasets/fizz/", "runs/a.txt"])
def test_stray_keys_have_a_reason(key):
    reason = classify(key)
    assert isinstance(reason, str) and key in reason


@pytest.fixture
def aws():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        support.create_runs_table(ddb, TABLE)
        s3.create_bucket(Bucket=BUCKET)
        yield ddb, s3


@pytest.fixture
def env(aws):
    ddb, s3 = aws
    sfn, rec, clock = FakeSfn(), Recorder(), Clock()
    return ddb, s3, sfn, rec, clock, make_deps(ddb, s3, sfn, rec, clock)


def _put(s3, files: dict[str, bytes]) -> list[tuple[str, str]]:
    return [(key, s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')) for key, body in files.items()]


def _dataset_files(prefix: str, n: int = 5, salt: bytes = b"") -> dict[str, bytes]:
    files = {f"{prefix}data.yaml": b"train: images/train\nval: images/val\nnames: [a]\n"}
    for i in range(n):
        files[f"{prefix}images/train/{i}.jpg"] = b"jpg" + salt + bytes([i])
        files[f"{prefix}labels/train/{i}.txt"] = b"0 0.5 0.5 0.1 0.1\n"
    return files


def _records(uploaded, clock):
    """S3 events of objects written just now, 10 ms apart."""
    return [s3_record(k, at=clock() + timedelta(milliseconds=10 * i), etag=e) for i, (k, e) in enumerate(uploaded)]


def _run(sfn, name):
    return RunRequest.model_validate_json(sfn.executions[name])


def test_plain_sync_in_random_order_with_duplicates_starts_one_run_after_quiet(env):
    ddb, s3, sfn, rec, clock, deps = env
    uploaded = _put(s3, _dataset_files("datasets/my_dataset/", n=20))
    records = _records(uploaded, clock)
    delivered = records + random.Random(7).sample(records, 10)  # at-least-once: some twice
    random.Random(3).shuffle(delivered)
    for part in (delivered[:11], delivered[11:30], delivered[30:]):
        assert handle_batch(events_batch(part), deps) == {"batchItemFailures": []}
        clock.advance(1)
    assert not sfn.executions  # no marker: nothing until the quiet period passes
    assert [d for _, d in rec.checks] == [120, 120, 120]
    checks = rec.take_checks()
    clock.advance(120)
    assert handle_batch(checks, deps) == {"batchItemFailures": []}
    (run_id,) = sfn.executions  # only the newest generation's check closes
    request = _run(sfn, run_id)
    assert request.dataset.location == "datasets/my_dataset/" and request.dataset.key == "datasets/my_dataset/"
    assert run_id.startswith("ds-my-dataset-") and request.dataset.version in run_id
    assert request.trigger.detail["objects"] == 41
    assert latest_complete_version(TABLE, ddb=ddb, name="my_dataset") == request.dataset
    session = SessionStore(TABLE, ddb).get("datasets/my_dataset/")
    assert (session.status, session.run_id, session.done, session.objects) == ("CLOSED", run_id, True, 51)  # events seen


def test_late_duplicates_after_close_are_ignored_not_reopened(env):
    ddb, s3, sfn, rec, clock, deps = env
    uploaded = _put(s3, _dataset_files("datasets/fizz/v1/"))
    records = _records(uploaded, clock)
    handle_batch(events_batch(records), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    assert len(sfn.executions) == 1
    clock.advance(600)
    assert handle_batch(events_batch(records[:3]), deps) == {"batchItemFailures": []}  # S3 redelivers old events
    assert not rec.checks and SessionStore(TABLE, ddb).get("datasets/fizz/v1/").status == "CLOSED"


def test_same_bytes_again_post_unchanged_and_new_bytes_start_a_new_run(env):
    _ddb, s3, sfn, rec, clock, deps = env
    files = _dataset_files("datasets/fizz/v1/")
    handle_batch(events_batch(_records(_put(s3, files), clock)), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    (first,) = sfn.executions
    # `aws s3 cp --recursive` of the same folder: every object rewritten with the same bytes.
    clock.advance(300)
    handle_batch(events_batch(_records(_put(s3, files), clock)), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    assert list(sfn.executions) == [first]
    (note,) = rec.notifications
    assert note.event_type == EventType.UNCHANGED and note.run_id == first
    assert "datasets/fizz/v1/" in note.text and f"unchanged: same content as run {first}" in note.text
    # A fixed label under the same version: new content, new run.
    clock.advance(300)
    fixed = {"datasets/fizz/v1/labels/train/0.txt": b"0 0.4 0.4 0.2 0.2\n"}
    handle_batch(events_batch(_records(_put(s3, fixed), clock)), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    assert len(sfn.executions) == 2
    second = next(r for r in sfn.executions if r != first)
    assert _run(sfn, second).dataset.version == "v1" and second != first


@pytest.mark.parametrize(("marker", "prefix", "fmt"), [
    ("datasets/fizz/v2/manifest.json", "datasets/fizz/v2/", "dir"),
    ("datasets/fizz/v2.zip", "datasets/fizz/v2.zip", "zip"),
    ("datasets/fizz_export.zip", "datasets/fizz_export.zip", "zip"),
])
def test_a_completion_marker_closes_at_once(env, marker, prefix, fmt):
    _ddb, s3, sfn, rec, clock, deps = env
    files = _dataset_files("datasets/fizz/v2/") if fmt == "dir" else {}
    files[marker] = b"PK\x03\x04 zip" if fmt == "zip" else b'{"files": []}'
    handle_batch(events_batch(_records(_put(s3, files), clock)), deps)
    assert not rec.checks  # no quiet wait
    (run_id,) = sfn.executions
    dataset = _run(sfn, run_id).dataset
    assert (dataset.key, dataset.format) == (prefix, fmt)
    if marker == "datasets/fizz_export.zip":
        assert dataset.name == "fizz_export" and dataset.content_named


def test_manifest_before_the_other_events_still_lists_everything(env):
    _ddb, s3, sfn, rec, clock, deps = env
    files = _dataset_files("datasets/fizz/v3/")
    files["datasets/fizz/v3/manifest.json"] = b"{}"
    records = _records(_put(s3, files), clock)
    handle_batch(events_batch(records[-1:]), deps)  # the marker's event overtakes the rest
    handle_batch(events_batch(records[:-1]), deps)  # ...which then arrive: older than the listing
    (run_id,) = sfn.executions
    assert _run(sfn, run_id).trigger.detail["objects"] == len(files)
    assert not rec.checks


def test_bad_names_are_notified_once_naming_the_prefix(env):
    _ddb, s3, sfn, rec, clock, deps = env
    uploaded = _put(s3, _dataset_files("datasets/my dataset/"))
    handle_batch(events_batch(_records(uploaded[:5], clock)), deps)
    handle_batch(events_batch(_records(uploaded[5:], clock)), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    assert not sfn.executions
    (note,) = rec.notifications
    assert note.event_type == EventType.REJECTED and "datasets/my dataset/" in note.text
    assert "dataset name 'my dataset'" in note.reason


def test_stray_files_and_bad_input_are_dropped_without_failing_the_batch(env):
    _ddb, s3, sfn, rec, clock, deps = env
    _put(s3, {"datasets/README.md": b"hi", "datasets/notes/todo.md": b"x"})
    body = batch(
        sqs_message({"Records": [s3_record("datasets/README.md", at=T0)]}),
        sqs_message({"Records": [s3_record("datasets/notes/todo.md", at=T0)]}),
        sqs_message({"Event": "s3:TestEvent", "Bucket": BUCKET}),
        sqs_message({"Records": [{"eventSource": "aws:s3"}]}),
        sqs_message({"Records": [s3_record("datasets/x/a.jpg", at=T0, bucket="other")]}),
        sqs_message({"Records": [s3_record("datasets/x/a.jpg", at=T0, event_name="ObjectRemoved:Delete")]}),
        {"messageId": "garbage", "body": "not json"},
    )
    assert handle_batch(body, deps) == {"batchItemFailures": []}
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)  # datasets/notes/ holds no dataset file: logged, not notified
    assert not sfn.executions and not rec.notifications


def test_an_aws_error_fails_only_that_sessions_records(env, monkeypatch):
    _ddb, s3, _sfn, rec, clock, deps = env
    good = _records(_put(s3, {"datasets/a/v1/x.jpg": b"1"}), clock)
    bad = _records(_put(s3, {"datasets/b/v1/x.jpg": b"1"}), clock)
    event = events_batch(good + bad)
    real = deps.sessions.touch

    def touch(prefix, **kw):
        if prefix == "datasets/b/v1/":
            raise RuntimeError("ProvisionedThroughputExceeded")
        return real(prefix, **kw)

    monkeypatch.setattr(deps.sessions, "touch", touch)
    assert handle_batch(event, deps) == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert [c["yoloops_check"]["prefix"] for c, _ in rec.checks] == ["datasets/a/v1/"]


def test_a_closer_that_crashed_before_starting_is_finished_by_the_redelivered_check(env, monkeypatch):
    _ddb, s3, sfn, rec, clock, deps = env
    handle_batch(events_batch(_records(_put(s3, _dataset_files("datasets/fizz/v4/")), clock)), deps)
    (check, _), = rec.checks
    clock.advance(121)
    start = deps.start
    deps.start = lambda *a: (_ for _ in ()).throw(RuntimeError("Lambda timed out"))
    failed = handle_batch(batch(sqs_message(check)), deps)
    assert len(failed["batchItemFailures"]) == 1 and not sfn.executions
    deps.start = start
    assert handle_batch(batch(sqs_message(check, receive_count=2)), deps) == {"batchItemFailures": []}
    assert len(sfn.executions) == 1
    assert handle_batch(batch(sqs_message(check, receive_count=3)), deps) == {"batchItemFailures": []}
    assert len(sfn.executions) == 1 and sfn.calls == 1  # done: a third delivery does nothing


def test_two_concurrent_closers_start_one_run(aws):
    ddb, s3 = aws
    sfn, rec, clock = FakeSfn(), Recorder(), Clock()
    safe = SerializedDdb(ddb)
    handle_batch(events_batch(_records(_put(s3, _dataset_files("datasets/race/v1/")), clock)),
                 make_deps(ddb, s3, sfn, rec, clock))
    (check, _), = rec.checks
    clock.advance(121)
    results, barrier = [], threading.Barrier(8)

    def closer():
        deps = make_deps(safe, s3, sfn, Recorder(), clock)  # each closer is its own Lambda instance
        barrier.wait()
        # The same check delivered to several instances at once (SQS is at-least-once).
        results.append(close_session(check["yoloops_check"]["prefix"], check["yoloops_check"]["generation"], deps))

    threads = [threading.Thread(target=closer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sfn.executions) == 1 and sfn.calls == 1
    assert results.count("start") == 1 and set(results) <= {"start", "lost race", "already closed"}


def test_every_object_created_kind_joins_the_session(env):
    _ddb, s3, sfn, rec, clock, deps = env
    uploaded = _put(s3, _dataset_files("datasets/kinds/v1/", n=2))
    kinds = ["ObjectCreated:Put", "ObjectCreated:Post", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload"]
    records = [s3_record(k, at=T0, etag=e, event_name=kinds[i % 4]) for i, (k, e) in enumerate(uploaded)]
    handle_batch(events_batch(records), deps)
    clock.advance(121)
    handle_batch(rec.take_checks(), deps)
    (run_id,) = sfn.executions
    assert _run(sfn, run_id).trigger.detail["objects"] == len(uploaded)
