"""Helpers for the upload-session tests: SQS batches of S3 events as Lambda's SQS poller delivers them."""

from __future__ import annotations

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from yoloops_core.runs import start_run
from yoloops_core.s3_trigger import record_complete_version
from yoloops_core.upload_sessions import SessionStore
from yoloops_core.uploads import UploadDeps

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "yoloops-artifacts-123456789012"
TABLE = "yoloops-runs"
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:yoloops-training"
T0 = datetime(2026, 11, 28, 10, 0, 0, tzinfo=UTC)
_ids = itertools.count(1)


def s3_record(key: str, *, at: datetime, event_name: str = "ObjectCreated:Put", size: int = 1,
              etag: str = "e", bucket: str = BUCKET) -> dict[str, Any]:
    """One S3 event record as S3 writes it (key URL-encoded, eventTime with milliseconds)."""
    base = json.loads((ROOT / "events" / "s3_manifest_put.json").read_text())["Records"][0]
    base["eventName"] = event_name
    base["eventTime"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    base["s3"]["bucket"]["name"] = bucket
    base["s3"]["object"].update(key=quote_plus(key, safe="/"), size=size, eTag=etag)
    return base


def sqs_message(body: Any, receive_count: int = 1) -> dict[str, Any]:
    return {"messageId": f"m{next(_ids)}", "receiptHandle": "r", "body": json.dumps(body),
            "attributes": {"ApproximateReceiveCount": str(receive_count)}, "messageAttributes": {},
            "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:uploads"}


def batch(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(messages)}


def events_batch(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One SQS message per S3 record (how S3 delivers notifications to a queue)."""
    return batch(*(sqs_message({"Records": [r]}) for r in records))


class Clock:
    def __init__(self, start: datetime = T0):
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


class FakeSfn:
    """Step Functions' name rule: same name + same input returns the same execution, else it raises."""

    def __init__(self) -> None:
        self.executions: dict[str, str] = {}
        self.calls = 0
        self._lock = threading.Lock()

    def start_execution(self, *, stateMachineArn, name, input):
        with self._lock:
            self.calls += 1
            if name in self.executions:
                exc = RuntimeError("exists")
                exc.response = {"Error": {"Code": "ExecutionAlreadyExists"}}
                raise exc
            self.executions[name] = input
        return {"executionArn": f"{stateMachineArn.replace(':stateMachine:', ':execution:')}:{name}"}


class Recorder:
    def __init__(self) -> None:
        self.checks: list[tuple[dict[str, Any], int]] = []
        self.notifications: list[Any] = []

    def send_checks(self, bodies: list[dict[str, Any]], delay: int) -> None:
        self.checks += [(b, delay) for b in bodies]

    def take_checks(self) -> dict[str, Any]:
        """The pending checks as the batch SQS delivers once their delay is over."""
        out = batch(*(sqs_message(b) for b, _ in self.checks))
        self.checks.clear()
        return out


def s3_lister(s3: Any, bucket: str = BUCKET):
    def list_prefix(prefix: str) -> list[tuple[str, int, str]]:
        out = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out += [(o["Key"], int(o["Size"]), o["ETag"].strip('"')) for o in page.get("Contents", [])]
        return out

    return list_prefix


def make_deps(ddb: Any, s3: Any, sfn: FakeSfn, rec: Recorder, clock: Clock, quiet: int = 120) -> UploadDeps:
    return UploadDeps(
        sessions=SessionStore(TABLE, ddb), list_prefix=s3_lister(s3),
        send_checks=rec.send_checks, start=lambda req, run_id: start_run(req, run_id, SM_ARN, sfn),
        notify=rec.notifications.append,
        record_version=lambda ds, at: record_complete_version(TABLE, ds, at, ddb=ddb),
        quiet_seconds=quiet, bucket=BUCKET, now=clock)


class SerializedDdb:
    """DynamoDB serializes writes to one item (a conditional write is atomic); moto's in-process backend
    does not lock, so concurrent tests go through this to get the service's guarantee, not moto's race."""

    def __init__(self, ddb: Any) -> None:
        self._ddb = ddb
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._ddb, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attr(*args, **kwargs)

        return call
