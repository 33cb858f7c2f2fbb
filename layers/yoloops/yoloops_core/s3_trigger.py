"""S3 trigger: a completed dataset version (manifest.json last, or one .zip) starts exactly one run.

S3 notifications are at-least-once and one per object; the template filters them to `datasets/` keys
ending in `manifest.json` / `.zip` (NOTIFICATION_RULES, kept equal to template.yaml by a test), and the
execution name (= run id) absorbs duplicates.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal, Protocol
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from pydantic import BaseModel, Field, ValidationError, field_validator

from yoloops_core.models import (
    DATASETS_PREFIX,
    NAME_PATTERN,
    DatasetRef,
    EventType,
    RunRequest,
    Trigger,
    describe_validation_error,
    iso,
    run_id_for_dataset,
)
from yoloops_core.notifications import Notification, Publisher, publish
from yoloops_core.runs import ExecutionStarter, start_run

logger = Logger(child=True)

# (prefix, suffix) pairs of the S3 notification filter on s3:ObjectCreated:* (one rule each: S3 filters
# take one prefix and one suffix per rule).
NOTIFICATION_EVENTS = ("s3:ObjectCreated:*",)
NOTIFICATION_RULES = (("datasets/", "manifest.json"), ("datasets/", ".zip"))
DATASETS_PK = "DATASETS"

_MANIFEST_KEY = re.compile(r"datasets/([^/]+)/([^/]+)/manifest\.json")
_ZIP_KEY = re.compile(r"datasets/([^/]+)/([^/]+)\.zip")
_NAME = re.compile(NAME_PATTERN)


# ---------------------------------------------------------------- event model (S3 -> Lambda, eventVersion 2.x)

class _Bucket(BaseModel):
    name: str = Field(min_length=1)


class _Object(BaseModel):
    key: str = Field(min_length=1)
    size: int | None = None
    eTag: str | None = None
    sequencer: str | None = None
    versionId: str | None = None


class _S3(BaseModel):
    bucket: _Bucket
    object: _Object


class S3Record(BaseModel):
    eventVersion: str = Field(pattern=r"^2\.")
    eventSource: Literal["aws:s3"]
    eventTime: datetime
    eventName: str = Field(min_length=1)
    s3: _S3

    @field_validator("eventTime")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        try:  # naive times are UTC (S3 always sends Z); out-of-range offsets would overflow later
            return value.replace(tzinfo=value.tzinfo or UTC).astimezone(UTC)
        except (OverflowError, ValueError) as exc:
            raise ValueError(f"eventTime out of range: {exc}") from exc


class Outcome(BaseModel):
    action: Literal["started", "duplicate", "ignored", "rejected"]
    reason: str
    key: str | None = None
    run_id: str | None = None
    execution_arn: str | None = None


class VersionStore(Protocol):
    def record(self, dataset: DatasetRef, completed_at: str) -> None: ...


# ---------------------------------------------------------------- key rules

def matches_notification_filter(key: str, rules: tuple[tuple[str, str], ...] = NOTIFICATION_RULES) -> bool:
    """Would S3 deliver an ObjectCreated event for this (decoded) key to the trigger?"""
    return any(key.startswith(prefix) and key.endswith(suffix) for prefix, suffix in rules)


class KeyRejected(ValueError):
    """A completion marker whose dataset name or version cannot be a run."""

    def __init__(self, message: str, name: str, version: str) -> None:
        super().__init__(message)
        self.name = name
        self.version = version


def dataset_for_key(key: str) -> DatasetRef | None:
    """The dataset version a completion marker completes; None for keys that complete nothing.
    Raises KeyRejected when the key has the marker's shape but an unusable name/version."""
    for pattern, fmt in ((_MANIFEST_KEY, "dir"), (_ZIP_KEY, "zip")):
        m = pattern.fullmatch(key)
        if not m:
            continue
        name, version = m.groups()
        bad = [f"{what} {value!r}" for what, value in (("dataset name", name), ("version", version))
               if not _NAME.fullmatch(value)]
        if bad:
            raise KeyRejected(
                f"{' and '.join(bad)} in {key!r} must match {NAME_PATTERN} (letters, digits, '.', '_', '-'; "
                "start with a letter or digit; at most 63 characters)", name, version)
        return DatasetRef(name=name, version=version, format=fmt)
    return None


# ---------------------------------------------------------------- the handler's domain function

def handle_s3_event(
    event: Any,
    *,
    starter: ExecutionStarter,
    state_machine_arn: str,
    bucket_filter: str | None = None,
    store: VersionStore | None = None,
    publisher: Publisher | None = None,
    topic_arn: str | None = None,
) -> list[Outcome]:
    """One outcome per record. Bad input is rejected (and notified when it names a dataset), never raised:
    S3 would retry an async invocation that can never succeed. AWS errors raise so retries/DLQ work."""
    if isinstance(event, dict) and event.get("Event") == "s3:TestEvent":
        logger.info("s3 test event ignored", extra={"bucket": event.get("Bucket")})
        return [Outcome(action="ignored", reason="s3:TestEvent")]
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        reason = "not an S3 event notification: expected a non-empty 'Records' list"
        logger.error("s3 event rejected", extra={"reason": reason})
        return [Outcome(action="rejected", reason=reason)]
    return [
        _handle_record(i, raw, starter=starter, state_machine_arn=state_machine_arn, bucket_filter=bucket_filter,
                       store=store, publisher=publisher, topic_arn=topic_arn)
        for i, raw in enumerate(records)
    ]


