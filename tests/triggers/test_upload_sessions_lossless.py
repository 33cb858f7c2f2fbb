"""Upload sessions that cannot lose a run (issue 18, item 6): a StartExecution that fails after the session
closed is retried and reported, never turned into "unchanged"; a large prefix is listed page by page within
each invocation's time and carried over to a delayed check, and closes once."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
import support
from moto import mock_aws
from upload_helpers import (
    BUCKET,
    TABLE,
    Clock,
    FakeSfn,
    Recorder,
    batch,
    events_batch,
    make_deps,
    s3_record,
    sqs_message,
)
from yoloops_core.models import EventType
from yoloops_core.run_ids import listing_hash
from yoloops_core.upload_sessions import SessionStore
from yoloops_core.uploads import handle_batch


class FlakySfn(FakeSfn):
    """Step Functions that refuses the next `fail` StartExecution calls (throttling, an outage)."""

    def __init__(self, fail: int) -> None:
        super().__init__()
        self.fail = fail

    def start_execution(self, **kwargs):
        if self.fail > 0:
            self.fail -= 1
            self.calls += 1
            exc = RuntimeError("Rate exceeded")
            exc.response = {"Error": {"Code": "ThrottlingException"}}
            raise exc
        return super().start_execution(**kwargs)


@pytest.fixture
def aws():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        s3 = boto3.client("s3", region_name="us-east-1")
        support.create_runs_table(ddb, TABLE)
        s3.create_bucket(Bucket=BUCKET)
        yield ddb, s3


def _deps(aws, sfn, **kw):
    ddb, s3 = aws
    rec, clock = Recorder(), Clock()
    deps = dataclasses.replace(make_deps(ddb, s3, sfn, rec, clock), sleep=lambda s: None, **kw)
    return deps, rec, clock


def _upload(s3, prefix: str, n: int = 4, manifest: bool = False, salt: bytes = b"") -> list[tuple[str, str]]:
    files = {f"{prefix}data.yaml": b"train: images/train\nval: images/train\nnames: [a]\n"}
    for i in range(n):
        files[f"{prefix}images/train/{i:05d}.jpg"] = b"jpg" + salt + i.to_bytes(4, "big")
        files[f"{prefix}labels/train/{i:05d}.txt"] = b"0 0.5 0.5 0.1 0.1\n"
    if manifest:
        files[f"{prefix}manifest.json"] = b"{}"
    return [(k, s3.put_object(Bucket=BUCKET, Key=k, Body=b)["ETag"].strip('"')) for k, b in files.items()]


def _events(uploaded, clock):
    from datetime import timedelta

    return [s3_record(k, at=clock() + timedelta(milliseconds=i), etag=e) for i, (k, e) in enumerate(uploaded)]


def test_a_start_that_fails_after_the_close_is_retried_reported_and_started_on_redelivery(aws):
    sfn = FlakySfn(fail=3)
    deps, rec, clock = _deps(aws, sfn)
    handle_batch(events_batch(_events(_upload(aws[1], "datasets/fizz/v1/"), clock)), deps)
    [(check, _)] = rec.checks
    rec.checks.clear()
    clock.advance(121)
    out = handle_batch(batch(sqs_message(check)), deps)
    assert len(out["batchItemFailures"]) == 1  # SQS redelivers it
    assert sfn.calls == 3 and not sfn.executions  # retried in the invocation, still refused
    [note] = rec.notifications
    assert note.event_type == EventType.FAILED and "could not be started" in note.text
    assert "ThrottlingException" in note.text and note.run_id
    session = SessionStore(TABLE, aws[0]).get("datasets/fizz/v1/")
    assert session.status == "CLOSED" and not session.done and session.last_run_id is None
    # The redelivered check starts the decided run.
    assert handle_batch(batch(sqs_message(check, receive_count=2)), deps) == {"batchItemFailures": []}
    assert list(sfn.executions) == [note.run_id]
    session = SessionStore(TABLE, aws[0]).get("datasets/fizz/v1/")
    assert session.done and session.last_run_id == note.run_id


def test_a_run_that_never_started_is_never_answered_unchanged(aws):
    sfn = FlakySfn(fail=10**6)  # down for good: SQS gives up, the message goes to the DLQ
    deps, rec, clock = _deps(aws, sfn)
    uploaded = _upload(aws[1], "datasets/fizz/v1/", manifest=True)
    out = handle_batch(events_batch(_events(uploaded, clock)), deps)
    assert out["batchItemFailures"]
    sfn.fail = 0
    clock.advance(600)
    # The same bytes pushed again later (a re-upload: events after the closed listing).
    handle_batch(events_batch(_events(uploaded, clock)), deps)
    assert len(sfn.executions) == 1, rec.notifications  # started, not "unchanged: same content as run X"
    assert not [n for n in rec.notifications if n.event_type == EventType.UNCHANGED]


def test_a_marker_batch_redelivered_after_a_failed_start_starts_the_run(aws):
    sfn = FlakySfn(fail=3)
    deps, _rec, clock = _deps(aws, sfn)
    message = sqs_message({"Records": [r for r in _events(_upload(aws[1], "datasets/zz/v2/", manifest=True), clock)]})
    assert handle_batch(batch(message), deps)["batchItemFailures"]
    assert not sfn.executions
    redelivered = dict(message, attributes={**message.get("attributes", {}), "ApproximateReceiveCount": "2"})
    assert handle_batch(batch(redelivered), deps) == {"batchItemFailures": []}
    assert len(sfn.executions) == 1


class Pages:
    """S3 ListObjectsV2 with a small MaxKeys, and an invocation clock that runs out after `per_call` pages."""

    def __init__(self, s3, max_keys: int, per_call: int) -> None:
        self.s3, self.max_keys, self.per_call = s3, max_keys, per_call
        self.pages = self.in_call = 0

    def list_page(self, prefix, token):
        kwargs = {"Bucket": BUCKET, "Prefix": prefix, "MaxKeys": self.max_keys}
        page = self.s3.list_objects_v2(**kwargs | ({"ContinuationToken": token} if token else {}))
        self.pages += 1
        self.in_call += 1
        entries = [(o["Key"], o["Size"], o["ETag"].strip('"')) for o in page.get("Contents", [])]
        return entries, page.get("NextContinuationToken") if page.get("IsTruncated") else None

    def time_left(self):
        return 5.0 if self.in_call >= self.per_call else 100.0


def test_a_large_prefix_is_listed_across_invocations_and_closes_once_with_the_whole_listings_hash(aws):
    pages = Pages(aws[1], max_keys=10, per_call=3)
    sfn = FakeSfn()
    deps, rec, clock = _deps(aws, sfn, list_page=pages.list_page, time_left=pages.time_left, listing_margin_s=10)
    uploaded = _upload(aws[1], "datasets/big/", n=60)  # 121 objects: 13 pages of 10, 3 per invocation
    handle_batch(events_batch(_events(uploaded, clock)), deps)
    clock.advance(121)
    invocations = 0
    while rec.checks:
        checks = rec.take_checks()
        pages.in_call = 0
        invocations += 1
        assert handle_batch(checks, deps) == {"batchItemFailures": []}
        assert invocations < 20
    assert invocations == 5 and pages.pages == 13  # ceil(13 / 3): each carried on by a check of delay 0
    [body] = sfn.executions.values()
    request = json.loads(body)
    assert request["trigger"]["detail"]["objects"] == 121
    sizes = {o["Key"]: o["Size"] for p in aws[1].get_paginator("list_objects_v2").paginate(
        Bucket=BUCKET, Prefix="datasets/big/") for o in p["Contents"]}
    expected = listing_hash((k.removeprefix("datasets/big/"), sizes[k], e) for k, e in uploaded)
    assert request["trigger"]["detail"]["content_hash"] == expected  # the one-shot listing's hash
    session = SessionStore(TABLE, aws[0]).get("datasets/big/")
    assert session.status == "CLOSED" and session.done and session.listing_token is None


def test_a_listing_carried_over_is_dropped_when_new_objects_arrive(aws):
    pages = Pages(aws[1], max_keys=10, per_call=2)
    sfn = FakeSfn()
    deps, rec, clock = _deps(aws, sfn, list_page=pages.list_page, time_left=pages.time_left, listing_margin_s=10)
    handle_batch(events_batch(_events(_upload(aws[1], "datasets/big/", n=30), clock)), deps)
    clock.advance(121)
    first = rec.take_checks()
    handle_batch(first, deps)  # two pages, then carried over
    carry = rec.take_checks()
    assert SessionStore(TABLE, aws[0]).get("datasets/big/").listing_token
    # More objects land: the session's generation moves on, so the carried listing is stale.
    handle_batch(events_batch(_events(_upload(aws[1], "datasets/big/", n=35), clock)), deps)
    newer = rec.take_checks()
    pages.in_call = 0
    handle_batch(carry, deps)
    assert not sfn.executions and not rec.checks  # superseded: no run from a stale half listing
    clock.advance(121)
    while True:
        pages.in_call = 0
        handle_batch(newer, deps)
        if not rec.checks:
            break
        newer = rec.take_checks()
    [body] = sfn.executions.values()
    assert json.loads(body)["trigger"]["detail"]["objects"] == 71