def _handle_record(index: int, raw: Any, *, starter: ExecutionStarter, state_machine_arn: str,
                   bucket_filter: str | None, store: VersionStore | None, publisher: Publisher | None,
                   topic_arn: str | None) -> Outcome:
    try:
        record = S3Record.model_validate(raw)
    except ValidationError as exc:
        reason = describe_validation_error(exc, f"S3 record {index}")
        logger.error("s3 record rejected", extra={"reason": reason})
        return Outcome(action="rejected", reason=reason)
    key = unquote_plus(record.s3.object.key)  # S3 URL-encodes keys in notifications (space -> '+')
    log = {"key": key, "event_name": record.eventName, "bucket": record.s3.bucket.name}
    if not record.eventName.startswith("ObjectCreated:"):
        logger.info("not an ObjectCreated event, ignored", extra=log)
        return Outcome(action="ignored", reason=f"event {record.eventName} is not ObjectCreated", key=key)
    if bucket_filter and record.s3.bucket.name != bucket_filter:
        logger.warning("event for another bucket ignored", extra=log)
        return Outcome(action="ignored", reason=f"bucket {record.s3.bucket.name} is not {bucket_filter}", key=key)
    try:
        dataset = dataset_for_key(key)
    except KeyRejected as exc:
        reason = str(exc)
        logger.error("dataset key rejected", extra={**log, "reason": reason})
        if publisher is not None and topic_arn:
            publish(Notification(event_type=EventType.REJECTED, dataset=exc.name[:200], version=exc.version[:200],
                                 text=f"Dataset upload not started: {reason}", reason=reason), topic_arn, publisher)
        return Outcome(action="rejected", reason=reason, key=key)
    if dataset is None:
        # The notification filter should keep these out; a nested manifest or zip completes nothing.
        reason = (f"{key!r} is not a completion marker ({DATASETS_PREFIX}<name>/<version>/manifest.json "
                  f"or {DATASETS_PREFIX}<name>/<version>.zip)")
        logger.info("key ignored", extra={**log, "reason": reason})
        return Outcome(action="ignored", reason=reason, key=key)

    completed_at = iso(record.eventTime)
    if store is not None:
        store.record(dataset, completed_at)
    detail = {"event_time": completed_at, "event_name": record.eventName, "size": record.s3.object.size,
              "etag": record.s3.object.eTag, "sequencer": record.s3.object.sequencer,
              "bucket": record.s3.bucket.name}
    request = RunRequest(dataset=dataset, trigger=Trigger(source="s3", ref=key[:512], detail=detail))
    run_id = run_id_for_dataset(dataset.name, dataset.version)
    result = start_run(request, run_id, state_machine_arn, starter)
    if not result.started:
        return Outcome(action="duplicate", reason="an execution with this run id already exists", key=key,
                       run_id=run_id)
    return Outcome(action="started", reason=f"dataset {dataset.name}/{dataset.version} complete", key=key,
                   run_id=run_id, execution_arn=result.execution_arn)


# ---------------------------------------------------------------- complete versions (RunsTable, pk=DATASETS)

def record_complete_version(table: str, dataset: DatasetRef, completed_at: str, *, ddb: Any = None) -> None:
    """Remember a complete dataset version (idempotent: a duplicate event writes the same item)."""
    ddb = ddb or _ddb()
    ddb.put_item(TableName=table, Item={
        "pk": {"S": DATASETS_PK},
        "sk": {"S": f"{completed_at}#{dataset.name}#{dataset.version}"},
        "name": {"S": dataset.name},
        "version": {"S": dataset.version},
        "format": {"S": dataset.format},
        "completed_at": {"S": completed_at},
    })


def latest_complete_version(table: str, *, ddb: Any = None, name: str | None = None,
                            version: str | None = None) -> DatasetRef | None:
    """The most recently completed dataset version (optionally of one dataset, or one exact version).

    The GitHub trigger uses this for a release that names no dataset (or names one without a version).
    """
    ddb = ddb or _ddb()
    kwargs: dict[str, Any] = {
        "TableName": table,
        "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": DATASETS_PK}},
        "ScanIndexForward": False,  # newest completion first
    }
    filters, names = [], {}
    for attr, value in (("name", name), ("version", version)):
        if value is not None:
            filters.append(f"#{attr} = :{attr}")
            names[f"#{attr}"] = attr
            kwargs["ExpressionAttributeValues"][f":{attr}"] = {"S": value}
    if filters:
        kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = names
    else:
        kwargs["Limit"] = 1  # the newest item is the answer (unless it is unusable: then the next page)
    for page in ddb.get_paginator("query").paginate(**kwargs):
        for item in page.get("Items", []):
            try:
                return DatasetRef(name=item["name"]["S"], version=item["version"]["S"],
                                  format=item.get("format", {}).get("S", "dir"))
            except (KeyError, ValidationError):
                logger.warning("unusable dataset item skipped", extra={"sk": item.get("sk", {}).get("S")})
    return None


class DynamoVersionStore:
    def __init__(self, table: str, ddb: Any = None) -> None:
        self.table = table
        self.ddb = ddb

    def record(self, dataset: DatasetRef, completed_at: str) -> None:
        record_complete_version(self.table, dataset, completed_at, ddb=self.ddb)


def _ddb() -> Any:
    from yoloops_core.aws import client

    return client("dynamodb")
